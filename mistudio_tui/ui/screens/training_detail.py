"""One training run: live curves, speed and ETA, density histogram, config, checkpoints, eval, log, actions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.events import Key
from textual.widgets import Static

from mistudio_tui.db import metrics as mq
from mistudio_tui.db.models import Training
from mistudio_tui.db.states import JobState, RunState
from mistudio_tui.ml.sae.checkpoint_files import checkpoint_steps
from mistudio_tui.services import sae_io
from mistudio_tui.services import trainings as svc
from mistudio_tui.services.spec import JobSpec
from mistudio_tui.ui import format as fmt
from mistudio_tui.ui.actions import USER_ERRORS, confirm_delete, open_job_form, start_spec
from mistudio_tui.ui.live_redraw import LiveRedraw, set_series_if_changed, update_if_changed
from mistudio_tui.ui.messages import DataChanged, JobArtifact, JobMetrics, JobStateChanged
from mistudio_tui.ui.modals.confirm import ConfirmModal
from mistudio_tui.ui.modals.form import Field, FormModal
from mistudio_tui.ui.screens.base import StudioScreen
from mistudio_tui.ui.widgets.plots import BarPlot, CurvePlot
from mistudio_tui.ui.widgets.runs import POLL_S, MetricKeys, draw_metric_curve, guidance_lines, log_tail, pause_training

LOG_LINES = 15


def config_lines(config: dict[str, Any]) -> list[str]:
    """`section.key value` lines of a run config."""
    lines: list[str] = []
    for section, values in (config or {}).items():
        if isinstance(values, dict):
            lines.extend(f"{section}.{k} {json.dumps(v)}" for k, v in values.items())
        else:
            lines.append(f"{section} {json.dumps(values)}")
    return lines


class TrainingDetailScreen(MetricKeys, StudioScreen):
    """Everything about one run; the curves follow the run live."""

    TITLE_TEXT = "Training run"
    BINDINGS = [
        Binding("escape", "back", "Back", id="training_detail.back"),
        Binding("m", "next_metric", "Metric", id="training_detail.metric"),
        Binding("l", "toggle_log", "Log/linear", id="training_detail.log"),
        Binding("p", "pause", "Pause", id="training_detail.pause"),
        Binding("r", "resume", "Resume", id="training_detail.resume"),
        Binding("c", "cancel", "Cancel", id="training_detail.cancel"),
        Binding("k", "clone", "Clone", id="training_detail.clone"),
        Binding("e", "export", "Export", id="training_detail.export"),
        Binding("s", "save_template", "Save template", id="training_detail.save_template"),
        Binding("x", "delete", "Delete", id="training_detail.delete"),
    ]

    def __init__(self, training_id: int) -> None:
        super().__init__()
        self.training_id = training_id
        self.metric = "loss"
        self.log_y: bool | None = None
        self.cancel_requested = False
        self.live = LiveRedraw(self, self.reload)
        self._job_id: int | None = None
        self._drawn: tuple[str, int] | None = None
        self._density_drawn: dict[str, Any] | None = None

    def on_mount(self) -> None:
        self.set_interval(POLL_S, self.follow_database)

    def on_key(self, event: Key) -> None:
        self.live.key_pressed()

    def follow_database(self) -> None:
        """A run trained by another process (the CLI, a sweep) updates only the database: redraw when it moves."""
        if not self.is_current or self.live.typing() or self.live.fed_jobs(POLL_S):
            return  # a run whose metrics arrive as events is redrawn by `live`
        row = Training.select(Training.status, Training.steps).where(Training.id == self.training_id).tuples().first()
        if row is not None and row != self._drawn:
            self.reload()

    def redraw_metric(self) -> None:
        training = self.training
        if training is not None:
            draw_metric_curve(self.query_one("#detail-curve", CurvePlot), training, self.metric, self.log_y)

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="run-detail"):
            yield Static("", id="run-summary", classes="detail")
            yield Static("", id="run-guidance", classes="detail")
            yield CurvePlot("loss", id="detail-curve", classes="run-plot")
            yield CurvePlot("steps/s", id="speed-curve", classes="run-plot")
            yield BarPlot("feature density", id="density-plot", classes="run-plot")
            yield Static("", id="run-config", classes="detail")
            yield Static("", id="run-log", classes="run-log")

    @property
    def training(self) -> Training | None:
        return Training.get_or_none(Training.id == self.training_id)

    def reload(self) -> None:
        training = self.training
        if training is None:
            self.notify(f"training #{self.training_id} no longer exists")
            if self.app.screen is self:
                self.app.pop_screen()
            return
        self.sub_title = f"Training · {training.name}"
        self._job_id = training.job_id
        self._drawn = (training.status, training.steps)
        tail = log_tail(training, LOG_LINES)
        update_if_changed(self.query_one("#run-summary", Static), self._summary(training))
        guidance = guidance_lines(training, tail)
        box = self.query_one("#run-guidance", Static)
        update_if_changed(box, "\n".join(guidance))
        box.display = bool(guidance)
        draw_metric_curve(self.query_one("#detail-curve", CurvePlot), training, self.metric, self.log_y)
        self._draw_speed(training)
        self._draw_density(training)
        update_if_changed(self.query_one("#run-config", Static), self._config_text(training))
        update_if_changed(self.query_one("#run-log", Static), Text("log:\n" + "\n".join(tail or ["(no log yet)"])))
        self.live.drawn()

    def _summary(self, training: Training) -> Text:
        frac = training.tokens / training.total_tokens if training.total_tokens else None
        history = mq.progress_history(training)
        speed = history.steps_per_s[-1] if history.steps_per_s else None
        text = Text.assemble(
            (training.name, "bold"),
            "  ",
            fmt.status_text(training.status),
            f"  {svc.shown_architecture(training.architecture)} {training.d_in or '?'}→{training.d_sae or '?'}"
            f"  on {training.device or '-'}\n",
            f"tokens {fmt.count(training.tokens)}/{fmt.count(training.total_tokens)} {fmt.bar(frac, 10)} ",
            f"steps {training.steps:,}  {fmt.count(training.tokens_per_s)} tok/s  {fmt.num(speed)} steps/s",
            f"  ETA {fmt.duration(history.eta_s)}\n",
            f"loss {fmt.num(training.loss)} · L0 {fmt.num(training.l0)} · EV {fmt.num(training.explained_variance)}"
            f" · dead {fmt.num(training.dead_fraction)}   [m metric · l log/linear · esc back]",
        )
        return text

    def _draw_speed(self, training: Training) -> None:
        history = mq.progress_history(training)
        plot = self.query_one("#speed-curve", CurvePlot)
        set_series_if_changed(plot, [("steps/s", history.steps, history.steps_per_s)], "steps/s over the run")

    def _draw_density(self, training: Training) -> None:
        plot = self.query_one("#density-plot", BarPlot)
        hist = training.density_histogram or {}
        if self._density_drawn == hist:
            return
        step = hist.get("step")
        plot.title = f"feature density (log10) at step {step:,}" if step is not None else "feature density (log10)"
        plot.set_histogram(hist.get("edges") or [], hist.get("counts") or [], xlabel="log10 firing rate")
        self._density_drawn = hist

    def _config_text(self, training: Training) -> Text:
        text = Text()
        text.append("config\n", style="bold")
        text.append("\n".join(config_lines(training.config)) + "\n")
        steps = checkpoint_steps(Path(training.path)) if training.path else []
        text.append("checkpoints ", style="bold")
        text.append((", ".join(f"step {s:,}" for s in steps) or "none yet") + "\n")
        text.append("eval ", style="bold")
        if training.evaluation:
            parts = [
                f"{k} {fmt.num(v) if isinstance(v, float) else v}"
                for k, v in training.evaluation.items()
                if k != "ground_truth"
            ]
            text.append(" · ".join(parts))
        else:
            text.append("not evaluated yet")
        truth = svc.ground_truth_line(training.evaluation)
        if truth is not None:
            text.append("\nground truth ", style="bold")
            text.append(truth)
        return text

    @on(JobMetrics)
    @on(JobArtifact)
    def run_moved(self, message: JobMetrics | JobArtifact) -> None:
        if message.job_id == self._job_id:  # the job id noted at the last reload: no query per metric batch
            self.live.request(message.job_id)

    @on(JobStateChanged)
    def job_state_changed_here(self, message: JobStateChanged) -> None:
        training = self.training
        if training is None or training.job_id != message.job_id:
            return
        if self.cancel_requested and message.status not in JobState.ACTIVE:
            Training.update(status="cancelled").where(Training.id == training.id).execute()
            self.cancel_requested = False
            self.reload()

    # --- actions ---------------------------------------------------------------------------------
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_pause(self) -> None:
        pause_training(self, self.training)

    def action_resume(self) -> None:
        start_spec(self, lambda: svc.resume_training(self.training_id))

    def action_cancel(self) -> None:
        training = self.training
        if training is None:
            return
        running = training.job is not None and training.job.status in JobState.ACTIVE
        if not running and training.status not in (
            RunState.PAUSED,
            RunState.INTERRUPTED,
            RunState.FAILED,
            RunState.PENDING,
        ):
            self.notify(f"'{training.name}' is {training.status}; nothing to cancel", severity="warning")
            return
        what = "stops it (after a checkpoint) and marks it" if running else "marks it"
        message = f"Cancel run '{training.name}'? This {what} cancelled; clone it or press r to continue later."

        def decided(ok: bool | None) -> None:
            if not ok:
                return
            if running and training.job is not None:
                self.cancel_requested = True
                self.studio.runner.cancel(training.job.id)
            else:
                Training.update(status="cancelled").where(Training.id == training.id).execute()
            self.notify(f"cancelled '{training.name}'")
            self.post_message(DataChanged())

        self.app.push_screen(ConfirmModal("Cancel run", message, confirm_label="Cancel run"), decided)

    def action_clone(self) -> None:
        training = self.training
        if training is None:
            return
        sae = (training.config or {}).get("sae", {})
        train = (training.config or {}).get("train", {})
        fields = [
            Field("name", "Name (blank: automatic)"),
            Field(
                "architecture",
                "Architecture",
                kind="choice",
                required=True,
                default=svc.architecture_id(sae.get("architecture", training.architecture)),
                choices=[(svc.shown_architecture(a), a) for a in svc.ARCHITECTURE_IDS],
            ),
            Field("k", "k (TopK / BatchTopK / Matryoshka)", kind="int", default=sae.get("k")),
            Field("l1_coefficient", "L1 coefficient (ReLU)", kind="float", default=sae.get("l1_coefficient")),
            Field("d_sae", "Width (d_sae)", kind="int", default=sae.get("d_sae")),
            Field("total_tokens", "Tokens", kind="int", default=train.get("total_tokens")),
            Field("batch_size", "Batch size", kind="int", default=train.get("batch_size")),
            Field("lr", "Learning rate (blank: automatic)", kind="float", default=train.get("lr")),
            Field("device", "Device", default=train.get("device", "auto")),
        ]

        def build(values: dict[str, Any]) -> Any:  # a refused value keeps the form open, its field focused
            changes = dict(values)
            return svc.clone_training(self.studio, training.id, name=changes.pop("name"), **changes)

        open_job_form(self, FormModal(f"Clone {training.name}", fields, "Train", build=build))

    def action_export(self) -> None:
        training = self.training
        if training is None:
            return
        fields = [Field("path", "Export to folder", required=True, default=str(Path.cwd() / training.name))]

        def done(values: dict[str, Any] | None) -> None:
            if not values:
                return
            try:
                result = sae_io.export_sae(training.id, Path(values["path"]).expanduser())
            except USER_ERRORS as exc:
                self.notify(str(exc), severity="error", timeout=8)
                return
            if isinstance(result, JobSpec):
                start_spec(self, lambda: result)
            else:
                self.notify(f"exported '{training.name}' to {values['path']}")

        self.app.push_screen(FormModal(f"Export {training.name}", fields, "Export"), done)

    def action_save_template(self) -> None:
        from mistudio_tui.ui.modals.templates import SaveTemplateModal

        training = self.training
        if training is not None:
            self.app.push_screen(SaveTemplateModal(training=training))

    def action_delete(self) -> None:
        training = self.training
        if training is not None:
            confirm_delete(self, training)
