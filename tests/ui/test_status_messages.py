"""What the app says about a state: no GPU (once), a stopped training that can resume, a dataset that failed."""

from __future__ import annotations

from textual.widgets import Static

from mistudio_tui.app import MiStudioApp
from mistudio_tui.db.models import Dataset, Job
from mistudio_tui.ui.messages import JobStateChanged
from tests.ui.populate import populate


async def test_monitor_says_why_there_is_no_gpu_once(studio):
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("6")
        await pilot.pause(0.5)
        text = str(app.screen.query_one("#gpu-none", Static).render())
        if text:  # empty where NVML sees GPUs
            assert text.lower().count("no nvidia gpu") == 1, text


async def test_a_stopped_training_says_it_can_be_resumed_not_just_cancelled(studio):
    job = Job.create(kind="train", title="Train topk-run", status="cancelled")
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.post_message(JobStateChanged(job.id, "cancelled"))
        await pilot.pause()
        messages = [n.message for n in app._notifications]
        assert any("Train topk-run" in m and "resumes" in m for m in messages), messages


async def test_a_failed_dataset_shows_its_error_and_no_empty_length_plot(studio):
    populate(studio.paths.home)
    Dataset.create(
        name="broken",
        source_type="local",
        source="/x/broken.jsonl",
        path="/x",
        status="failed",
        error="broken.jsonl line 2: invalid JSON",
    )
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        plot = app.screen.query_one("#length-hist")
        assert plot.display
        await pilot.press("down")
        await pilot.pause()
        assert "invalid JSON" in str(app.screen.query_one("#dataset-detail", Static).render())
        assert not plot.display
