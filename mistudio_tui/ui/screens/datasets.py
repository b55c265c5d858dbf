"""Datasets: corpora and their tokenizations, statistics, adding, tokenizing and deleting."""

from __future__ import annotations

import json
import math
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from mistudio_tui.db.models import ActivationSet, Dataset, LanguageModel, Tokenization
from mistudio_tui.services import datasets as svc
from mistudio_tui.ui import format as fmt
from mistudio_tui.ui.actions import confirm_delete, open_job_form, start_spec
from mistudio_tui.ui.modals.form import Field, FormModal
from mistudio_tui.ui.screens.base import StudioScreen
from mistudio_tui.ui.widgets.plots import BarPlot
from mistudio_tui.ui.widgets.record_table import RecordTable

if TYPE_CHECKING:
    from mistudio_tui.app import MiStudioApp

DOCUMENTS_FILE = "documents.jsonl"
SAMPLE_PAGE = 8


def read_documents(folder: str | Path, start: int, count: int) -> list[str]:
    """Documents `start` .. `start + count` of an ingested dataset (reads only up to them)."""
    path = Path(folder) / DOCUMENTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"dataset documents not found: {path}")
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line)["text"] for line in islice(handle, start, start + count)]


class SampleRowsModal(ModalScreen[None]):
    """Pages through a dataset's documents: n / p for the next / previous page, esc to close."""

    BINDINGS = [
        Binding("escape", "close", "Close", id="samples.close"),
        Binding("n", "page(1)", "Next page", id="samples.next"),
        Binding("p", "page(-1)", "Previous page", id="samples.previous"),
    ]

    def __init__(self, dataset: Dataset) -> None:
        super().__init__()
        self.dataset_name = dataset.name
        self.folder = dataset.path
        self.total = int(dataset.n_documents or 0)
        self.start = 0

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog", classes="dialog"):
            yield Static("", id="samples-title", classes="dialog-title")
            yield Static("", id="samples-rows")

    def on_mount(self) -> None:
        self.show_page()

    def show_page(self) -> None:
        try:
            rows = read_documents(self.folder, self.start, SAMPLE_PAGE)
        except (OSError, ValueError, KeyError) as exc:
            rows = []
            self.notify(f"cannot read the documents of '{self.dataset_name}': {exc}", severity="error")
        last = self.start + len(rows)
        self.query_one("#samples-title", Static).update(
            f"{self.dataset_name}: documents {self.start + 1:,}–{last:,} of {self.total:,}  (n next · p previous · esc)"
        )
        text = Text()
        for i, row in enumerate(rows, start=self.start + 1):
            text.append(f"#{i}  ", style="bold")
            text.append(row[:600] + ("…" if len(row) > 600 else "") + "\n\n")
        self.query_one("#samples-rows", Static).update(text)

    def action_page(self, step: int) -> None:
        start = max(0, self.start + step * SAMPLE_PAGE)
        if start >= max(self.total, 1):
            return
        self.start = start
        self.show_page()

    def action_close(self) -> None:
        self.dismiss(None)


def tokenization_lines(t: Tokenization) -> list[str]:
    """What the Datasets screen says about one tokenization: settings, counts, top tokens and who uses it."""
    stats: dict[str, Any] = t.stats or {}
    tokenizer = t.model.name if t.model else t.tokenizer
    sep = "" if not t.packing else f", separator {stats.get('separator_token') or t.separator}"
    start = f"start {stats['start_token']}" if t.prepend_bos and stats.get("start_token") else None
    lines = [
        f"[b]{escape(t.name)}[/b]  tokenizer {escape(str(tokenizer))}",
        f"context {t.context_size} · {escape(start or ('BOS on' if t.prepend_bos else 'BOS off'))} · "
        f"{'packed' if t.packing else 'one document per row'}{escape(sep)}",
        f"tokens {t.n_tokens:,} in {t.n_sequences:,} rows"
        + (f" · padding {stats['padding_fraction']:.1%}" if stats.get("padding_fraction") is not None else "")
        + (f" · {stats['distinct_tokens']:,} distinct" if stats.get("distinct_tokens") is not None else ""),
    ]
    docs = stats.get("document_lengths") or {}
    if docs:
        lines.append(f"document length (tokens) min/median/max: {docs['min']}/{docs['median']:.0f}/{docs['max']}")
    top = [e for e in stats.get("top_tokens") or [] if not e.get("special")][:10]
    if top:
        shown = "  ".join(f"{escape(repr(e.get('text', e['id'])))} {fmt.count(e['count'])}" for e in top)
        lines.append(f"most frequent: {shown}")
    users = list(ActivationSet.select(ActivationSet.name).where(ActivationSet.tokenization == t.id))
    if users:
        names = ", ".join(escape(a.name) for a in users[:3]) + (" …" if len(users) > 3 else "")
        lines.append(f"[green]used by {len(users)} activation set(s): {names}[/green]")
    else:
        lines.append("[dim]not used yet: extraction (Models, e) names the tokenization it reads[/dim]")
    if t.error:
        lines.append(f"[red]error: {escape(t.error)}[/red]")
    return lines


class DatasetsScreen(StudioScreen):
    """Datasets on the left (tokenizations of the selected one below), statistics on the right."""

    TITLE_TEXT = "Datasets"
    BINDINGS = [
        Binding("a", "add_dataset", "Add", id="datasets.add"),
        Binding("t", "tokenize", "Tokenize", id="datasets.tokenize"),
        Binding("x", "delete", "Delete", id="datasets.delete"),
        Binding("v", "view_rows", "View rows", id="datasets.rows"),
        Binding("r", "resume", "Resume", id="datasets.resume", show=False),
        Binding("s", "sample", "Sample", id="datasets.sample"),
    ]

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="split"):
            with Vertical(classes="master"):
                yield Static("Datasets", classes="section-title")
                yield RecordTable(
                    [
                        ("name", "Name", 24),
                        ("status", "Status", 9),
                        ("docs", "Docs", 7),
                        ("chars", "Chars", 7),
                    ],
                    flex="name",
                    id="datasets-table",
                )
                yield Static("Tokenizations of the selected dataset", classes="section-title")
                yield RecordTable(
                    [
                        ("name", "Name", 26),
                        ("status", "Status", 9),
                        ("tok", "Tokenizer", 14),
                        ("ctx", "Ctx", 5),
                        ("tokens", "Tokens", 7),
                        ("used", "Acts", 4),
                    ],
                    flex="name",
                    id="tokenizations-table",
                    classes="short",
                )
            with VerticalScroll(classes="detail-pane"):
                yield Static("", id="dataset-detail", classes="detail")
                yield BarPlot("document length (characters, log10)", id="length-hist")
                yield Static("", id="tokenization-detail", classes="detail")
                yield Static("", id="dataset-samples", classes="detail")

    def reload(self) -> None:
        datasets = list(Dataset.select().order_by(Dataset.id))
        table = self.query_one("#datasets-table", RecordTable)
        table.set_records(
            [
                (d.id, (d.name, fmt.status_text(d.status), fmt.count(d.n_documents), fmt.count(d.n_chars)))
                for d in datasets
            ]
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
        elif event.data_table.id == "tokenizations-table":
            self.show_tokenization()

    def show_tokenization(self) -> None:
        panel = self.query_one("#tokenization-detail", Static)
        tokenization = self.tokenization
        if tokenization is None or self.dataset is None or tokenization.dataset_id != self.dataset.id:
            panel.update("[dim]No tokenizations yet: t tokenizes this dataset.[/dim]" if self.dataset else "")
            return
        panel.update("\n".join(tokenization_lines(tokenization)))

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
            hist.display = False
            samples.update("")
            self.show_tokenization()
            return
        rows = []
        for t in dataset.tokenizations.order_by(Tokenization.id):
            tokenizer = t.model.name if t.model else t.tokenizer.split("/")[-1]
            used = ActivationSet.select().where(ActivationSet.tokenization == t.id).count()
            cells = (
                t.name,
                fmt.status_text(t.status),
                tokenizer,
                str(t.context_size),
                fmt.count(t.n_tokens),
                str(used),
            )
            rows.append((t.id, cells))
        toks.set_records(rows)
        self.show_tokenization()
        stats: dict[str, Any] = dataset.stats or {}
        lines = [
            f"[b]{escape(dataset.name)}[/b]  ({dataset.source_type})",
            f"source: {escape(dataset.source)}",
            f"documents: {dataset.n_documents:,}   characters: {dataset.n_chars:,}",
        ]
        if dataset.text_field:
            lines.append(f"text field: {escape(dataset.text_field)}")
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
            lines.append(f"[red]error: {escape(dataset.error)}[/red]")
        lines.append(f"[dim]{escape(str(dataset.path))}[/dim]")
        detail.update("\n".join(lines))
        histogram = stats.get("length_histogram") or {}
        edges, counts = list(histogram.get("edges") or []), list(histogram.get("counts") or [])
        if edges and edges[0] <= 0:  # the bin of empty documents has no place on a log axis
            edges, counts = edges[1:], counts[1:]
        log_edges = [math.log10(e) for e in edges]
        has_lengths = len(log_edges) > 1 and any(counts)
        hist.set_histogram(log_edges, counts if has_lengths else [])
        hist.display = has_lengths  # a failed or empty dataset has no lengths: show no empty axes
        rows_text = Text("Sample rows (v: view all)\n", style="bold")
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
            Field("text_field", "Text field (blank: 'text' or the only text field)"),
            Field("limit", "Row limit (optional)", kind="int", placeholder="e.g. 100k"),
            Field("hub_config", "Hub config (optional)"),
            Field("hub_split", "Hub split", default="train"),
            Field("streaming", "Hub: stream rows (no full download)", kind="bool", default=True),
            Field(
                "txt_mode",
                "Text files",
                kind="choice",
                choices=[("one document per line", "lines"), ("one document per file", "file")],
                default="lines",
                required=True,
            ),
            Field(
                "unicode_form",
                "Unicode normalisation",
                kind="choice",
                choices=[("NFC", "NFC"), ("NFKC", "NFKC"), ("none", "none")],
                default=svc.CLEANING_DEFAULTS["unicode_form"],
                required=True,
            ),
            Field("normalize_whitespace", "Collapse whitespace", kind="bool"),
            Field("strip_html", "Strip HTML", kind="bool"),
            Field("dedupe", "Drop exact duplicates", kind="bool"),
            Field("min_chars", "Drop documents shorter than (chars)", kind="int", default=0),
            Field("skip_bad_rows", "Skip malformed rows (count them instead of failing)", kind="bool"),
        ]

        def build(values: dict[str, Any]) -> Any:
            cleaning = {key: values[key] for key in ("unicode_form", "normalize_whitespace", "strip_html", "dedupe")}
            cleaning["min_chars"] = values["min_chars"] or 0
            return svc.add_dataset(
                self.studio,
                values["source"],
                name=values["name"],
                text_field=values["text_field"],
                txt_mode=values["txt_mode"],
                limit=values["limit"],
                hub_config=values["hub_config"],
                hub_split=values["hub_split"] or "train",
                streaming=values["streaming"],
                cleaning=cleaning,
                skip_bad_rows=values["skip_bad_rows"],
            )

        note = "A wrong text field fails with the list of fields; `mistudio datasets fields SOURCE` shows them first."
        open_job_form(self, FormModal("Add a dataset", fields, "Add", note=note, build=build))

    def action_view_rows(self) -> None:
        dataset = self.dataset
        if dataset is None or dataset.status != "ready":
            self.notify("Select a ready dataset first", severity="warning")
            return
        self.app.push_screen(SampleRowsModal(dataset))

    def action_resume(self) -> None:
        focused, tokenization, dataset = self.focused, self.tokenization, self.dataset
        if isinstance(focused, RecordTable) and focused.id == "tokenizations-table" and tokenization is not None:
            start_spec(self, lambda: svc.resume_tokenization(self.studio, tokenization.id))
        elif dataset is not None:
            start_spec(self, lambda: svc.resume_ingest(self.studio, dataset.id))
        else:
            self.notify("Select a dataset first", severity="warning")

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

        def build(values: dict[str, Any]) -> Any:
            return svc.tokenize_dataset(
                self.studio,
                dataset.id,
                model_ref=None if values["tokenizer"] else values["model"],
                tokenizer=values["tokenizer"],
                context_size=values["context_size"] or 128,
                prepend_bos=values["prepend_bos"],
                packing=values["packing"],
                max_tokens=values["max_tokens"],
            )

        note = f"Dataset '{dataset.name}'. Every later step names the tokenization it uses."
        open_job_form(self, FormModal("Tokenize", fields, "Tokenize", note=note, build=build))

    def action_delete(self) -> None:
        focused = self.focused
        if isinstance(focused, RecordTable) and focused.id == "tokenizations-table" and self.tokenization:
            confirm_delete(self, self.tokenization)
        elif self.dataset is not None:
            confirm_delete(self, self.dataset)

    def action_sample(self) -> None:
        cast("MiStudioApp", self.app).offer_to_build_sample()
