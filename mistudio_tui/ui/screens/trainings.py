"""Trainings: SAE runs with live curves; start, pause (checkpoint), resume, delete, extract features."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from mistudio_tui.db import metrics as mq
from mistudio_tui.db.models import ActivationSet, Training, TrainingTemplate
from mistudio_tui.jobs.runner import tail_file
from mistudio_tui.services import features as feature_svc
from mistudio_tui.services import trainings as svc
from mistudio_tui.ui import format as fmt
from mistudio_tui.ui.actions import confirm_delete, start_spec
from mistudio_tui.ui.messages import JobUpdate
from mistudio_tui.ui.modals.form import Field, FormModal
from mistudio_tui.ui.screens.base import StudioScreen
from mistudio_tui.ui.screens.jobs import status_text
from mistudio_tui.ui.widgets.plots import CurvePlot
from mistudio_tui.ui.widgets.record_table import RecordTable

CURVE_METRICS = ("loss", "mse", "l0", "explained_variance", "dead_fraction", "lr", "tokens_per_s")
LOG_DEFAULT = {"loss": True, "mse": True}


class TrainingsScreen(StudioScreen):
    """Runs on the left; the selected run's curve, numbers and log on the right."""

    TITLE_TEXT = "Trainings"
    BINDINGS = [
        Binding("n", "new_training", "New", id="trainings.new"),
        Binding("c", "pause", "Pause/cancel", id="trainings.pause"),
        Binding("r", "resume", "Resume", id="trainings.resume"),
        Binding("f", "extract_features", "Features", id="trainings.features"),
        Binding("m", "next_metric", "Metric", id="trainings.metric"),
        Binding("l", "toggle_log", "Log y", id="trainings.log", show=False),
        Binding("x", "delete", "Delete", id="trainings.delete"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.metric = "loss"
        self.log_y: bool | None = None
        self._last_curve = 0.0

    def compose_body(self) -> ComposeResult:
        with Vertical(classes="split"):
            with Vertical(classes="master"):
                yield Static("Training runs", classes="section-title")
                yield RecordTable(
                    [
                        ("name", "Name", 24),
                        ("arch", "Arch", 8),
                        ("width", "Width", 6),
                        ("k", "k/L1", 6),
                        ("steps", "Steps", 6),
                        ("loss", "Loss", 8),
                        ("l0", "L0", 6),
                        ("ev", "EV", 6),
                        ("status", "Status", 10),
                    ],
                    id="trainings-table",
                )
            with Vertical(classes="detail-pane"):
                yield CurvePlot("loss", id="curve")
                yield Static("", id="training-detail", classes="detail")
                yield Static("", id="training-log", classes="log-tail")

    def reload(self) -> None:
        runs = list(Training.select().order_by(Training.id))
        self.query_one("#trainings-table", RecordTable).set_records([(t.id, self._cells(t)) for t in runs])
        self.show_selected()

    @staticmethod
    def _cells(t: Training) -> tuple:
        sae = (t.config or {}).get("sae", {})
        sparsity = sae.get("k") if t.architecture in ("topk", "batchtopk") else sae.get("l1_coefficient")
        return (
            t.name,
            t.architecture,
            fmt.count(t.d_sae),
            fmt.num(sparsity),
            fmt.count(t.steps),
            fmt.num(t.loss),
            fmt.num(t.l0),
            fmt.num(t.explained_variance),
            status_text(t.status),
        )

    @property
    def training(self) -> Training | None:
        rid = self.query_one("#trainings-table", RecordTable).selected_id
        return Training.get_or_none(Training.id == rid) if rid is not None else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_selected()

    def show_selected(self) -> None:
        training = self.training
        detail = self.query_one("#training-detail", Static)
        plot = self.query_one("#curve", CurvePlot)
        log = self.query_one("#training-log", Static)
        if training is None:
            detail.update("No trainings yet.\n\nn: train an SAE on an activation set (Models screen, e: extract)")
            plot.set_series([], title=self.metric)
            log.update("")
            return
        self.draw_curve(training)
        sae = (training.config or {}).get("sae", {})
        train = (training.config or {}).get("train", {})
        frac = training.tokens / training.total_tokens if training.total_tokens else None
        lines = [
            f"[b]{training.name}[/b]  {training.architecture} {sae.get('d_in', '?')}→{training.d_sae}"
            + (f" k={sae['k']}" if sae.get("k") else "")
            + f"  hook {training.hook_name or '-'}",
            f"tokens {fmt.count(training.tokens)}/{fmt.count(training.total_tokens)} {fmt.bar(frac, 10)}  "
            f"steps {training.steps:,}  {fmt.count(training.tokens_per_s)} tok/s  on {training.device or '-'}",
            f"loss {fmt.num(training.loss)} · L0 {fmt.num(training.l0)} · EV {fmt.num(training.explained_variance)}"
            f" · dead {fmt.num(training.dead_fraction)}",
            f"lr {train.get('lr') or 'auto'} · batch {train.get('batch_size')} · {train.get('dtype', 'fp32')}",
        ]
        if training.evaluation:
            ev = training.evaluation
            parts = [f"{k} {fmt.num(v)}" for k, v in ev.items() if isinstance(v, (int, float))][:6]
            lines.append("eval: " + " · ".join(parts))
        if training.error:
            lines.append(f"[red]error: {training.error}[/red]")
        detail.update("\n".join(lines))
        job = training.job
        tail = tail_file(Path(job.log_path), 6) if job and job.log_path else []
        log.update("\n".join(tail))

    def draw_curve(self, training: Training) -> None:
        data = mq.curve(training.id, self.metric)
        log_y = self.log_y if self.log_y is not None else LOG_DEFAULT.get(self.metric, False)
        merged = any(low != high for low, high in zip(data.lows, data.highs, strict=True))
        band = (data.steps, data.lows, data.highs) if merged else None
        self.query_one("#curve", CurvePlot).set_series(
            [(self.metric, data.steps, data.values)],
            title=f"{self.metric} · {training.name}",
            log_y=log_y,
            band=band,
        )
        self._last_curve = time.monotonic()

    def on_job_update(self, message: JobUpdate) -> None:
        super().on_job_update(message)
        event = message.event
        training = self.training
        ours = event.type == "metrics" and training is not None and training.job_id == event.job_id
        if ours and time.monotonic() - self._last_curve > 0.5:
            self.reload()

    # --- actions ---------------------------------------------------------------------------------
    def action_next_metric(self) -> None:
        i = CURVE_METRICS.index(self.metric) if self.metric in CURVE_METRICS else -1
        self.metric = CURVE_METRICS[(i + 1) % len(CURVE_METRICS)]
        self.log_y = None
        self.show_selected()

    def action_toggle_log(self) -> None:
        current = self.log_y if self.log_y is not None else LOG_DEFAULT.get(self.metric, False)
        self.log_y = not current
        self.show_selected()

    def action_new_training(self) -> None:
        sets = [(a.name, a.id) for a in ActivationSet.select().where(ActivationSet.status == "ready")]
        if not sets:
            self.notify("Extract activations first (Models screen, e)", severity="warning")
            return
        templates = [
            (t.name + (" ★" if t.favourite else ""), t.id)
            for t in TrainingTemplate.select().order_by(TrainingTemplate.favourite.desc(), TrainingTemplate.name)
        ]
        fields = [
            Field(
                "activations",
                "Activation set",
                kind="choice",
                choices=sets,
                required=True,
                default=sets[-1][1],
            ),
            Field(
                "architecture",
                "Architecture",
                kind="choice",
                required=True,
                default="topk",
                choices=[
                    ("TopK", "topk"),
                    ("BatchTopK", "batchtopk"),
                    ("ReLU + L1", "relu"),
                    ("JumpReLU", "jumprelu"),
                ],
            ),
            Field("k", "k (TopK / BatchTopK)", kind="int", default=32),
            Field("l1_coefficient", "L1 coefficient (ReLU)", kind="float"),
            Field("expansion", "Expansion factor", kind="int", default=8),
            Field("total_tokens", "Tokens", kind="int", default="2M"),
            Field("batch_size", "Batch size", kind="int", default=4096),
            Field("lr", "Learning rate (blank: automatic)", kind="float"),
            Field("device", "Device", default="auto"),
            Field("template", "Template (optional)", kind="choice", choices=templates),
            Field("name", "Name (optional)"),
        ]

        def done(values: dict[str, Any] | None) -> None:
            if values:
                start_spec(
                    self,
                    lambda: svc.new_training(
                        self.studio,
                        values["activations"],
                        name=values["name"],
                        template=values["template"],
                        architecture=values["architecture"],
                        k=values["k"],
                        l1_coefficient=values["l1_coefficient"],
                        expansion=values["expansion"],
                        total_tokens=values["total_tokens"],
                        batch_size=values["batch_size"],
                        lr=values["lr"],
                        device=values["device"] or "auto",
                    ),
                )

        self.app.push_screen(FormModal("Train an SAE", fields, "Train"), done)

    def action_pause(self) -> None:
        training = self.training
        if training is None or training.job is None or training.job.status not in ("queued", "running"):
            self.notify("Select a running training", severity="warning")
            return
        self.studio.runner.cancel(training.job_id)
        self.notify(f"pausing '{training.name}': it saves a checkpoint, then stops (r resumes)")

    def action_resume(self) -> None:
        training = self.training
        if training is None:
            return
        start_spec(self, lambda: svc.resume_training(training.id))

    def action_extract_features(self) -> None:
        training = self.training
        if training is None:
            return
        fields = [
            Field("n_tokens", "Tokens to scan", kind="int", default="100k"),
            Field("top_k", "Top examples per feature", kind="int", default=20),
        ]

        def done(values: dict[str, Any] | None) -> None:
            if values:
                start_spec(
                    self,
                    lambda: feature_svc.extract_features(
                        self.studio, training.id, n_tokens=values["n_tokens"], top_k=values["top_k"]
                    ),
                )

        self.app.push_screen(FormModal(f"Extract features of {training.name}", fields, "Extract"), done)

    def action_delete(self) -> None:
        if self.training is not None:
            confirm_delete(self, self.training)
