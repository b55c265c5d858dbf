"""Features: browse the features of a feature set (paged from SQLite) and inspect one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Input, Select, Static

from mistudio_tui.db import features as fq
from mistudio_tui.db.models import FeatureSet
from mistudio_tui.ui import format as fmt
from mistudio_tui.ui.screens.base import StudioScreen
from mistudio_tui.ui.widgets.feature_view import (
    example_text,
    feature_header,
    histogram_series,
    logit_text,
    similar_text,
)
from mistudio_tui.ui.widgets.plots import BarPlot
from mistudio_tui.ui.widgets.record_table import RecordTable

PAGE = 500
EXAMPLES_SHOWN = 8


class FeaturesScreen(StudioScreen):
    """A feature set's features, sorted by density; `/` searches labels and top tokens."""

    TITLE_TEXT = "Features"
    BINDINGS = [
        Binding("slash", "search", "Search", id="features.search"),
        Binding("escape", "clear_search", "Clear", id="features.clear", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.search_text = ""
        self._readers: dict[int, tuple[Any, list[str]]] = {}

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="split"):
            with Vertical(classes="master"):
                yield Select([], prompt="feature set", id="featureset-select")
                yield Input(placeholder="/ search labels and top tokens", id="feature-search")
                yield RecordTable(
                    [
                        ("index", "#", 6),
                        ("density", "Density", 8),
                        ("max", "Max", 6),
                        ("top", "Top tokens", 28),
                        ("label", "Label", 24),
                    ],
                    id="features-table",
                )
            with VerticalScroll(classes="detail-pane"):
                yield Static("", id="feature-detail", classes="detail")
                yield Static("", id="feature-examples", classes="detail")
                yield BarPlot("activation histogram (non-zero)", id="feature-hist")
                yield Static("", id="feature-logits", classes="detail")
                yield Static("", id="feature-similar", classes="detail")

    def reload(self) -> None:
        select = self.query_one("#featureset-select", Select)
        sets = list(FeatureSet.select().where(FeatureSet.status == "ready").order_by(FeatureSet.id))
        options = [(f"{s.name} ({s.d_sae:,})", s.id) for s in sets]
        current = select.value
        select.set_options(options)
        if current in [v for _, v in options]:
            select.value = current
        elif options:
            select.value = options[-1][1]
        self.load_page()

    def on_select_changed(self, event: Select.Changed) -> None:
        self.load_page()

    def load_page(self) -> None:
        table = self.query_one("#features-table", RecordTable)
        fset_id = self.query_one("#featureset-select", Select).value
        if not isinstance(fset_id, int):
            table.set_records([])
            self.query_one("#feature-detail", Static).update(
                "No feature sets yet.\n\nOn the Trainings screen, f extracts the features of a finished SAE."
            )
            return
        flt = fq.FeatureFilter(search=self.search_text)
        rows = fq.feature_page(fset_id, "density", True, flt, 0, PAGE)
        table.set_records(
            [
                (
                    f.index,
                    (
                        str(f.index),
                        fmt.num(f.density),
                        fmt.num(f.max_activation),
                        f.top_tokens[:28],
                        (f.semantic_label or f.technical_label)[:24],
                    ),
                )
                for f in rows
            ]
        )
        self.show_feature()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_feature()

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

    def show_feature(self) -> None:
        fset_id = self.query_one("#featureset-select", Select).value
        index = self.query_one("#features-table", RecordTable).selected_id
        if not isinstance(fset_id, int) or index is None:
            return
        fset = FeatureSet.get_or_none(FeatureSet.id == fset_id)
        opened = self.reader(fset) if fset is not None else None
        if opened is None:
            return
        reader, vocab = opened
        detail = reader.feature(index)
        labels = fq.labels_of(fset.training_id, index)
        self.query_one("#feature-detail", Static).update(feature_header(detail, labels))
        examples = Text()
        examples.append("top activations\n", style="bold")
        for example in detail.top_examples[:EXAMPLES_SHOWN]:
            examples.append_text(example_text(example, vocab, detail.max))
            examples.append("\n")
        for band in reversed(detail.quantile_bands):
            if band.examples:
                examples.append(f"band {fmt.num(band.low)}–{fmt.num(band.high)}\n", style="bold")
                for example in band.examples[:2]:
                    examples.append_text(example_text(example, vocab, detail.max))
                    examples.append("\n")
        self.query_one("#feature-examples", Static).update(examples)
        edges, counts = histogram_series(detail)
        self.query_one("#feature-hist", BarPlot).set_histogram(edges, counts, "activation")
        self.query_one("#feature-logits", Static).update(logit_text(detail, vocab))
        self.query_one("#feature-similar", Static).update(similar_text(detail))

    def action_search(self) -> None:
        self.query_one("#feature-search", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "feature-search":
            self.search_text = event.value
            self.load_page()

    def action_clear_search(self) -> None:
        search = self.query_one("#feature-search", Input)
        search.value = ""
        self.query_one("#features-table", RecordTable).focus()
