"""Compare runs: one metric of each overlaid on shared axes, final numbers and configs side by side."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from mistudio_tui.db import metrics as mq
from mistudio_tui.db.models import Training
from mistudio_tui.ui import format as fmt
from mistudio_tui.ui.screens.base import StudioScreen
from mistudio_tui.ui.widgets.plots import CurvePlot
from mistudio_tui.ui.widgets.runs import LOG_DEFAULT, MetricKeys

FINAL_METRICS = (
    ("state", lambda t: t.status),
    ("steps", lambda t: f"{t.steps:,}"),
    ("loss", lambda t: fmt.num(t.loss)),
    ("L0", lambda t: fmt.num(t.l0)),
    ("EV", lambda t: fmt.num(t.explained_variance)),
    ("dead", lambda t: fmt.num(t.dead_fraction)),
    ("tok/s", lambda t: fmt.count(t.tokens_per_s)),
)
DIFF_STYLE = "bold yellow"


def flat_config(config: dict[str, Any]) -> dict[str, str]:
    """`section.key` → JSON value text of a run config."""
    out: dict[str, str] = {}
    for section, values in (config or {}).items():
        if isinstance(values, dict):
            out.update({f"{section}.{k}": json.dumps(v) for k, v in values.items()})
        else:
            out[section] = json.dumps(values)
    return out


def config_rows(runs: Sequence[Training]) -> list[tuple[str, list[str], bool]]:
    """(key, value per run, differs) for every config key any run has; differing keys first."""
    flats = [flat_config(t.config) for t in runs]
    keys = sorted({k for flat in flats for k in flat})
    rows = []
    for key in keys:
        values = [flat.get(key, "-") for flat in flats]
        rows.append((key, values, len(set(values)) > 1))
    return sorted(rows, key=lambda row: not row[2])


class TrainingCompareScreen(MetricKeys, StudioScreen):
    """Runs overlaid: m cycles the metric, l toggles log y, escape goes back."""

    TITLE_TEXT = "Compare runs"
    BINDINGS = [
        Binding("escape", "back", "Back", id="training_compare.back"),
        Binding("m", "next_metric", "Metric", id="training_compare.metric"),
        Binding("l", "toggle_log", "Log/linear", id="training_compare.log"),
    ]

    def __init__(self, training_ids: Sequence[int]) -> None:
        super().__init__()
        self.training_ids = list(training_ids)
        self.metric = "loss"
        self.log_y: bool | None = None

    def compose_body(self) -> ComposeResult:
        with Vertical(id="compare"):
            yield CurvePlot("loss", id="compare-curve")
            yield Static("", id="compare-legend", classes="hint")
            yield DataTable(id="compare-table", zebra_stripes=True, cursor_type="row")

    def runs(self) -> list[Training]:
        """The compared runs that still exist, in the order they were marked."""
        found = {t.id: t for t in Training.select().where(Training.id.in_(self.training_ids))}
        return [found[i] for i in self.training_ids if i in found]

    def reload(self) -> None:
        runs = self.runs()
        self.draw_curves(runs)
        table = self.query_one("#compare-table", DataTable)
        row = table.cursor_row  # the rows are the same metrics and config keys in the same order
        table.clear(columns=True)
        table.add_column("", key="key")
        for t in runs:
            table.add_column(t.name, key=str(t.id))
        for label, get in FINAL_METRICS:
            table.add_row(Text(label, style="bold"), *[str(get(t)) for t in runs])
        for key, values, differs in config_rows(runs):
            style = DIFF_STYLE if differs else ""
            marker = "≠ " if differs else "  "
            table.add_row(Text(marker + key, style=style), *[Text(v, style=style) for v in values])
        table.move_cursor(row=min(row, table.row_count - 1))

    def draw_curves(self, runs: Sequence[Training]) -> None:
        series: list[tuple[str, Sequence[float], Sequence[float]]] = []
        for t in runs:
            data = mq.curve(t.id, self.metric)
            series.append((t.name, data.steps, data.values))
        log = self.log_y if self.log_y is not None else LOG_DEFAULT.get(self.metric, False)
        title = f"{self.metric} · {len(runs)} runs" + (" · log y" if log else "")
        self.query_one("#compare-curve", CurvePlot).set_series(series, title=title, log_y=log)
        empty = [t.name for t, (_, xs, _) in zip(runs, series, strict=True) if not xs]
        legend = "m: metric · l: log/linear · ≠ marks config keys that differ"
        if empty:
            legend = f"no {self.metric} points for {', '.join(empty)} · " + legend
        self.query_one("#compare-legend", Static).update(legend)

    def action_back(self) -> None:
        self.app.pop_screen()

    def redraw_metric(self) -> None:
        self.reload()
