"""Editing a feature's labels by hand, and its label history with "make current"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from mistudio_tui.display import printable
from mistudio_tui.ui.modals.form import Field, FormModal
from mistudio_tui.ui.widgets.feature_view import label_origin


def label_edit_form(feature_index: int, current: Any | None) -> FormModal:
    """A form for the technical and semantic labels of a feature, filled with its current label."""
    return FormModal(
        f"Label feature {feature_index}",
        [
            Field(
                "technical",
                "Technical label",
                default=current.technical if current is not None else "",
                placeholder='short name, e.g. tok:" the"',
            ),
            Field(
                "semantic",
                "Semantic label",
                default=current.semantic if current is not None else "",
                placeholder="one or two sentences on what the feature detects",
            ),
        ],
        submit_label="Save",
        note="Manual labels stay current until you replace them.",
        check=lambda v: None if v["technical"] or v["semantic"] else "enter a technical or a semantic label",
    )


def describe_label(label: Any) -> str:
    """One line naming who or what set a label, when, and its score."""
    who = label_origin(label)
    score = f" · score {label.score:.2f}" if label.score is not None else ""
    prompt = f" · prompt {label.prompt_version}" if label.prompt_version else ""
    return f"{who} · {label.created_at:%Y-%m-%d %H:%M}{score}{prompt}"


class LabelHistoryModal(ModalScreen[int | None]):
    """Every label of a feature, newest first; Enter makes the highlighted one current (returns its id)."""

    BINDINGS = [
        Binding("escape", "cancel", "Close", id="label_history.close"),
        Binding("c", "make_current", "Make current", id="label_history.current"),
    ]

    def __init__(self, feature_index: int, labels: Sequence[Any]) -> None:
        super().__init__()
        self.feature_index = feature_index
        self.labels = list(labels)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog label-history"):
            yield Static(f"Labels of feature {self.feature_index}", classes="dialog-title")
            if not self.labels:
                yield Static("No labels yet: e adds one by hand, L labels features with a model.", classes="hint")
            yield OptionList(
                *[
                    Option(
                        f"{'● ' if lb.is_current else '  '}{printable(lb.technical) or '-'}\n"
                        f"  {printable(lb.semantic) or '(no semantic label)'}\n  {describe_label(lb)}",
                        id=str(lb.id),
                    )
                    for lb in self.labels
                ],
                id="label-history",
            )
            yield Static("Enter or c: make current · esc: close", classes="hint")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(int(event.option.id or 0))

    def action_make_current(self) -> None:
        options = self.query_one(OptionList)
        if options.highlighted is not None:
            self.dismiss(int(options.get_option_at_index(options.highlighted).id or 0))

    def action_cancel(self) -> None:
        self.dismiss(None)
