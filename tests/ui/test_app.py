"""Pilot tests of the TUI: every mode opens, jobs start from the UI and their progress arrives, deletes cascade."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from mistudio_tui.app import MiStudioApp
from mistudio_tui.db.models import Dataset, Job, Tokenization
from mistudio_tui.ui.messages import JobMessage, JobProgress, JobStateChanged
from mistudio_tui.ui.modals.confirm import ConfirmModal
from mistudio_tui.ui.modals.form import FormModal
from mistudio_tui.ui.modals.welcome import WelcomeModal
from tests.ui.populate import populate

MODES = {
    "1": "DatasetsScreen",
    "2": "ModelsScreen",
    "3": "TrainingsScreen",
    "4": "FeaturesScreen",
    "5": "SteeringScreen",
    "6": "MonitorScreen",
    "j": "JobsScreen",
}


async def wait_for(pilot, condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.1)


@pytest.mark.parametrize("size", [(120, 40), (40, 30)])
async def test_every_mode_opens_and_help_lists_keys(studio, size):
    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=size) as pilot:
        for key, screen in MODES.items():
            await pilot.press(key)
            await pilot.pause()
            assert type(app.screen).__name__ == screen
        await pilot.press("question_mark")
        await pilot.pause()
        assert app.screen.query("HelpPanel")
        await pilot.press("question_mark")
        await pilot.pause()
        assert not app.screen.query("HelpPanel")


async def test_empty_home_offers_the_sample(studio):
    app = MiStudioApp(studio)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, WelcomeModal)
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen).__name__ == "DatasetsScreen"
        assert not Job.select().exists()


async def test_adding_a_dataset_from_the_ui_runs_a_job_whose_progress_arrives(studio, tmp_path):
    corpus = tmp_path / "notes.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": f"note number {i} " * 20}) for i in range(3000)))
    events: list[JobMessage] = []

    def hook(message) -> None:
        if isinstance(message, JobMessage):
            events.append(message)

    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40), message_hook=hook) as pilot:
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, FormModal)
        app.screen.query_one("#field-source").value = str(corpus)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: Dataset.select().where(Dataset.status == "ready").exists())
        await wait_for(pilot, lambda: any(isinstance(e, JobStateChanged) and e.status == "completed" for e in events))
        assert any(isinstance(e, JobProgress) for e in events)
        await pilot.pause(0.3)
        done = [n for n in app._notifications if "completed" in n.message]
        assert len(done) == 1  # one notice per finished job (messages must not bounce between app and screen)
        table = app.screen.query_one("#datasets-table")
        assert table.row_count == 1
        detail = str(app.screen.query_one("#dataset-detail").render())
        assert "documents: 3,000" in detail
        await pilot.press("j")
        await pilot.pause()
        jobs = app.screen.query_one("#jobs-table")
        assert jobs.row_count == 1


async def test_form_errors_name_the_field_and_create_nothing(studio, tmp_path):
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("a")
        await pilot.pause()
        app.screen.query_one("#field-source").value = ""
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, FormModal)
        assert "required" in str(app.screen.query_one("#error-source").render())  # beside the field
        app.screen.query_one("#field-source").value = str(tmp_path / "missing.jsonl")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not Dataset.select().exists()
        assert any("not found" in n.message for n in app._notifications)


async def test_delete_states_the_cascade_before_deleting(studio):
    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("1")
        await pilot.pause()
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        assert "1 tokenization" in app.screen.message and "1 training" in app.screen.message
        await pilot.press("n")
        await pilot.pause()
        assert Dataset.select().count() == 1
        await pilot.press("x")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        assert Dataset.select().count() == 0 and Tokenization.select().count() == 0


async def test_trainings_screen_draws_the_curve_and_switches_metric(studio):
    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await pilot.pause()
        plot = app.screen.query_one("#curve")
        assert plot.series and len(plot.series[0][1]) == 250
        await pilot.press("m")
        await pilot.pause()
        assert app.screen.metric == "mse"


async def test_features_screen_shows_the_selected_feature(studio):
    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await pilot.pause()
        table = app.screen.query_one("#features-table")
        assert table.row_count == 12
        detail = str(app.screen.query_one("#feature-detail").render())
        assert "feature" in detail
        await pilot.press("slash")
        await pilot.press(*"cat")
        await pilot.pause(0.2)
        assert table.row_count == 1
        assert "The word cat" in str(app.screen.query_one("#feature-detail").render())


async def test_quit_with_running_jobs_asks_first(studio):
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        job = studio.runner.submit("diag.count", {"steps": 2000, "delay": 0.01})
        await wait_for(pilot, lambda: Job.get_by_id(job.id).status == "running")
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        await pilot.pause()
        assert app.is_running
        studio.runner.cancel(job.id)
        await asyncio.sleep(0)


def test_populated_home_is_deterministic(studio):
    ids = populate(Path(studio.paths.home))
    assert set(ids) == {"dataset", "model", "training", "featureset"}


async def test_about_reports_the_schema_version(studio):
    from mistudio_tui.db.connection import latest_schema_version

    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        text = app.about_text()
        assert f"schema v{latest_schema_version()}" in text
        assert str(studio.paths.home) in text
        app.show_about()
        await pilot.pause()
        assert any("schema v" in str(n.message) for n in app._notifications)


async def test_a_finished_job_reloads_each_screen_once(studio):
    from mistudio_tui.jobs.runner import JobEvent

    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        for key in ("j", "3"):  # screens that add their own job handler to the shared one
            await pilot.press(key)
            await pilot.pause()
            screen, calls = app.screen, []
            original = screen.reload
            screen.reload = lambda original=original, calls=calls: (calls.append(1), original())
            app._on_runner_event(JobEvent(1, "state", "completed", {}))
            await pilot.pause()
            screen.reload = original
            assert len(calls) == 1, type(screen).__name__  # Textual already calls the base handler: no super()
