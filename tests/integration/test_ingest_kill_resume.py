"""An ingest whose worker process is killed (SIGKILL) mid-way continues from its checkpoint with `datasets resume`."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from mistudio_tui.cli.main import main
from mistudio_tui.db.models import Dataset, Job
from mistudio_tui.services import datasets as dataset_svc

pytestmark = pytest.mark.slow
N_ROWS = 600_000


def test_killed_ingest_resumes_from_its_checkpoint(capsys, studio, tmp_path: Path) -> None:
    corpus = tmp_path / "big.jsonl"
    with corpus.open("w") as handle:
        for i in range(N_ROWS):
            handle.write(json.dumps({"text": f"row {i} of the corpus"}) + "\n")
    spec = dataset_svc.add_dataset(studio, str(corpus), name="big")
    job = spec.submit(studio.runner)
    state = Path(spec.resource.path) / "ingest_state.json"
    deadline = time.monotonic() + 120
    while not (state.exists() and json.loads(state.read_text())["position"]["rows"] > 0):
        assert Job.get_by_id(job.id).status in ("queued", "running"), "the ingest ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.05)
    os.kill(Job.get_by_id(job.id).pid, signal.SIGKILL)
    while Job.get_by_id(job.id).status == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    killed = Dataset.get(Dataset.name == "big")
    assert killed.status == "failed" and "SIGKILL" in (killed.error or "")
    rows_at_kill = json.loads(state.read_text())["position"]["rows"]
    assert 0 < rows_at_kill < N_ROWS

    assert main(["datasets", "resume", "big", "--json"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["status"] == "ready" and resumed["n_documents"] == N_ROWS
    log = Path(Job.get_by_id(resumed["job"]).log_path).read_text()
    assert f"resuming after {rows_at_kill:,} rows" in log
    with (Path(resumed["path"]) / "documents.jsonl").open() as handle:
        texts = [json.loads(line)["text"] for line in handle]
    assert texts == [f"row {i} of the corpus" for i in range(N_ROWS)]
