"""Runner events become one message class each; progress and metrics waiting in a queue merge without losing rows."""

from __future__ import annotations

import pytest
from textual import on
from textual.app import App

from mistudio_tui.jobs.interface import EventType, JobEvent
from mistudio_tui.reporting import Artifact, Progress
from mistudio_tui.ui.messages import (
    JobArtifact,
    JobLog,
    JobMessage,
    JobMetrics,
    JobProgress,
    JobStateChanged,
    job_message,
)


def test_a_job_event_type_is_checked_and_still_reads_as_its_string():
    event = JobEvent(3, "metrics", "running", [])
    assert event.type is EventType.METRICS and event.type == "metrics"
    with pytest.raises(ValueError):
        JobEvent(3, "metric", "running", [])


def test_each_event_type_becomes_its_own_message():
    progress, artifact = Progress(5, 10, "tokens"), Artifact("label")
    made = [
        job_message(JobEvent(1, EventType.STATE, "failed", {"error": "boom"})),
        job_message(JobEvent(1, EventType.PROGRESS, "running", progress)),
        job_message(JobEvent(1, EventType.METRICS, "running", [{"step": 1}])),
        job_message(JobEvent(1, EventType.LOG, "running", "a line")),
        job_message(JobEvent(1, EventType.ARTIFACT, "running", artifact)),
    ]
    assert [type(m) for m in made] == [JobStateChanged, JobProgress, JobMetrics, JobLog, JobArtifact]
    assert made[0].status == "failed" and made[0].detail == {"error": "boom"}
    assert made[1].progress is progress and made[2].rows == [{"step": 1}]
    assert made[3].text == "a line" and made[4].artifact is artifact
    assert all(m.job_id == 1 for m in made)


class Recorder(App):
    """Records the job messages it handles."""

    def __init__(self) -> None:
        super().__init__()
        self.handled: list[JobMessage] = []

    @on(JobMessage)
    def record(self, message: JobMessage) -> None:
        self.handled.append(message)


async def test_queued_progress_and_metrics_of_one_job_merge_and_keep_every_row():
    app = Recorder()
    async with app.run_test() as pilot:
        # posted back to back, as from the runner's thread while the app is busy: all four are queued together
        for first in (0, 10, 20):
            app.post_message(JobMetrics(7, [{"step": s} for s in range(first, first + 10)]))
        app.post_message(JobMetrics(8, [{"step": 0}]))  # another job's rows stay a message of their own
        for done in (1, 2, 3):
            app.post_message(JobProgress(7, Progress(done, 3)))
        app.post_message(JobStateChanged(7, "completed"))
        app.post_message(JobStateChanged(7, "completed"))  # states never merge
        await pilot.pause()
    kinds = [(type(m).__name__, m.job_id) for m in app.handled]
    assert kinds == [
        ("JobMetrics", 7),
        ("JobMetrics", 8),
        ("JobProgress", 7),
        ("JobStateChanged", 7),
        ("JobStateChanged", 7),
    ]
    assert [row["step"] for row in app.handled[0].rows] == list(range(30))
    assert app.handled[2].progress.done == 3  # the latest progress wins


def test_job_messages_do_not_bubble_back_from_the_screen_to_the_app_that_forwarded_them():
    # Textual makes a subclass bubble unless told otherwise; a bubbling one would loop app → screen → app
    classes = (JobMessage, JobStateChanged, JobProgress, JobMetrics, JobLog, JobArtifact)
    assert not [cls for cls in classes if cls.bubble]
