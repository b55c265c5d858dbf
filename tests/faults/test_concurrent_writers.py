"""Parallel writers (separate processes) wait for the write lock instead of failing with "database is locked"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mistudio_tui.db.models import FeatureLabel, Job, Training
from tests.faults.seeded_home import cli, seed

# One training configured and queued exactly as `mistudio train` does before its worker starts.
START_TRAINING = """
import os, sys
from mistudio_tui.db.jobs import create_job
from mistudio_tui.services.trainings import new_training
from mistudio_tui.studio import Studio

studio = Studio(sys.argv[1])
spec = new_training(studio, "acts", total_tokens=512, batch_size=64, device="cpu")
create_job(spec.kind, spec.title, spec.params.to_json(), spec.resource, os.getpid(), studio.paths.dir("logs"))
studio.close()
"""


def test_eight_parallel_label_edits_all_land(mistudio_home: Path) -> None:
    seed(mistudio_home)
    procs = [cli(mistudio_home, "labels", "set", "fs", str(i), "--semantic", f"edit {i}") for i in range(8)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    failures = [err for code, _, err in results if code != 0]
    assert failures == []
    assert not any("Traceback" in err or "locked" in err for _, _, err in results)
    labels = {lb.feature_index: lb.semantic for lb in FeatureLabel.select()}
    assert labels == {i: f"edit {i}" for i in range(8)}


def test_four_parallel_training_starts_all_get_a_row_and_a_job(mistudio_home: Path) -> None:
    seed(mistudio_home)
    procs = [
        subprocess.Popen([sys.executable, "-c", START_TRAINING, str(mistudio_home)], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    runs = Training.select().where(Training.name != "sae")
    assert len({t.name for t in runs}) == 4 and all(t.name.startswith("topk-acts-64-") for t in runs)
    # each starter exits after queueing, so a later starter's start-up may rightly mark an earlier job interrupted
    assert Job.select().where(Job.kind == "train").count() == 4
