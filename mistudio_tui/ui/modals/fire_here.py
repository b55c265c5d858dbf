"""Which features fire here: type a prompt, see the top features of each token, jump into one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from mistudio_tui.ui.widgets.feature_view import visible

TOP_K = 5


def top_feature_options(result: dict[str, Any]) -> list[Option]:
    """One option per (token, feature) of a `top_features` answer; the option id is the feature index."""
    options: list[Option] = []
    for position, (token, top) in enumerate(zip(result["tokens"], result["top"], strict=True)):
        for rank, (feature, value) in enumerate(top):
            head = f"{position:>3} {visible(token)!r:<12}" if rank == 0 else " " * 16
            options.append(Option(f"{head} #{int(feature):<6} {float(value):7.3f}", id=f"{position}:{int(feature)}"))
    return options


class FireHereModal(ModalScreen[int | None]):
    """Returns the feature index the user picked, or None."""

    BINDINGS = [Binding("escape", "cancel", "Close", id="fire_here.close")]

    class Answered(Message):
        """The inference call for `text` finished with `result` or `error`."""

        def __init__(self, text: str, result: dict[str, Any] | None, error: str) -> None:
            super().__init__()
            self.text, self.result, self.error = text, result, error

    def __init__(self, infer: Callable[..., dict[str, Any]], training_id: int) -> None:
        super().__init__()
        self.infer = infer
        self.training_id = training_id

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog fire-here"):
            yield Static("Which features fire here", classes="dialog-title")
            yield Input(placeholder="type a prompt, Enter runs it", id="fire-text")
            yield Static("", id="fire-status", classes="hint")
            yield OptionList(id="fire-results")
            yield Static("Enter on a row jumps to that feature · esc closes", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if not text:
            return
        self.query_one("#fire-status", Static).update("running…")
        self.run_prompt(text)

    @work(thread=True, exclusive=True, group="fire-here")
    def run_prompt(self, text: str) -> None:
        try:
            result = self.infer("top_features", training_id=self.training_id, text=text, k=TOP_K)
        except Exception as exc:  # the session's errors are shown, never raised into the UI
            self.post_message(self.Answered(text, None, str(exc) or type(exc).__name__))
            return
        self.post_message(self.Answered(text, result, ""))

    def on_fire_here_modal_answered(self, message: FireHereModal.Answered) -> None:
        status = self.query_one("#fire-status", Static)
        options = self.query_one("#fire-results", OptionList)
        options.clear_options()
        if message.error:
            status.update(f"⚠ {message.error}")
            return
        assert message.result is not None
        status.update(f"{len(message.result['tokens'])} tokens · top {TOP_K} features each")
        options.add_options(top_feature_options(message.result))
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(int(str(event.option.id).split(":")[1]))

    def action_cancel(self) -> None:
        self.dismiss(None)
