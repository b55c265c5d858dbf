"""How jobs are shown: a paused training is `paused`, a completed job 100%, and ETAs from recent throughput."""

from __future__ import annotations

import pytest

from mistudio_tui.cli.jobs_cmd import job_summary
from mistudio_tui.db.jobs import progress_label, shown_status
from mistudio_tui.db.models import Job
from mistudio_tui.ui.jobview import EtaEstimator, JobView


def _job(**fields) -> Job:
    base = {"kind": "train", "title": "t", "params": {}, "status": "running", "progress_done": 0.0}
    return Job(**{**base, **fields})


def test_a_training_cancelled_with_a_checkpoint_shows_as_paused() -> None:
    assert shown_status(_job(status="cancelled", result={"checkpoint": 400})) == "paused"
    assert shown_status(_job(status="cancelled", result={"checkpoints": {"3": None, "4": 200}})) == "paused"
    assert shown_status(_job(status="cancelled", result={"checkpoint": None})) == "cancelled"
    assert shown_status(_job(status="cancelled", result=None)) == "cancelled"
    assert shown_status(_job(status="failed", result={"checkpoint": 400})) == "failed"


def test_a_completed_job_shows_done_not_its_last_stage(studio) -> None:
    done = _job(kind="sample", status="completed", progress_text="reading documents", progress_total=None)
    assert progress_label(done) == "100%"
    assert progress_label(_job(progress_text="reading documents")) == "reading documents"
    assert progress_label(_job(progress_done=3, progress_total=12)) == "25%"
    done.save()
    paused = _job(status="cancelled", result={"checkpoint": 10}, progress_done=5, progress_total=10)
    paused.save()
    assert job_summary(done)["progress"] == "100%"
    assert job_summary(paused)["status"] == "paused" and job_summary(paused)["state"] == "cancelled"


def _run(estimator: EtaEstimator, load_s: float, total_s: float, load_fraction: float = 0.03):
    """A job that loads for `load_s` (reaching `load_fraction`), then works at a steady rate until `total_s`."""
    shown = []
    for t in range(int(total_s)):
        if t < load_s:
            fraction = 0.0
        else:
            fraction = load_fraction + (1 - load_fraction) * (t - load_s) / (total_s - load_s)
        eta = estimator.observe(1, float(t), fraction)
        if eta is not None:
            shown.append((t, eta, total_s - t))
    return shown


def test_the_eta_follows_recent_throughput_and_hides_until_stable() -> None:
    # the job: 3% after a slow start, done at 1m23s; elapsed/fraction said 12m54s at 3%
    shown = _run(EtaEstimator(), load_s=40, total_s=83)
    assert shown, "an ETA should appear once the rate settles"
    for _, eta, truth in shown:
        assert eta == pytest.approx(truth, rel=0.25, abs=2.0)
    assert shown[0][0] < 75  # it appears well before the end


def test_the_eta_is_hidden_at_first_and_a_resumed_job_starts_over() -> None:
    estimator = EtaEstimator()
    assert estimator.observe(1, 0.0, 0.5) is None
    shown = _run(estimator, load_s=0, total_s=60, load_fraction=0.0)  # progress went back: a resume
    assert all(eta == pytest.approx(truth, rel=0.25, abs=2.0) for _, eta, truth in shown)
    view = JobView(_job(id=99, progress_done=3, progress_total=100))
    assert view.eta is None  # one look is no rate
