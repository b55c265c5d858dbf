"""Datasets: corpora and their tokenizations, statistics, adding, tokenizing and deleting."""

from __future__ import annotations

import math
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from mistudio_tui.db.models import Dataset, LanguageModel, Tokenization
from mistudio_tui.services import datasets as svc
from mistudio_tui.ui import format as fmt
from mistudio_tui.ui.actions import confirm_delete, start_spec
from mistudio_tui.ui.modals.form import Field, FormModal
from mistudio_tui.ui.screens.base import StudioScreen
from mistudio_tui.ui.screens.jobs import status_text
from mistudio_tui.ui.widgets.plots import BarPlot
from mistudio_tui.ui.widgets.record_table import RecordTable


class DatasetsScreen(StudioScreen):
    """Datasets on the left (tokenizations of the selected one below), statistics on the right."""

    TITLE_TEXT = "Datasets"
    BINDINGS = [
        Binding("a", "add_dataset", "Add", id="datasets.add"),
        Binding("t", "tokenize", "Tokenize", id="datasets.tokenize"),
        Binding("x", "delete", "Delete", id="datasets.delete"),
        Binding("s", "sample", "Sample", id="datasets.sample", show=False),
    ]

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="split"):
            with Vertical(classes="master"):
                yield Static("Datasets", classes="section-title")
                yield RecordTable(
                    [
                        ("name", "Name", 24),
                        ("docs", "Docs", 7),
                        ("chars", "Chars", 7),
                        ("status", "Status", 9),
                    ],
                    id="datasets-table",
                )
                yield Static("Tokenizations of the selected dataset", classes="section-title")
                yield RecordTable(
                    [
                        ("name", "Name", 28),
                        ("tok", "Tokenizer", 16),
                        ("ctx", "Ctx", 5),
                        ("tokens", "Tokens", 7),
                        ("status", "Status", 9),
                    ],
                    id="tokenizations-table",
                    classes="short",
                )
            with VerticalScroll(classes="detail-pane"):
                yield Static("", id="dataset-detail", classes="detail")
                yield BarPlot("document length (characters, log10)", id="length-hist")
                yield Static("", id="dataset-samples", classes="detail")

    def reload(self) -> None:
        datasets = list(Dataset.select().order_by(Dataset.id))
        table = self.query_one("#datasets-table", RecordTable)
        table.set_records(
            [(d.id, (d.name, fmt.count(d.n_documents), fmt.count(d.n_chars), status_text(d.status))) for d in datasets]
        )
        self.show_selected()

    @property
    def dataset(self) -> Dataset | None:
        rid = self.query_one("#datasets-table", RecordTable).selected_id
        return Dataset.get_or_none(Dataset.id == rid) if rid is not None else None

    @property
    def tokenization(self) -> Tokenization | None:
        rid = self.query_one("#tokenizations-table", RecordTable).selected_id
        return Tokenization.get_or_none(Tokenization.id == rid) if rid is not None else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "datasets-table":
            self.show_selected()

    def show_selected(self) -> None:
        dataset = self.dataset
        detail = self.query_one("#dataset-detail", Static)
        toks = self.query_one("#tokenizations-table", RecordTable)
        hist = self.query_one("#length-hist", BarPlot)
        samples = self.query_one("#dataset-samples", Static)
        if dataset is None:
            detail.update("No datasets yet.\n\na: add a file, folder or hub dataset · s: build the offline sample")
            toks.set_records([])
            hist.set_histogram([], [])
            samples.update("")
            return
        rows = []
        for t in dataset.tokenizations.order_by(Tokenization.id):
            tokenizer = t.model.name if t.model else t.tokenizer.split("/")[-1]
            rows.append((t.id, (t.name, tokenizer, str(t.context_size), fmt.count(t.n_tokens), status_text(t.status))))
        toks.set_records(rows)
        stats: dict[str, Any] = dataset.stats or {}
        lines = [
            f"[b]{dataset.name}[/b]  ({dataset.source_type})",
            f"source: {dataset.source}",
            f"documents: {dataset.n_documents:,}   characters: {dataset.n_chars:,}",
        ]
        if stats.get("words") is not None:
            lines.append(f"words: {stats['words']:,}")
        lengths = stats.get("length_chars") or {}
        if lengths:
            lines.append(
                f"length min/median/max: {lengths.get('min')}/{lengths.get('median'):.0f}/{lengths.get('max')} chars"
            )
        if dataset.cleaning:
            on = [k for k, v in dataset.cleaning.items() if v not in (False, 0, None, "none")]
            lines.append("cleaning: " + (", ".join(on) if on else "none"))
        if dataset.error:
            lines.append(f"[red]error: {dataset.error}[/red]")
        lines.append(f"[dim]{dataset.path}[/dim]")
        detail.update("\n".join(lines))
        histogram = stats.get("length_histogram") or {}
        edges = [math.log10(e) for e in histogram.get("edges") or [] if e > 0]
        hist.set_histogram(edges, (histogram.get("counts") or []) if edges else [])
        rows_text = Text()
        for sample in (stats.get("samples") or [])[:3]:
            rows_text.append("• " + str(sample)[:300].replace("\n", " ") + "\n", style="italic")
        samples.update(rows_text)

    # --- actions ---------------------------------------------------------------------------------
    def action_add_dataset(self) -> None:
        fields = [
            Field(
                "source",
                "File, folder or hub dataset id",
                required=True,
                placeholder="~/corpus.jsonl  or  roneneldan/TinyStories",
            ),
            Field("name", "Name (optional)"),
            Field("text_field", "Text field (default: text)"),
            Field("limit", "Row limit (optional)", kind="int", placeholder="e.g. 100k"),
            Field("hub_split", "Hub split", default="train"),
            Field("dedupe", "Drop exact duplicates", kind="bool"),
            Field("strip_html", "Strip HTML", kind="bool"),
            Field("min_chars", "Drop documents shorter than (chars)", kind="int", default=0),
        ]

        def done(values: dict[str, Any] | None) -> None:
            if values:
                cleaning = {
                    "dedupe": values["dedupe"],
                    "strip_html": values["strip_html"],
                    "min_chars": values["min_chars"] or 0,
                }
                start_spec(
                    self,
                    lambda: svc.add_dataset(
                        self.studio,
                        values["source"],
                        name=values["name"],
                        text_field=values["text_field"],
                        limit=values["limit"],
                        hub_split=values["hub_split"] or "train",
                        cleaning=cleaning,
                    ),
                )

        self.app.push_screen(FormModal("Add a dataset", fields, "Add"), done)

    def action_tokenize(self) -> None:
        dataset = self.dataset
        if dataset is None:
            self.notify("Select a dataset first", severity="warning")
            return
        models = [(m.name, m.id) for m in LanguageModel.select().where(LanguageModel.status == "ready")]
        fields = [
            Field(
                "model",
                "Tokenizer of model",
                kind="choice",
                choices=models,
                default=models[0][1] if models else None,
            ),
            Field("tokenizer", "…or a tokenizer folder / hub name"),
            Field("context_size", "Context size (tokens per row)", kind="int", default=128),
            Field("prepend_bos", "Prepend BOS to every row", kind="bool", default=True),
            Field("packing", "Pack documents (concatenate with a separator)", kind="bool", default=True),
            Field("max_tokens", "Token limit (optional)", kind="int"),
        ]

        def done(values: dict[str, Any] | None) -> None:
            if values:
                start_spec(
                    self,
                    lambda: svc.tokenize_dataset(
                        self.studio,
                        dataset.id,
                        model_ref=None if values["tokenizer"] else values["model"],
                        tokenizer=values["tokenizer"],
                        context_size=values["context_size"] or 128,
                        prepend_bos=values["prepend_bos"],
                        packing=values["packing"],
                        max_tokens=values["max_tokens"],
                    ),
                )

        note = f"Dataset '{dataset.name}'. Every later step names the tokenization it uses."
        self.app.push_screen(FormModal("Tokenize", fields, "Tokenize", note=note), done)

    def action_delete(self) -> None:
        focused = self.focused
        if isinstance(focused, RecordTable) and focused.id == "tokenizations-table" and self.tokenization:
            confirm_delete(self, self.tokenization)
        elif self.dataset is not None:
            confirm_delete(self, self.dataset)

    def action_sample(self) -> None:
        self.app.offer_to_build_sample()
