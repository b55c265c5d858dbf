"""SIGTERM is a cancel (a final checkpoint, state `cancelled`), and a checkpoint write killed by SIGKILL corrupts
nothing: the latest checkpoint still loads, the run resumes, and the unfinished temporary file is removed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mistudio_tui.db.models import Job, Training
from mistudio_tui.jobs.checkpoint_files import CHECKPOINT_DIR, checkpoint_steps
from mistudio_tui.jobs.context import LocalContext
from tests.faults.tiny_runs import HOOK, REPO_ROOT, cli_env, random_activations, run_cli, start_cli

pytestmark = pytest.mark.slow


def wait_for(condition, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".tmp-*")]


def test_cancel_from_another_shell_checkpoints_and_ends_cancelled(studio) -> None:
    random_activations(studio, rows=2048)
    home = studio.paths.home
    options = ["--tokens", "100M", "--batch-size", "64", "--k", "4", "--expansion", "2", "--device", "cpu"]
    train = start_cli(
        home, "train", "--activations", "acts", "--name", "run", "--checkpoint-every", "1000000", *options
    )
    try:
        job = wait_for(
            lambda: Job.get_or_none((Job.kind == "train") & (Job.status == "running") & (Job.progress_done > 0)),
            what="the training to make progress",
        )
        cancel = run_cli(home, "jobs", "cancel", str(job.id))  # another process: the worker gets SIGTERM
        assert cancel.returncode == 0, cancel.stderr
        _, err = train.communicate(timeout=60)
    finally:
        if train.poll() is None:
            train.kill()
    job = Job.get_by_id(job.id)
    training = Training.get(Training.name == "run")
    assert job.status == "cancelled" and training.status == "paused", (job.status, job.error)  # resumable
    assert "cancelled" in err and err.strip().count("\n") == 0, err
    steps = checkpoint_steps(Path(training.path))
    assert steps and steps[-1] > 0  # the final checkpoint of the cancel (checkpoint_every is never reached)
    assert temporaries(Path(training.path)) == []
    assert "training cancelled at step" in Path(job.log_path).read_text()


KILLED_WRITER = """
import sys, time, torch
from pathlib import Path
from mistudio_tui.jobs.context import LocalContext
from mistudio_tui.ml.activations.store import store_source
from mistudio_tui.ml.sae.config import SAEConfig, TrainConfig
from mistudio_tui.ml.sae.trainer import train_sae

folder, out, marker = sys.argv[1:4]
real_save, calls = torch.save, [0]

def save_then_hang(obj, handle, *args, **kwargs):
    calls[0] += 1
    if calls[0] == 3:  # the third checkpoint: half written when the process is killed
        handle.write(b"half a checkpoint" * 4096)
        handle.flush()
        Path(marker).write_text("writing")
        time.sleep(600)
    return real_save(obj, handle, *args, **kwargs)

torch.save = save_then_hang
sae = SAEConfig.from_dict({"architecture": "topk", "d_in": 16, "d_sae": 32, "k": 4})
train = TrainConfig(total_tokens=64 * 40, batch_size=64, checkpoint_every=10, init_tokens=256, eval_tokens=0,
                    device="cpu", keep_checkpoints=0)
train_sae(sae, train, store_source(folder, sys.argv[4], 0), Path(out), LocalContext())
"""


def test_sigkill_during_a_checkpoint_write_keeps_the_last_one_and_resumes(studio, tmp_path: Path) -> None:
    from mistudio_tui.ml.activations.store import store_source
    from mistudio_tui.ml.sae.checkpoint import latest_checkpoint, load_checkpoint
    from mistudio_tui.ml.sae.config import SAEConfig, TrainConfig
    from mistudio_tui.ml.sae.trainer import train_sae

    aset = random_activations(studio, rows=2048)
    out, marker = tmp_path / "run", tmp_path / "writing"
    argv = [sys.executable, "-c", KILLED_WRITER, aset.path, str(out), str(marker), HOOK]
    writer = subprocess.Popen(argv, env=cli_env(studio.paths.home), cwd=REPO_ROOT)
    try:
        wait_for(marker.exists, what="the third checkpoint write")
        os.kill(writer.pid, signal.SIGKILL)
        assert writer.wait(30) == -signal.SIGKILL
    finally:
        if writer.poll() is None:
            writer.kill()
    folder = out / CHECKPOINT_DIR
    assert checkpoint_steps(out) == [10, 20]  # the half-written step 30 never became a checkpoint
    assert len(temporaries(out)) == 1
    assert load_checkpoint(latest_checkpoint(folder))["step"] == 20

    ctx = LocalContext()
    sae = SAEConfig.from_dict({"architecture": "topk", "d_in": 16, "d_sae": 32, "k": 4})
    train = TrainConfig(total_tokens=64 * 40, batch_size=64, checkpoint_every=10, init_tokens=256, eval_tokens=0,
                        device="cpu", keep_checkpoints=0)  # fmt: skip
    summary = train_sae(sae, train, store_source(aset.path, HOOK, 0), out, ctx, resume=True)
    assert summary["resumed_from_step"] == 20 and summary["steps"] == 40
    assert temporaries(out) == []  # the killed write's temporary file was removed when the run resumed
    assert any("unfinished checkpoint" in line for line in ctx.logs)
    assert checkpoint_steps(out) == [10, 20, 30, 40]
