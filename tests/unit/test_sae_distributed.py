"""Data-parallel SAE training: 2 gloo ranks on the CPU match one process; a killed rank fails clearly and resumes."""

from __future__ import annotations

import itertools
import os
import signal
from functools import partial
from pathlib import Path

import pytest
import torch

from mistudio_tui.jobs.context import JobCancelled, LocalContext
from mistudio_tui.ml.batches import TensorBatchSource
from mistudio_tui.ml.sae.checkpoint import latest_checkpoint
from mistudio_tui.ml.sae.config import SAEConfig, TrainConfig
from mistudio_tui.ml.sae.distributed import DistributedRun, RankFailed, shard_bounds, train_distributed
from mistudio_tui.ml.sae.formats import load_saelens
from mistudio_tui.ml.sae.trainer import train_sae

# Gradients are all-reduced in a different summation order than one process uses, so weights agree to
# float32 rounding amplified over a few Adam steps (Adam divides by sqrt(v), which magnifies tiny differences
# where gradients are small), not bitwise.
ATOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def planted(seed: int = 0, n: int = 2048, d_in: int = 16) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    dictionary = torch.nn.functional.normalize(torch.randn(48, d_in, generator=gen), dim=1)
    codes = torch.rand(n, 48, generator=gen) * (torch.rand(n, 48, generator=gen) < 0.08)
    return codes @ dictionary + 0.2


def planted_source() -> TensorBatchSource:
    """Built in every rank (a module-level function, so it pickles)."""
    torch.set_num_threads(1)
    return TensorBatchSource(planted(), seed=5)


class DyingSource(TensorBatchSource):
    """Rank 1 kills itself with SIGKILL when it draws batch `die_at`."""

    def __init__(self, data: torch.Tensor, die_at: int) -> None:
        super().__init__(data, seed=5)
        self.die_at, self.calls = die_at, 0

    def next_batch(self, batch_size: int) -> torch.Tensor:
        import torch.distributed as dist

        self.calls += 1
        if self.calls == self.die_at and dist.is_initialized() and dist.get_rank() == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().next_batch(batch_size)


def dying_source(die_at: int) -> DyingSource:
    torch.set_num_threads(1)
    return DyingSource(planted(), die_at)


def configs(arch: str = "topk", **train: object) -> tuple[SAEConfig, TrainConfig]:
    sae = SAEConfig(d_in=16, architecture=arch, d_sae=64, k=4, l1_coefficient=1.0)
    base = {
        "total_tokens": 128 * 16,
        "batch_size": 128,
        "lr": 3e-3,
        "init_tokens": 256,
        "eval_tokens": 256,
        "metrics_every": 4,
        "density_hist_every": 8,
        "checkpoint_every": 4,
        "device": "cpu",
        "seed": 1,
        # Adam: a sign step turns a rounding-level difference between the 2-rank and 1-process gradient of a
        # near-zero entry into a whole lr, so sign descent cannot match one process to a tolerance
        "optimizer": "adam",
    }
    base.update(train)
    return sae, TrainConfig(**base)  # type: ignore[arg-type]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return dict(load_saelens(folder)[0].state_dict())


def assert_close_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=0, atol=ATOL, msg=name)


def single(tmp_path: Path) -> tuple[Path, LocalContext, dict]:
    sae, train = configs()
    ctx = LocalContext()
    summary = train_sae(sae, train, planted_source(), tmp_path / "single", ctx, eval_source=planted_source())
    return tmp_path / "single", ctx, summary


def test_shards_cover_the_batch_once() -> None:
    for rows, world in ((128, 2), (127, 3), (5, 5)):
        bounds = [shard_bounds(rows, r, world) for r in range(world)]
        assert bounds[0][0] == 0 and bounds[-1][1] == rows
        assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
        assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process(tmp_path: Path) -> None:
    reference, ref_ctx, ref_summary = single(tmp_path)
    sae, train = configs()
    ctx = LocalContext()
    run = DistributedRun(sae, train, tmp_path / "ddp", planted_source, planted_source)
    summary = train_distributed(run, ctx, nproc=2)
    assert summary["world_size"] == 2 and summary["steps"] == 16 and summary["tokens"] == 128 * 16
    assert_close_weights(reference, tmp_path / "ddp")
    # Only rank 0 reports, and its metrics are over the whole global batch (summed over ranks).
    rows, ref_rows = ctx.metric_rows, ref_ctx.metric_rows
    assert [r["step"] for r in rows] == [r["step"] for r in ref_rows] == [4, 8, 12, 16]
    for row, ref in zip(rows, ref_rows, strict=True):
        assert row["tokens"] == ref["tokens"]
        assert row["l0"] == pytest.approx(ref["l0"], abs=0.05)
        assert row["mse"] == pytest.approx(ref["mse"], rel=1e-3)
    checkpoints = [a for a in ctx.artifacts if a.kind == "checkpoint"]
    assert [a.meta["step"] for a in checkpoints] == [4, 8, 12, 16]
    ev, ref_ev = summary["eval"]["explained_variance"], ref_summary["eval"]["explained_variance"]
    assert ev == pytest.approx(ref_ev, abs=1e-3)


@pytest.mark.slow
def test_killed_rank_fails_clearly_and_the_run_resumes(tmp_path: Path) -> None:
    reference, _, _ = single(tmp_path)
    sae, train = configs()
    out = tmp_path / "ddp"
    # init draws 2 batches; die on the 11th draw = step 9, after the step-8 checkpoint.
    run = DistributedRun(sae, train, out, partial(dying_source, 11))
    with pytest.raises(RankFailed, match=r"rank 1 was killed by SIGKILL \(out of memory\?\); .*resume .* step 8"):
        train_distributed(run, LocalContext(), nproc=2)
    assert latest_checkpoint(out / "checkpoints").name == "step-000000008.pt"
    assert not (out / "cfg.json").exists()

    ctx = LocalContext()
    resumed = DistributedRun(sae, train, out, planted_source, planted_source, resume=True)
    summary = train_distributed(resumed, ctx, nproc=2)
    assert summary["resumed_from_step"] == 8 and summary["steps"] == 16
    assert any("resumed from" in line for line in ctx.logs)
    assert_close_weights(reference, out)


@pytest.mark.slow
def test_cancel_stops_every_rank_with_a_checkpoint(tmp_path: Path) -> None:
    sae, train = configs(total_tokens=128 * 400, checkpoint_every=1000)
    run = DistributedRun(sae, train, tmp_path / "ddp", planted_source)
    with pytest.raises(JobCancelled) as info:
        train_distributed(run, LocalContext(cancel_after=2), nproc=2)
    step = info.value.args[0]["checkpoint"]
    assert step is not None and 0 < step < 400
    assert latest_checkpoint(tmp_path / "ddp" / "checkpoints").name == f"step-{step:09d}.pt"


def test_batches_too_small_to_shard_are_refused(tmp_path: Path) -> None:
    sae, train = configs(batch_size=2, total_tokens=64)
    with pytest.raises(ValueError, match="at least one row"):
        train_distributed(DistributedRun(sae, train, tmp_path, planted_source), LocalContext(), nproc=3)
