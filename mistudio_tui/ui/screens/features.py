"""Features: browse a feature set (virtual table over SQLite), inspect, label and test one feature."""

from __future__ import annotations

import math
import time
from functools import partial
from pathlib import Path
from typing import Any

from peewee import DatabaseError
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Input, OptionList, Select, Static
from textual.widgets.option_list import Option

from mistudio_tui.db import features as fq
from mistudio_tui.db.models import FeatureLabel, FeatureSet
from mistudio_tui.ui import format as fmt
from mistudio_tui.ui.messages import JobArtifact
from mistudio_tui.ui.screens.base import StudioScreen
from mistudio_tui.ui.widgets.feature_table import FeatureTable
from mistudio_tui.ui.widgets.feature_view import (
    activation_text,
    example_text,
    feature_header,
    histogram_series,
    logit_text,
)
from mistudio_tui.ui.widgets.plots import BarPlot

EXAMPLES_SHOWN = 8
DEBOUNCE_S = 0.05
DETAIL_EVERY_S = 0.12
RELOAD_SKIP_S = 1.0
SYNC_HISTOGRAM_FEATURES = 4096  # larger sets count their density histogram in a worker thread
SORT_CYCLE = ["density", "max_activation", "label_score", "index", "semantic_label"]
DESCENDING_FIRST = {"density", "max_activation", "mean_activation", "label_score"}


def user_name() -> str:
    """Who edits labels by hand: the login name, or 'tui' when there is none."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "tui"


class FeaturesScreen(StudioScreen):
    """A feature set's features; sort, filter, search, bookmark, label and test them from the keyboard."""

    TITLE_TEXT = "Features"
    AUTO_FOCUS = "#features-table"
    BINDINGS = [
        Binding("slash", "search", "Search", id="features.search"),
        Binding("f", "filter", "Filter", id="features.filter"),
        Binding("s", "cycle_sort", "Sort", id="features.sort"),
        Binding("S", "reverse_sort", "Reverse", id="features.reverse", show=False),
        Binding("number_sign,colon", "jump", "Jump", id="features.jump"),
        Binding("b", "bookmark", "Bookmark", id="features.bookmark", show=False),
        Binding("e", "edit_label", "Label", id="features.edit_label"),
        Binding("h", "label_history", "Label history", id="features.label_history", show=False),
        Binding("L", "label_features", "Auto-label", id="features.label"),
        Binding("r", "labeling_runs", "Labeling runs", id="features.labeling_runs", show=False),
        Binding("w", "fire_here", "Fires", id="features.fire_here"),
        Binding("t", "test_text", "Test text", id="features.test_text", show=False),
        Binding("v", "toggle_values", "Values", id="features.values", show=False),
        Binding("x", "steer", "Steer", id="features.steer", show=False),
        # always in the footer: in a text field plain keys type, esc gives them back to the screen
        Binding("escape", "leave_field", "Leave field", id="features.back"),
    ]

    class Tested(Message):
        """The test-text inference for feature `index` finished."""

        def __init__(self, index: int, result: dict[str, Any] | None, error: str) -> None:
            super().__init__()
            self.index, self.result, self.error = index, result, error

    class DensityHistogram(Message):
        """The log-density histogram of feature set `fset_id` is ready."""

        def __init__(self, fset_id: int, edges: list[float], counts: list[int]) -> None:
            super().__init__()
            self.fset_id, self.edges, self.counts = fset_id, edges, counts

    def __init__(self) -> None:
        super().__init__()
        self.search_text = ""
        self.filter_text = ""
        self.flt = fq.FeatureFilter()
        self.sort = "density"
        self.descending = True
        self._readers: dict[int, tuple[Any, list[str]]] = {}
        self._timer: Timer | None = None
        self._typed_at = -math.inf
        self._shown_set: int | None = None
        self._detail_shown: int | None = None
        self.show_values = False  # per-token activation values in the example contexts (v)
        self._pending_detail: int | None = None
        self._detail_timer: Timer | None = None
        self._detail_scheduled = False
        self._reloaded_at = -math.inf
        self._skip_reload = False
        self._loaded_version: tuple[int, int] | None = None

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="split"):
            with Vertical(classes="master"):
                yield Select([], prompt="feature set", id="featureset-select", compact=True)
                yield Input(placeholder="/ search labels and top tokens", id="feature-search", compact=True)
                yield Input(placeholder=f"f filter: {fq.FILTER_HELP}", id="feature-filter", compact=True)
                yield Static("", id="features-status", classes="features-status")
                yield FeatureTable(id="features-table")
            with VerticalScroll(classes="detail-pane", id="feature-pane"):
                yield Static("", id="feature-detail", classes="detail")
                yield Static("", id="feature-examples", classes="detail")
                yield BarPlot("activation histogram (non-zero)", id="feature-hist")
                yield Static("", id="feature-logits", classes="detail")
                yield BarPlot("feature density of the set (log10)", id="set-density-hist")
                yield Static(
                    "similar features (decoder cosine) · Enter jumps", id="feature-similar-title", classes="hint"
                )
                yield OptionList(id="feature-similar")
                yield Input(placeholder="t test text: type, Enter shows this feature per token", id="feature-test")
                yield Static("", id="feature-test-result", classes="detail")

    # --- data -------------------------------------------------------------------------------------
    @property
    def table(self) -> FeatureTable:
        return self.query_one("#features-table", FeatureTable)

    @property
    def feature_set(self) -> FeatureSet | None:
        fset_id = self.query_one("#featureset-select", Select).value
        return FeatureSet.get_or_none(FeatureSet.id == fset_id) if isinstance(fset_id, int) else None

    def reload(self) -> None:
        version = fq.data_version()
        if self._skip_reload or version == self._loaded_version:  # nothing was committed since the last load
            self._skip_reload = False
            return
        self._loaded_version = version
        self._reloaded_at = time.monotonic()
        select = self.query_one("#featureset-select", Select)
        sets = list(FeatureSet.select().where(FeatureSet.status == "ready").order_by(FeatureSet.id))
        options = [(f"{s.name} ({s.d_sae:,})", s.id) for s in sets]
        current = select.value
        with select.prevent(Select.Changed):
            select.set_options(options)
            if current in [v for _, v in options]:
                select.value = current
            elif options:
                select.value = options[-1][1]
        self.load_table(keep=self.table.selected_id, detail=True)

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "featureset-select":
            self.load_table()

    def load_table(self, keep: int | None = None, detail: bool = False) -> None:
        """Show the selected set in the current order and filter, the cursor on feature `keep` if shown.

        The detail pane is redrawn when the feature under the cursor changed, or always when `detail` is set.
        """
        fset = self.feature_set
        table = self.table
        if fset is None:
            table.show(None)
            self._shown_set = None
            self.query_one("#feature-detail", Static).update(
                "No feature sets yet.\n\nOn the Trainings screen, f extracts the features of a finished SAE."
            )
            self.update_status()
            return
        if fset.id != self._shown_set:
            keep, detail = None, True
            self._shown_set = fset.id
            if fset.d_sae <= SYNC_HISTOGRAM_FEATURES:
                self.show_density_histogram(fset.id, *fq.density_histogram(fset.id))
            else:
                self.load_density_histogram(fset.id)
        self.flt.search = self.search_text
        table.show(fset.id, self.sort, self.descending, self.flt, keep=keep)
        self.update_status()
        if detail or table.selected_id != self._detail_shown:
            self.show_feature_soon(table.selected_id)

    @work(thread=True, exclusive=True, group="density-histogram")
    def load_density_histogram(self, fset_id: int) -> None:
        """Count the set's log-density histogram off the UI thread (a full scan of the set)."""
        try:
            edges, counts = fq.density_histogram(fset_id)
        except DatabaseError as exc:  # busy or vanished database: leave the plot empty, say why
            self.app.call_from_thread(self.notify, f"density histogram: {exc}", severity="warning")
            return
        self.post_message(self.DensityHistogram(fset_id, edges, counts))

    def on_features_screen_density_histogram(self, message: FeaturesScreen.DensityHistogram) -> None:
        self.show_density_histogram(message.fset_id, message.edges, message.counts)

    def show_density_histogram(self, fset_id: int, edges: list[float], counts: list[int]) -> None:
        if fset_id == self._shown_set:
            self.query_one("#set-density-hist", BarPlot).set_histogram(edges, counts, "log10 density")

    def update_status(self, problem: str = "") -> None:
        fset = self.feature_set
        status = self.query_one("#features-status", Static)
        if problem:
            status.update(Text(f"⚠ {problem}", style="bold red"), layout=False)
            return
        if fset is None:
            status.update("", layout=False)
            return
        arrow = "↓" if self.descending else "↑"
        # one line high in every layout: a new text never needs a relayout of the screen
        status.update(f"{self.table.total:,} of {fset.d_sae:,} · sort {self.sort} {arrow}", layout=False)

    def on_feature_table_highlighted(self, event: FeatureTable.Highlighted) -> None:
        """Show the feature a frame after the cursor's, then at most every DETAIL_EVERY_S while a key is held."""
        self._pending_detail = event.index
        if event.index == self._detail_shown or self._detail_timer is not None:
            return
        self.show_feature_soon(event.index)
        self._detail_timer = self.set_timer(DETAIL_EVERY_S, self._detail_catch_up)

    def show_feature_soon(self, index: int | None) -> None:
        """Fill the detail pane with feature `index` after the next frame, so the table's cursor and rows never wait.

        Redrawing the pane (examples, plots, similar features) relayouts the screen: ~30-60 ms on a 2-core machine.
        """
        self._pending_detail = index
        if not self._detail_scheduled:
            self._detail_scheduled = True
            self.call_after_refresh(self._show_pending_detail)

    def _show_pending_detail(self) -> None:
        self._detail_scheduled = False
        self.show_feature(self._pending_detail)

    @property
    def detail_index(self) -> int | None:
        """The feature the detail pane shows."""
        return self._detail_shown

    def _detail_catch_up(self) -> None:
        self._detail_timer = None
        if self._pending_detail != self._detail_shown:
            self.show_feature(self._pending_detail)
            self._detail_timer = self.set_timer(DETAIL_EVERY_S, self._detail_catch_up)

    def on_feature_table_sort_requested(self, event: FeatureTable.SortRequested) -> None:
        if event.sort == self.sort:
            self.descending = not self.descending
        else:
            self.sort, self.descending = event.sort, event.sort in DESCENDING_FIRST
        self.load_table(keep=self.table.selected_id)

    def on_screen_resume(self) -> None:
        # Showing the screen sends Mount and then ScreenResume (twice, with modes): one reload is enough.
        # This runs before StudioScreen.on_screen_resume, whose reload() then returns at once.
        self._skip_reload = time.monotonic() - self._reloaded_at < RELOAD_SKIP_S

    def on_screen_suspend(self) -> None:
        # Leaving for Steering (5, the palette or x): it takes the SAE of the set browsed here.
        fset = self.feature_set
        follow = getattr(self.app.screen, "follow_training", None)
        if self.app.current_mode == "steering" and fset is not None and follow is not None:
            follow(fset.training_id)

    @on(JobArtifact)
    def artifact_arrived(self, message: JobArtifact) -> None:
        self.table.invalidate()  # a label arrived from a labeling job

    def reader(self, fset: FeatureSet) -> tuple[Any, list[str]] | None:
        """The torch-free store reader and vocabulary of a feature set (opened once)."""
        if fset.id not in self._readers:
            from mistudio_tui.ml.features.store import FeatureSetReader
            from mistudio_tui.ml.features.table import read_vocab

            try:
                self._readers[fset.id] = (FeatureSetReader(Path(fset.path)), read_vocab(fset.path))
            except (FileNotFoundError, ValueError) as exc:
                self.notify(f"cannot read feature set '{fset.name}': {exc}", severity="error")
                return None
        return self._readers[fset.id]

    def show_feature(self, index: int | None) -> None:
        """Fill the detail pane with feature `index` of the selected set."""
        fset = self.feature_set
        if fset is None or index is None:
            return
        self._detail_shown = index
        opened = self.reader(fset)
        if opened is None:
            return
        reader, vocab = opened
        try:
            detail = reader.feature(index)
        except (ValueError, IndexError, OSError) as exc:
            self.query_one("#feature-detail", Static).update(Text(f"feature {index}: {exc}", style="red"))
            return
        labels = fq.labels_of(fset.training_id, index)
        technical = fq.technical_label_of(fset.id, index)
        self.query_one("#feature-detail", Static).update(feature_header(detail, labels, technical))
        examples = Text()
        examples.append("top activations\n", style="bold")
        for example in detail.top_examples[:EXAMPLES_SHOWN]:
            examples.append_text(example_text(example, vocab, detail.max, self.show_values))
            examples.append("\n")
        for band in reversed(detail.quantile_bands):
            if band.examples:
                examples.append(f"band {fmt.num(band.low)}–{fmt.num(band.high)}\n", style="bold")
                for example in band.examples[:2]:
                    examples.append_text(example_text(example, vocab, detail.max, self.show_values))
                    examples.append("\n")
        self.query_one("#feature-examples", Static).update(examples)
        edges, counts = histogram_series(detail)
        self.query_one("#feature-hist", BarPlot).set_histogram(edges, counts, "activation")
        self.query_one("#feature-logits", Static).update(logit_text(detail, vocab))
        similar = self.query_one("#feature-similar", OptionList)
        similar.clear_options()
        has_similar = detail.similar_ids is not None and len(detail.similar_ids) > 0
        similar.display = self.query_one("#feature-similar-title").display = has_similar
        if has_similar:
            similar.add_options(
                Option(f"#{int(i):<6} cos {float(c):.2f}", id=str(int(i)))
                for i, c in zip(detail.similar_ids[:8], detail.similar_cos[:8], strict=True)
            )
        self.query_one("#feature-test-result", Static).update("")

    # --- search, filter, sort ---------------------------------------------------------------------
    def action_search(self) -> None:
        self.query_one("#feature-search", Input).focus()

    def action_filter(self) -> None:
        self.query_one("#feature-filter", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        """Apply a keystroke that follows a pause at once; keys closer than DEBOUNCE_S apply when they stop."""
        if event.input.id in ("feature-search", "feature-filter"):
            now = time.monotonic()
            burst = self._timer is not None or now - self._typed_at < DEBOUNCE_S
            self._typed_at = now
            if self._timer is not None:
                self._timer.stop()
                self._timer = None
            if burst:
                self._timer = self.set_timer(DEBOUNCE_S, self.apply_query)
            else:
                self.apply_query()

    def apply_query(self) -> None:
        """Apply the search and filter inputs (debounced); a bad filter is reported and not applied."""
        self._timer = None
        search = self.query_one("#feature-search", Input).value
        text = self.query_one("#feature-filter", Input).value
        try:
            flt = fq.parse_filter(text, search)
        except ValueError as exc:
            self.update_status(str(exc))
            return
        self.search_text, self.filter_text, self.flt = search, text, flt
        self.load_table(keep=self.table.selected_id)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id in ("feature-search", "feature-filter"):
            if self._timer is not None:
                self._timer.stop()
                self.apply_query()
            self.table.focus()
        elif event.input.id == "feature-test":
            self.run_test_text(event.value)

    def action_leave_field(self) -> None:
        focused = self.focused
        if isinstance(focused, Input) and focused.id == "feature-search" and focused.value:
            focused.value = ""
        self.table.focus()

    def action_cycle_sort(self) -> None:
        position = SORT_CYCLE.index(self.sort) if self.sort in SORT_CYCLE else -1
        self.sort = SORT_CYCLE[(position + 1) % len(SORT_CYCLE)]
        self.descending = self.sort in DESCENDING_FIRST
        self.load_table(keep=self.table.selected_id)

    def action_reverse_sort(self) -> None:
        self.descending = not self.descending
        self.load_table(keep=self.table.selected_id)

    def action_jump(self) -> None:
        from mistudio_tui.ui.modals.form import Field, FormModal

        fset = self.feature_set
        if fset is None:
            return

        def limit(value: int) -> str | None:
            return None if 0 <= value < fset.d_sae else f"choose 0 to {fset.d_sae - 1}"

        form = FormModal(
            "Jump to feature", [Field("index", "Feature index", kind="int", required=True, validate=limit)], "Jump"
        )
        self.app.push_screen(form, lambda values: self.jump_to(values["index"]) if values else None)

    def jump_to(self, index: int) -> None:
        """Put the cursor on feature `index`, clearing search and filter when they hide it."""
        if self.table.jump_to(index):
            self.table.focus()
            return
        self.query_one("#feature-search", Input).value = ""
        self.query_one("#feature-filter", Input).value = ""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.search_text, self.filter_text, self.flt = "", "", fq.FeatureFilter()
        self.load_table(keep=index)
        if self.table.selected_id != index:
            self.notify(f"feature {index} is not in this feature set", severity="warning")
        self.table.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option_list.id == "feature-similar" and event.option.id is not None:
            self.jump_to(int(event.option.id))

    # --- bookmarks and labels ---------------------------------------------------------------------
    def action_bookmark(self) -> None:
        fset, index = self.feature_set, self.table.selected_id
        if fset is None or index is None:
            return
        marked = fq.toggle_bookmark(fset.id, index)
        self.table.invalidate()
        self.notify(f"feature {index} {'bookmarked' if marked else 'no longer bookmarked'}")

    def action_edit_label(self) -> None:
        from mistudio_tui.ui.modals.label_edit import label_edit_form

        fset, index = self.feature_set, self.table.selected_id
        if fset is None or index is None:
            return
        current = next((lb for lb in fq.labels_of(fset.training_id, index) if lb.is_current), None)

        def save(values: dict[str, Any] | None) -> None:
            if values:
                fq.add_label(
                    fset.training_id,
                    index,
                    technical=values["technical"] or "",
                    semantic=values["semantic"] or "",
                    method="manual",
                    author=user_name(),
                )
                self.after_label_change(index)

        self.app.push_screen(label_edit_form(index, current), save)

    def action_label_history(self) -> None:
        from mistudio_tui.ui.modals.label_edit import LabelHistoryModal

        fset, index = self.feature_set, self.table.selected_id
        if fset is None or index is None:
            return

        def chosen(label_id: int | None) -> None:
            if label_id is not None:
                fq.set_current(FeatureLabel.get_by_id(label_id))
                self.after_label_change(index)

        self.app.push_screen(LabelHistoryModal(index, fq.labels_of(fset.training_id, index)), chosen)

    def after_label_change(self, index: int) -> None:
        self.load_table(keep=index, detail=True)
        self.notify(f"labels of feature {index} saved")

    def action_label_features(self) -> None:
        from mistudio_tui.ui.actions import open_job_form
        from mistudio_tui.ui.modals.labeling import labeling_form

        fset = self.feature_set
        if fset is None:
            self.notify("no feature set to label", severity="warning")
            return
        index = self.table.selected_id
        form = labeling_form(fset, "" if index is None else str(index))
        form.build = partial(self.labeling_spec, fset)  # a refused setting keeps the form open
        open_job_form(self, form)

    def labeling_spec(self, fset: FeatureSet, values: dict[str, Any]) -> Any:
        """The label job for the features the form chose (its row is created here)."""
        from mistudio_tui.services.labeling import parse_feature_list, select_features, start_labeling

        settings = dict(values)
        which = settings.pop("which")
        selection = settings.pop("selection") or ""
        limit = settings.pop("limit")

        def make() -> Any:
            features: str | list[int] = which
            if which == "filter":
                features = select_features(fset, "all", self.flt, limit)
            elif which == "bookmarked":
                features = select_features(fset, "all", fq.FeatureFilter(bookmarked=True), limit)
            elif which == "selection":
                features = parse_feature_list(selection)
            return start_labeling(
                self.studio, fset.id, settings.pop("endpoint"), settings.pop("model"), features, limit, **settings
            )

        return make()

    def action_labeling_runs(self) -> None:
        from mistudio_tui.ui.modals.labeling import LabelingRunsModal

        fset = self.feature_set
        if fset is None:
            return

        def resume(run_id: int | None) -> None:
            if run_id is not None:
                from mistudio_tui.services.labeling import resume_labeling
                from mistudio_tui.ui.actions import start_spec

                start_spec(self, lambda: resume_labeling(run_id))

        self.app.push_screen(LabelingRunsModal(fset), resume)

    # --- inference --------------------------------------------------------------------------------
    def infer(self, method: str, **kwargs: Any) -> dict[str, Any]:
        """Call the app's persistent inference session (started on first use; call from a worker thread)."""
        result: dict[str, Any] = self.studio.inference.call(method, **kwargs)
        return result

    def on_unmount(self) -> None:
        for reader, _ in self._readers.values():
            reader.close()

    def action_fire_here(self) -> None:
        from mistudio_tui.ui.modals.fire_here import FireHereModal

        fset = self.feature_set
        if fset is None:
            return
        modal = FireHereModal(self.infer, fset.training_id)
        self.app.push_screen(modal, lambda index: self.jump_to(index) if index is not None else None)

    def action_toggle_values(self) -> None:
        """Show or hide each token's activation value in the example contexts."""
        self.show_values = not self.show_values
        self.show_feature(self._detail_shown)

    def action_test_text(self) -> None:
        self.query_one("#feature-test", Input).focus()

    def run_test_text(self, text: str) -> None:
        result = self.query_one("#feature-test-result", Static)
        fset, index = self.feature_set, self.table.selected_id
        if fset is None or index is None or not text.strip():
            return
        result.update(Text("running…", style="dim"))
        self.test_worker(fset.training_id, index, text)

    @work(thread=True, exclusive=True, group="test-text")
    def test_worker(self, training_id: int, index: int, text: str) -> None:
        try:
            answer = self.infer("feature_activations", training_id=training_id, text=text, features=[index])
        except Exception as exc:  # shown in the pane, never raised into the UI
            self.post_message(self.Tested(index, None, str(exc) or type(exc).__name__))
            return
        self.post_message(self.Tested(index, answer, ""))

    def on_features_screen_tested(self, message: FeaturesScreen.Tested) -> None:
        result = self.query_one("#feature-test-result", Static)
        if message.index != self.table.selected_id:
            return
        if message.error:
            result.update(Text(f"⚠ {message.error}", style="red"))
            return
        assert message.result is not None
        activations = message.result["activations"]
        values = activations.get(message.index, activations.get(str(message.index), []))
        result.update(activation_text(message.result["tokens"], values))

    def action_steer(self) -> None:
        fset, index = self.feature_set, self.table.selected_id
        if fset is None or index is None:
            return
        training_id = fset.training_id

        def add() -> None:
            from mistudio_tui.ui.screens.steering import SteeringScreen

            screen = self.app.screen
            if isinstance(screen, SteeringScreen):
                screen.add_feature(training_id, index)

        self.app.switch_mode("steering")
        self.app.call_after_refresh(add)
