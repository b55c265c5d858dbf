"""The Textual app: modes (datasets, models, trainings, features, steering, monitor, jobs), keys, palette.

The UI process never imports torch: compute runs in worker processes started by the job runner.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.screen import Screen

from mistudio_tui.db.states import JobState
from mistudio_tui.jobs.interface import JobEvent
from mistudio_tui.studio import Studio
from mistudio_tui.ui.idle_gc import IdleCollector
from mistudio_tui.ui.messages import DataChanged, JobUpdate
from mistudio_tui.ui.screens.datasets import DatasetsScreen

STYLES = Path(__file__).resolve().parent.parent / "styles"

MODE_KEYS = [
    ("1", "datasets", "Datasets"),
    ("2", "models", "Models"),
    ("3", "trainings", "Trainings"),
    ("4", "features", "Features"),
    ("5", "steering", "Steering"),
    ("6", "monitor", "Monitor"),
    ("j", "jobs", "Jobs"),
]
# The mode keys share one footer entry ("1…6 j Screens") so each screen's own actions, ? and q stay visible.
MODE_GROUP = Binding.Group("Screens", compact=True)


def lazy_screen(module: str, name: str) -> Screen[Any]:
    """Import a mode's screen module on first use (keeps the first frame fast)."""
    import importlib

    screen: Screen[Any] = getattr(importlib.import_module(f"mistudio_tui.ui.screens.{module}"), name)()
    return screen


class MiStudioApp(App[None]):
    """miStudio's terminal UI."""

    TITLE = "miStudio"
    CSS_PATH = str(STYLES / "app.tcss")
    # Only the first screen is imported at start-up; the others load when first opened.
    MODES = {
        "datasets": DatasetsScreen,
        "models": lambda: lazy_screen("models", "ModelsScreen"),
        "trainings": lambda: lazy_screen("trainings", "TrainingsScreen"),
        "features": lambda: lazy_screen("features", "FeaturesScreen"),
        "steering": lambda: lazy_screen("steering", "SteeringScreen"),
        "monitor": lambda: lazy_screen("monitor", "MonitorScreen"),
        "jobs": lambda: lazy_screen("jobs", "JobsScreen"),
    }
    DEFAULT_MODE = "datasets"
    BINDINGS = [
        *[
            Binding(key, f"switch_mode('{mode}')", label, id=f"mode.{mode}", group=MODE_GROUP)
            for key, mode, label in MODE_KEYS
        ],
        Binding("question_mark", "toggle_keys", "Keys", id="app.keys"),
        Binding("q", "request_quit", "Quit", id="app.quit"),
        # Textual's own ctrl+q quits at once; here it asks first when jobs are running, like q
        Binding("ctrl+q", "request_quit", "Quit", id="app.quit_ctrl", show=False, priority=True),
    ]

    def __init__(self, studio: Studio | None = None, offer_sample: bool = True) -> None:
        super().__init__()
        self.studio = studio or Studio()
        self.offer_sample = offer_sample
        self._owns_studio = studio is None
        self.idle_gc = IdleCollector()

    # --- life cycle ------------------------------------------------------------------------------
    def on_mount(self) -> None:
        probe = os.environ.get("MISTUDIO_STARTUP_PROBE")
        if probe:  # benchmarks/startup.py: record the first frame, then leave
            self.call_after_refresh(self._write_startup_probe, probe)
        self.call_after_refresh(self.idle_gc.start, self)
        self.studio.runner.add_listener(self._on_runner_event)
        if self.studio.interrupted:
            n = len(self.studio.interrupted)
            self.notify(
                f"{n} job(s) were interrupted (their process vanished); see the Jobs panel (j)",
                severity="warning",
            )
        self.set_interval(10.0, self._recover_foreign_jobs)
        if self.offer_sample:
            from mistudio_tui.services.sample import home_is_empty

            if home_is_empty():
                self.call_after_refresh(self.offer_to_build_sample)

    def _write_startup_probe(self, path: str) -> None:
        import json
        import sys
        import time

        heavy = [m for m in ("torch", "transformers", "datasets") if m in sys.modules]
        with open(path, "w") as fh:
            json.dump({"first_frame_at": time.time(), "heavy_modules": heavy}, fh)
        self.exit()

    def on_unmount(self) -> None:
        self.idle_gc.stop()
        self.studio.runner.remove_listener(self._on_runner_event)
        if self._owns_studio:
            self.studio.close(cancel_jobs=True)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.InputEvent):
            self.idle_gc.touch()
        await super().on_event(event)

    def _on_runner_event(self, event: JobEvent) -> None:
        # Called on the runner's thread: hand over to the UI thread as a message.
        self.post_message(JobUpdate(event))

    def on_job_update(self, message: JobUpdate) -> None:
        event = message.event
        if not self.screen_stack:  # shutting down
            return
        if event.type == "state" and event.status in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED):
            from mistudio_tui.db.models import Job

            job = Job.get_or_none(Job.id == event.job_id)
            title = (job.title or job.kind) if job else f"job {event.job_id}"
            if event.status == "completed":
                self.notify(f"✓ {title} completed")
            elif event.status == "failed":
                err = (job.error if job else "") or "failed"
                self.notify(f"✗ {title} failed: {err}", severity="error", timeout=10)
            elif job is not None and job.kind == "train":  # pausing a training cancels its job after a checkpoint
                self.notify(
                    f"{title} stopped at its last checkpoint; r on Trainings (3) resumes it", severity="warning"
                )
            else:
                self.notify(f"{title} cancelled", severity="warning")
        self.screen.post_message(JobUpdate(event))

    def _recover_foreign_jobs(self) -> None:
        from mistudio_tui.db.jobs import recover_interrupted

        mine = set(self.studio.runner.running_ids()) if self.studio.has_runner else set()
        lost = [j for j in recover_interrupted() if j not in mine]
        if lost:
            self.screen.post_message(DataChanged("job"))

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Show a toast as plain text: names and error messages may hold '[' (and '[/]' is a markup error)."""
        if timeout is None:
            super().notify(message, title=title, severity=severity, markup=False)
        else:
            super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    # --- actions ---------------------------------------------------------------------------------
    def action_toggle_keys(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    async def action_quit(self) -> None:
        """Textual's quit (the palette's Quit command) asks first too when jobs are running."""
        self.action_request_quit()

    def action_request_quit(self) -> None:
        running = self.studio.runner.running_ids() if self.studio.has_runner else []
        if not running:
            self.exit()
            return
        from mistudio_tui.ui.modals.confirm import ConfirmModal

        def decided(ok: bool | None) -> None:
            if ok:
                self.exit()

        self.push_screen(
            ConfirmModal(
                "Quit miStudio?",
                f"{len(running)} job(s) are running. Quitting cancels them; trainings save a checkpoint "
                "and can be resumed later.",
                confirm_label="Quit",
            ),
            decided,
        )

    def about_text(self) -> str:
        """Version, schema version and where the data lives (also `mistudio version`)."""
        from mistudio_tui import __version__
        from mistudio_tui.db.connection import latest_schema_version, schema_version
        from mistudio_tui.db.models import database

        return (
            f"miStudio {__version__} · database schema v{schema_version(database.obj)} "
            f"(this version knows v{latest_schema_version()}) · data: {self.studio.paths.home}"
        )

    def show_about(self) -> None:
        self.notify(self.about_text(), title="About", timeout=10)

    def offer_to_build_sample(self) -> None:
        from mistudio_tui.ui.modals.welcome import WelcomeModal

        def chosen(choice: str | None) -> None:
            if choice:
                from mistudio_tui.services.sample import start_sample

                try:
                    start_sample(self.studio, pipeline=(choice == "pipeline"))
                except ValueError as exc:
                    self.notify(str(exc), severity="warning")
                    return
                self.notify("Building the offline sample… (j shows the jobs)")

        self.push_screen(WelcomeModal(), chosen)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for _key, mode, label in MODE_KEYS:
            yield SystemCommand(f"Go to {label}", f"Switch to the {label} screen", partial(self.switch_mode, mode))
        yield SystemCommand("Build the offline sample", "Corpus + tiny GPT-2 trained here", self.offer_to_build_sample)
        yield SystemCommand("About miStudio", "Version, database schema version and data folder", self.show_about)
        yield from self.screen_binding_commands(screen)
        extra = getattr(screen, "palette_commands", None)
        if extra is not None:
            yield from extra()

    def screen_binding_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Every key the screen itself binds, footer or not, as a palette entry naming its key."""
        title = getattr(screen, "TITLE_TEXT", "") or type(screen).__name__
        for active in screen.active_bindings.values():
            binding = active.binding
            if active.node is not screen or not binding.description:
                continue
            key = self.get_key_display(binding)
            yield SystemCommand(
                f"{title}: {binding.description}",
                f"key {key}",
                partial(self.call_later, self.run_action, binding.action, screen),
            )


def run_app() -> int:
    """Launch the TUI (the `mistudio` command with no arguments)."""
    try:
        app = MiStudioApp()
    except OSError as exc:  # the studio cannot open (a full disk, an emptied database): one line, no traceback
        print(f"mistudio: error: {exc}", file=sys.stderr)
        return 1
    app.run()
    return 0
