"""Worker side of a sweep: a small orchestrator that runs each trial as a normal `train` job through a job runner.

The trials are ordinary Training rows and `train` jobs (own worker, log, metrics, checkpoints), submitted to a
runner owned by this process, so they show live like any run. Cancelling the sweep (cancel event, SIGTERM or the
parent going away) cancels the running trials, which checkpoint, and the sweep can be resumed later.

It works from the jobs layer down: the planner (`jobs/sweep_planner.py`), the train kind's run config and row
(`jobs/kinds/train_runs.py`) and a `JobRunner` on the database, the same pieces the services use for a single run.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mistudio_tui.config import Paths, paths
from mistudio_tui.db.connection import close_database, open_database
from mistudio_tui.db.lookup import unique_name
from mistudio_tui.db.models import ActivationSet, Job, Sweep, Training, database
from mistudio_tui.db.states import JobState, RunState
from mistudio_tui.jobs.context import JobCancelled, JobContext
from mistudio_tui.jobs.kinds.sweep import SweepParams
from mistudio_tui.jobs.kinds.train_runs import (
    create_training,
    hook_width,
    train_job_title,
    train_params,
    training_config,
)
from mistudio_tui.jobs.runner import JobRunner
from mistudio_tui.jobs.sweep_planner import (
    Dimension,
    TrialPlanner,
    objective_value,
    shown_params,
    trial_config,
    trial_params,
    trials_of,
)

CHILD_WAIT_S = 0.25
CANCEL_WAIT_S = 90.0  # the train kind's grace (60 s) plus terminate/kill slack


@dataclass
class _Active:
    number: int
    training_id: int


def run(params: SweepParams, ctx: JobContext) -> dict[str, Any]:
    """Run (or resume) the trials of sweep `params.sweep_id` until done or cancelled."""
    stop = _stop_on_sigterm()
    home = paths()
    open_database(home.db)
    runner: JobRunner | None = None
    try:
        sweep = Sweep.get_by_id(params.sweep_id)
        runner = JobRunner(home, max_parallel=max(1, int((sweep.base_config or {}).get("parallel", 1))))
        return _Orchestrator(home, runner, sweep, ctx, stop).run(params.resume)
    finally:
        if runner is not None:
            runner.shutdown(cancel=True)
        close_database()


def _stop_on_sigterm() -> threading.Event:
    """A SIGTERM (how another process cancels this job) becomes a graceful stop instead of instant death."""
    stop = threading.Event()
    with contextlib.suppress(ValueError):  # not the main thread (in-process tests): rely on the context
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    return stop


class _Orchestrator:
    def __init__(self, home: Paths, runner: JobRunner, sweep: Sweep, ctx: JobContext, stop: threading.Event) -> None:
        self.home, self.runner, self.sweep, self.ctx, self.stop = home, runner, sweep, ctx, stop
        self.settings = dict(sweep.base_config or {})
        self.dims = [Dimension.from_dict(d) for d in sweep.space.get("dimensions", [])]
        self.planner = TrialPlanner(
            sweep.method, self.dims, self.settings.get("trials"), int(self.settings.get("seed", 0))
        )
        self.total = self.planner.n_trials
        self.parallel = max(1, int(self.settings.get("parallel", 1)))
        self.devices = _trial_devices(self.settings, self.parallel)
        self.active: dict[int, _Active] = {}
        self.done = 0
        self.best: tuple[float, str] | None = None
        self.refused: list[str] = []  # why trials were skipped (the trainer refused their values)

    # --- the loop --------------------------------------------------------------------------------
    def run(self, resume: bool) -> dict[str, Any]:
        backlog = self._resume_backlog() if resume else []
        next_number = int(self.settings.get("started", 0)) if resume else 0
        self.ctx.log(f"sweep '{self.sweep.name}': {self.sweep.method}, {self.total} trials, {self.parallel} at once")
        self._report()
        while True:
            if self.ctx.cancelled() or self.stop.is_set():
                self._cancel_active()
                raise JobCancelled({"trials_done": self.done})
            while len(self.active) < self.parallel and (backlog or next_number < self.total):
                if backlog:
                    self._start_existing(backlog.pop(0))
                else:
                    self._start_new(next_number)
                    next_number += 1
                    self._save_setting("started", next_number)
            if not self.active:
                break
            for job_id in list(self.active):
                job = self.runner.wait(job_id, timeout=CHILD_WAIT_S / max(1, len(self.active)))
                if job.status in JobState.TERMINAL:
                    self._finished(self.active.pop(job_id), job)
        if self.refused and len(self.refused) == self.done:  # nothing trained: a failure, not "completed"
            raise ValueError(f"every trial was refused; the first: {self.refused[0]}")
        best = {"score": self.best[0], "training": self.best[1]} if self.best else None
        self.ctx.log(f"sweep '{self.sweep.name}' finished {self.done} trials; best: {best}")
        return {"trials_done": self.done, "best": best}

    def _resume_backlog(self) -> list[Training]:
        """Finished trials are counted (and replayed into TPE); unfinished ones are queued to resume."""
        backlog = []
        for training in trials_of(self.sweep):
            if training.status in RunState.FINISHED:
                self.done += 1
                value = self._score(training) if training.status != "failed" else None
                self.planner.replay(trial_params(self.sweep, training), value)
            else:
                backlog.append(training)
        return backlog

    def _start_new(self, number: int) -> None:
        params = self.planner.ask(number)
        config = trial_config(self.settings["config"], self.dims, params)
        if self.devices:
            config["train"]["device"] = self.devices[number % len(self.devices)]
        shown = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown_params(params).items())
        try:
            trial = self._new_trial(number, config)
        except ValueError as exc:
            self.ctx.log(f"trial {number} ({shown}) skipped: {exc}", level="warning")
            self.refused.append(f"{shown}: {exc}")
            self.planner.tell(number, None)
            self.done += 1
            self._report()
            return
        job = self.runner.submit("train", train_params(trial, resume=False), train_job_title(trial, False), trial)
        self.active[job.id] = _Active(number, trial.id)
        self.ctx.log(f"trial {number} started: {trial.name} ({shown})")

    def _new_trial(self, number: int, template: dict[str, Any]) -> Training:
        """The pending Training row of trial `number`: the sweep's hook of its activation set, `template`'s config
        completed and checked as for any run (a value the trainer refuses raises ValueError)."""
        aset = ActivationSet.get_or_none(ActivationSet.id == self.settings["activation_set"])
        if aset is None:
            raise ValueError("the sweep's activation set was deleted")
        hook = self.settings.get("hook") or next(iter(aset.hooks or []), None)
        architecture = str(template.get("sae", {}).get("architecture") or "topk")
        config = training_config(hook_width(aset, hook), architecture=architecture, template=template)
        with database.atomic():
            trial: Training = create_training(
                self.home,
                config,
                name=unique_name(Training, f"{self.sweep.name}-t{number:02d}"),
                activation_set=aset,
                model=aset.model,
                tokenization=aset.tokenization,
                hook_name=hook,
                tags=f"sweep:{self.sweep.name}",
                sweep=self.sweep.id,
                group_name=self.sweep.name,
            )
        return trial

    def _start_existing(self, training: Training) -> None:
        from mistudio_tui.ml.sae.checkpoint_files import latest_checkpoint_step

        resume = latest_checkpoint_step(Path(training.path)) is not None if training.path else False
        job = self.runner.submit("train", train_params(training, resume), train_job_title(training, resume), training)
        self.active[job.id] = _Active(-1, training.id)
        self.ctx.log(f"trial {training.name} {'resumed' if resume else 'restarted'}")

    def _finished(self, active: _Active, job: Job) -> None:
        training = Training.get_by_id(active.training_id)
        value = self._score(training) if job.status == "completed" else None
        self.planner.tell(active.number, value)
        self.done += 1
        if value is not None and (self.best is None or value > self.best[0]):
            self.best = (value, training.name)
        ev = "-" if training.explained_variance is None else f"{training.explained_variance:.3f}"
        l0 = "-" if training.l0 is None else f"{training.l0:.1f}"
        score = "-" if value is None else f"{value:.4f}"
        detail = f": {job.error}" if job.status != "completed" and job.error else ""
        self.ctx.log(f"trial {training.name} {job.status}{detail}; L0 {l0}, EV {ev}, score {score}")
        self._report()

    def _score(self, training: Training) -> float | None:
        return objective_value(
            self.settings.get("objective", "ev"), training, float(self.settings.get("l0_weight", 0.0))
        )

    def _cancel_active(self) -> None:
        """Cancel the running trials and wait until each has checkpointed and stopped."""
        self.ctx.log(f"cancelling {len(self.active)} running trial(s)")
        for job_id in self.active:
            self.runner.cancel(job_id)
        for job_id in list(self.active):
            self.runner.wait(job_id, timeout=CANCEL_WAIT_S)
        self.active.clear()

    def _report(self) -> None:
        best = f"; best {self.best[0]:.4f} ({self.best[1]})" if self.best else ""
        self.ctx.progress(self.done, self.total, text=f"{self.done}/{self.total} trials{best}", unit="trials")
        self.ctx.flush()

    def _save_setting(self, key: str, value: Any) -> None:
        self.settings[key] = value
        Sweep.update(base_config=self.settings).where(Sweep.id == self.sweep.id).execute()


def _trial_devices(settings: dict[str, Any], parallel: int) -> list[str]:
    """With parallel trials and several CUDA devices, spread trials over them; else leave the device alone."""
    device = str((settings.get("config") or {}).get("train", {}).get("device", "auto"))
    if parallel < 2 or device not in ("auto", "cuda"):
        return []
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i}" for i in range(count)] if count > 1 else []
