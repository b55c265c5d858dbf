"""Live metrics while a run streams: coalesced redraws that never drop the last batch, on the list and the detail."""

from __future__ import annotations

import time

import pytest
from textual.widgets import DataTable

from mistudio_tui.app import MiStudioApp
from mistudio_tui.db import metrics as mq
from mistudio_tui.db.models import Job, Training
from mistudio_tui.jobs.runner import JobEvent
from mistudio_tui.ui.screens.training_detail import TrainingDetailScreen
from mistudio_tui.ui.screens.trainings import TrainingsScreen
from tests.ui.populate import populate_runs


@pytest.fixture
def running(studio, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """(training id, job id) of a running run fed by this app's runner; database polls are off (events only)."""
    ids = populate_runs(studio.paths.home)
    job = Job.create(kind="train", status="running", resource_type="training", resource_id=ids["topk-k8"])
    Training.update(job=job).where(Training.id == ids["topk-k8"]).execute()
    monkeypatch.setattr(TrainingsScreen, "follow_database", lambda self: None)
    monkeypatch.setattr(TrainingDetailScreen, "follow_database", lambda self: None)
    return ids["topk-k8"], job.id


def send_batch(app: MiStudioApp, training_id: int, job_id: int, first: int) -> int:
    """Record and announce one batch of 10 steps from `first`, as the runner thread does; its last step."""
    rows = [{"step": s, "tokens": s * 4096, "loss": 1.0 / (s + 1), "l0": 9.0} for s in range(first, first + 10)]
    mq.record_metrics(training_id, rows)
    app._on_runner_event(JobEvent(job_id, "metrics", "running", rows))
    return first + 9


async def stream_batches(pilot, training_id: int, job_id: int, first: int, batches: int) -> int:
    """`batches` batches, each handled by the app before the next (all within the redraw interval); the last step."""
    for i in range(batches):
        last = send_batch(pilot.app, training_id, job_id, first + 10 * i)
        await pilot.pause()
    return last


async def wait_until(pilot, condition, timeout: float = 4.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the live redraw"
        await pilot.pause(0.05)


async def test_a_burst_of_batches_is_drawn_once_or_twice_and_the_last_one_reaches_the_row_and_curve(studio, running):
    training_id, job_id = running
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(160, 40)) as pilot:  # wide enough for the steps column
        await pilot.press("3")
        await pilot.pause()
        screen = app.screen
        table = screen.query_one("#trainings-table", DataTable)
        table.move_cursor(row=screen.shown_ids.index(training_id))
        await pilot.pause()
        redraws = []
        original = screen._refresh_rows
        screen._refresh_rows = lambda live: (redraws.append(len(live)), original(live))
        last = await stream_batches(pilot, training_id, job_id, 300, 12)
        curve = screen.query_one("#curve")
        await wait_until(pilot, lambda: str(table.get_cell(str(training_id), "steps")) == str(last))
        await wait_until(pilot, lambda: curve.series[0][1][-1] == last)
        assert 1 <= len(redraws) <= 2  # twelve batches, one redraw now and at most one for the rest


async def test_a_key_holds_the_live_redraw_which_still_comes_after(studio, running):
    training_id, job_id = running
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(160, 40)) as pilot:  # wide enough for the steps column
        await pilot.press("3")
        await pilot.pause()
        screen = app.screen
        table = screen.query_one("#trainings-table", DataTable)
        table.move_cursor(row=screen.shown_ids.index(training_id))
        await pilot.pause()
        await pilot.press("m")  # a key: live redraws wait until the user pauses
        last = send_batch(app, training_id, job_id, 300)
        await pilot.pause()
        assert str(table.get_cell(str(training_id), "steps")) != str(last)
        await wait_until(pilot, lambda: str(table.get_cell(str(training_id), "steps")) == str(last))


async def test_the_detail_curve_and_summary_follow_the_stream_to_its_last_batch(studio, running):
    training_id, job_id = running
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(160, 40)) as pilot:  # wide enough for the steps column
        await pilot.press("3")
        await pilot.pause()
        table = app.screen.query_one("#trainings-table", DataTable)
        table.move_cursor(row=app.screen.shown_ids.index(training_id))
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, TrainingDetailScreen)
        redraws = []
        original = screen.reload
        screen.reload = lambda: (redraws.append(1), original())
        screen.live.redraw = screen.reload
        last = await stream_batches(pilot, training_id, job_id, 300, 12)
        curve = screen.query_one("#detail-curve")
        await wait_until(pilot, lambda: curve.series[0][1][-1] == last)
        assert f"steps {last:,}" in str(screen.query_one("#run-summary").render())
        assert 1 <= len(redraws) <= 2
        await pilot.press("m")  # the metric key redraws the curve alone, with the streamed steps
        await pilot.pause()
        assert screen.metric == "mse" and screen.query_one("#detail-curve").title.startswith("mse")
        assert len(redraws) <= 2


async def test_metrics_of_another_job_do_not_redraw_the_detail(studio, running):
    training_id, job_id = running
    other = Job.create(kind="train", status="running", resource_type="training")
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(160, 40)) as pilot:  # wide enough for the steps column
        await app.push_screen(TrainingDetailScreen(training_id))
        await pilot.pause()
        screen = app.screen
        redraws = []
        screen.live.redraw = lambda: redraws.append(1)
        app._on_runner_event(JobEvent(other.id, "metrics", "running", []))
        await pilot.pause(0.2)
        assert not redraws
        app._on_runner_event(JobEvent(job_id, "metrics", "running", []))
        await wait_until(pilot, lambda: bool(redraws))


async def test_the_database_poll_leaves_runs_fed_by_events_to_the_live_redraw(studio):
    ids = populate_runs(studio.paths.home)
    training_id = ids["topk-k8"]
    job = Job.create(kind="train", status="running", resource_type="training", resource_id=training_id)
    Training.update(job=job).where(Training.id == training_id).execute()
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(160, 40)) as pilot:  # wide enough for the steps column
        await pilot.press("3")
        await pilot.pause()
        screen = app.screen
        screen.live.last_key = 0.0
        screen.follow_database()  # the first poll notes what runs
        redraws = []
        original = screen._refresh_rows
        screen._refresh_rows = lambda live: (redraws.append([t.id for t in live]), original(live))
        send_batch(app, training_id, job.id, 300)
        await wait_until(pilot, lambda: bool(redraws))
        send_batch(app, training_id, job.id, 310)  # held by the live redraw's interval
        await pilot.pause()
        screen.follow_database()
        assert redraws == [[training_id]]  # the poll did not draw the event-fed run a second time
        screen.live.event_at.clear()  # no events for a while: the poll follows the run again
        screen.follow_database()
        assert redraws[-1] == [training_id] and len(redraws) == 2
