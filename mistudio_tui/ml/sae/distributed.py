"""Data-parallel SAE training on torch.distributed (gloo on CPU, NCCL on CUDA), launched here or by torchrun.

Every rank draws the same global batch from its own copy of the source (so the source state, and with it
the checkpoint, is the same on every rank), keeps its contiguous shard of the rows, and trains on it; the
gradients are weighted by shard size and all-reduced, so each step equals a single-process step on the
global batch. Firing counts and the metric window are summed over ranks. Only rank 0 reports, writes
checkpoints and the SAE; a launcher process (`train_distributed`) spawns the ranks, relays rank 0's messages
to the job, stops the group on cancel, and turns a dead rank into one clear error.

torchrun (several machines): `python -m torch.distributed.run … -m mistudio_tui.ml.sae.distributed RUN.json`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from mistudio_tui import reporting as p
from mistudio_tui.ml.batches import BatchSource
from mistudio_tui.ml.device import pick_device
from mistudio_tui.ml.sae.checkpoint_files import checkpoint_path, latest_checkpoint_step
from mistudio_tui.ml.sae.config import SAEConfig, TrainConfig
from mistudio_tui.ml.sae.trainer import SAETrainer
from mistudio_tui.reporting import JobCancelled, JobContext
from mistudio_tui.supervisor import CHILD_END, Child, describe_exit, new_event, stop_all, wait_any

SourceFactory = Callable[[], BatchSource]
COLLECTIVE_TIMEOUT = dt.timedelta(minutes=10)
SETTLE_S = 3.0  # after one rank fails, how long the others get to exit on their own before they are stopped


class RankFailed(RuntimeError):
    """A rank of a distributed training died or raised; the message names the rank and why."""


@dataclasses.dataclass
class DistributedRun:
    """What every rank trains: configs, output folder and picklable factories of its batch sources."""

    sae_cfg: SAEConfig
    train_cfg: TrainConfig
    out_dir: Path
    source: SourceFactory
    eval_source: SourceFactory | None = None
    resume: bool = False


def shard_bounds(rows: int, rank: int, world: int) -> tuple[int, int]:
    """[start, stop) of `rank`'s contiguous share of `rows` (sizes differ by at most one)."""
    base, extra = divmod(rows, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def check_divisible(train_cfg: TrainConfig, world: int) -> None:
    """Every rank must get at least one row of every batch, the last partial one included."""
    last = train_cfg.total_tokens % train_cfg.batch_size
    if train_cfg.batch_size < world or 0 < last < world:
        raise ValueError(
            f"batch size {train_cfg.batch_size} (and a last batch of {last or train_cfg.batch_size} rows) must give "
            f"each of the {world} processes at least one row"
        )


class DistributedSAETrainer(SAETrainer):
    """An SAETrainer whose steps are data-parallel over the ranks of the default process group."""

    def __init__(
        self,
        sae_cfg: SAEConfig,
        train_cfg: TrainConfig,
        source: BatchSource,
        out_dir: Path,
        ctx: JobContext,
        rank: int,
        world: int,
    ) -> None:
        check_divisible(train_cfg, world)
        super().__init__(sae_cfg, train_cfg, source, out_dir, ctx)
        self.rank, self.world = rank, world
        self.sharding = False  # off while initialising: every rank sees the same full init batches
        self.collectives_done = False

    def _next_batch(self, n: int) -> Tensor:
        batch = self.source.next_batch(n)
        if tuple(batch.shape) != (n, self.sae_cfg.d_in):
            raise ValueError(
                f"the activation source returned a batch of shape {tuple(batch.shape)}, "
                f"expected ({n}, {self.sae_cfg.d_in})"
            )
        if self.sharding:
            start, stop = shard_bounds(n, self.rank, self.world)
            batch = batch[start:stop]
        return batch.to(self.device, non_blocking=True).float()

    def _reduce_gradients(self, local_rows: int, global_rows: int) -> None:
        params = list(self.sae.parameters())
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).float() for g in grads]) * (local_rows / global_rows)
        dist.all_reduce(flat)
        offset = 0
        for param in params:
            n = param.numel()
            param.grad = flat[offset : offset + n].view_as(param).to(param.dtype)
            offset += n

    def _reduce_fired(self, fired: Tensor, rows: int) -> tuple[Tensor, int]:
        packed = torch.cat([fired.to(torch.int64), torch.tensor([rows], dtype=torch.int64, device=fired.device)])
        dist.all_reduce(packed)
        return packed[:-1], int(packed[-1])

    def _reduce_floor(self, floor: Tensor) -> Tensor:
        dist.all_reduce(floor)
        return floor / self.world

    def _reduce_window(self) -> None:
        if self.collectives_done:
            return
        floats, counts = self.window.packed()
        dist.all_reduce(floats)
        dist.all_reduce(counts)
        self.window.unpack(floats, counts)

    def save_checkpoint(self) -> Path:
        if self.rank == 0:
            return super().save_checkpoint()
        self.last_checkpoint_step = self.step
        return checkpoint_path(self.checkpoint_dir, self.step)


class RankContext(JobContext):
    """Rank 0 sends messages to `conn` (or nowhere); while `collective`, cancel checks are agreed by all ranks."""

    def __init__(
        self,
        rank: int,
        conn: Connection | None,
        cancel_event: Any = None,
        parent_pid: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(interval=0.25, is_cancelled=self._local_stop)
        self.rank, self.conn, self.cancel_event, self.parent_pid = rank, conn, cancel_event, parent_pid
        self.flag_device = torch.device(device)
        self.collective = False

    def _local_stop(self) -> bool:
        if self.cancel_event is not None and self.cancel_event.is_set():
            return True
        return self.parent_pid is not None and os.getppid() != self.parent_pid

    def check_cancelled(self) -> None:
        if not self.collective:
            return super().check_cancelled()
        flag = torch.tensor([1 if self.cancelled() else 0], dtype=torch.int32, device=self.flag_device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if int(flag.item()):
            raise JobCancelled()

    def _send(self, message: p.Message) -> None:
        if self.conn is None:
            return
        if self.rank == 0 or isinstance(message, p.Error):
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, EOFError, OSError):
                self.conn.send(message)


class StderrContext(RankContext):
    """Rank 0 under torchrun: log lines and the last progress go to stderr (there is no job runner)."""

    def _send(self, message: p.Message) -> None:
        if self.rank != 0:
            return
        if isinstance(message, p.LogLine):
            print(f"[rank 0] {message.text}", file=sys.stderr, flush=True)
        elif isinstance(message, p.Artifact) and message.kind in ("checkpoint", "sae"):
            print(f"[rank 0] {message.kind}: {message.path}", file=sys.stderr, flush=True)


def rank_device(requested: str, local_rank: int) -> torch.device:
    """This rank's device: `cuda:<local_rank>` when training on CUDA, else the CPU."""
    device = pick_device(requested)
    if device.type != "cuda":
        return device
    if local_rank >= torch.cuda.device_count():
        raise ValueError(f"local rank {local_rank} has no GPU: this machine has {torch.cuda.device_count()}")
    return torch.device("cuda", local_rank)


def run_rank(
    run: DistributedRun, rank: int, world: int, local_rank: int, init_method: str, ctx: RankContext
) -> dict[str, Any] | None:
    """Join the group, train this rank's shard of every step; rank 0 returns the `train_sae` summary."""
    device = rank_device(run.train_cfg.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    ctx.flag_device = device
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world, timeout=COLLECTIVE_TIMEOUT)
    try:
        train_cfg = dataclasses.replace(run.train_cfg, device=str(device))
        trainer = DistributedSAETrainer(run.sae_cfg, train_cfg, run.source(), Path(run.out_dir), ctx, rank, world)
        if rank == 0:
            ctx.started(f"{device} ×{world} ({backend})")
        trainer.prepare(run.resume)
        trainer.sharding = True
        ctx.collective = True
        trainer.train()
        trainer._emit_metrics()  # the last window, summed over ranks while they are all still here
        ctx.collective = False
        trainer.collectives_done = True
        summary = None
        if rank == 0:
            summary = trainer.finish(run.eval_source() if run.eval_source is not None else None)
            summary["world_size"] = world
        # Leave together: a rank tearing its gloo pairs down while another still holds them can abort (SIGABRT).
        dist.barrier()
        return summary
    except JobCancelled:  # every rank agreed on the step to stop at: leave together here too
        with contextlib.suppress(Exception):
            dist.barrier()
        raise
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def _rank_entry(
    rank: int,
    world: int,
    init_method: str,
    run: DistributedRun,
    conn: Connection,
    cancel_event: Any,
    parent_pid: int,
) -> None:
    """Body of a spawned rank: train, then send the result (rank 0), a cancel, or the error."""
    ctx = RankContext(rank, conn, cancel_event, parent_pid)
    code = 0
    try:
        summary = run_rank(run, rank, world, rank, init_method, ctx)
        ctx.flush()
        if rank == 0:
            ctx._send(p.Result(summary or {}))
    except JobCancelled:
        ctx.flush()
        ctx._send(p.Cancelled({"checkpoint": latest_checkpoint_step(Path(run.out_dir))}))
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        with contextlib.suppress(Exception):
            ctx.flush()
        ctx._send(p.Error(message, traceback.format_exc()))
        print(traceback.format_exc(), file=sys.stderr, flush=True)
        code = 1
    finally:
        conn.close()
    if code:
        os._exit(code)


def _relay(message: p.Message, ctx: JobContext) -> None:
    """Re-issue a message of rank 0 through the job's context."""
    if isinstance(message, p.Progress):
        ctx.progress(message.done, message.total, message.text, message.unit)
    elif isinstance(message, p.MetricRows):
        for row in message.rows:
            values = dict(row)
            ctx.metric(values.pop("step"), **values)
    elif isinstance(message, p.LogLine):
        ctx.log(message.text, message.level)
    elif isinstance(message, p.Artifact):
        ctx.artifact(message.kind, message.path, **message.meta)
    elif isinstance(message, p.Started):
        ctx.started(message.device)


def train_distributed(run: DistributedRun, ctx: JobContext, nproc: int) -> dict[str, Any]:
    """Train on `nproc` local ranks (spawned here) and return rank 0's summary; a failing rank raises RankFailed."""
    if nproc < 2:
        raise ValueError(f"nproc must be at least 2 for distributed training, got {nproc}")
    check_divisible(run.train_cfg, nproc)
    device = pick_device(run.train_cfg.device)
    if device.type == "cuda" and nproc > torch.cuda.device_count():
        raise ValueError(
            f"--nproc {nproc} asks for one GPU per process, but this machine has {torch.cuda.device_count()}"
        )
    rendezvous = Path(tempfile.mkdtemp(prefix="mistudio-ddp-"))
    init_method = f"file://{rendezvous / 'store'}"
    cancel_event = new_event()
    ranks: list[Child] = []
    try:
        for rank in range(nproc):
            args = (rank, nproc, init_method, run, CHILD_END, cancel_event, os.getpid())
            ranks.append(Child.spawn(_rank_entry, args, name=f"sae-rank-{rank}"))
        return _supervise(ranks, cancel_event, ctx, Path(run.out_dir))
    finally:
        for child in ranks:
            child.kill(join_timeout=5)
            child.close()
        shutil.rmtree(rendezvous, ignore_errors=True)


def _supervise(ranks: list[Child], cancel_event: Any, ctx: JobContext, out_dir: Path) -> dict[str, Any]:
    """Relay messages until every rank has exited; stop the group on cancel or on the first failure."""
    errors: list[tuple[int, str]] = []
    outcome: p.Result | p.Cancelled | None = None
    failed_at: float | None = None
    while True:
        if ctx.cancelled():
            cancel_event.set()
        # a rank that exited and whose pipe is drained has nothing left to wake us for
        readable, _ = wait_any([c for c in ranks if c.exitcode is None or not c.eof], timeout=0.2)
        for rank, child in enumerate(ranks):
            if child not in readable:
                continue
            for message in child.messages():
                if isinstance(message, p.Error):
                    errors.append((rank, message.message))
                elif isinstance(message, (p.Result, p.Cancelled)):
                    outcome = message
                else:
                    _relay(message, ctx)
        codes = [child.exitcode for child in ranks]
        if failed_at is None and any(c not in (None, 0) for c in codes):
            failed_at = time.monotonic()
        if all(c is not None for c in codes) and all(child.eof for child in ranks):
            break
        if failed_at is not None and time.monotonic() - failed_at > SETTLE_S:
            stop_all(ranks, grace=0, kill_after=SETTLE_S)
            break
    codes = [child.exitcode for child in ranks]
    if failed_at is not None or errors:
        raise RankFailed(_failure_message(codes, errors, out_dir))
    if isinstance(outcome, p.Cancelled):
        raise JobCancelled(outcome.data)
    if not isinstance(outcome, p.Result):
        raise RankFailed("rank 0 exited without a result")
    return outcome.data


def _failure_message(codes: list[int | None], errors: list[tuple[int, str]], out_dir: Path) -> str:
    """The root cause first: a rank killed by a signal, else the first error reported, else a non-zero exit."""
    killed = [(rank, code) for rank, code in enumerate(codes) if code is not None and code < 0]
    if killed:
        cause = describe_exit(killed[0][1], f"rank {killed[0][0]}")
    elif errors:
        cause = f"rank {errors[0][0]} failed: {errors[0][1]}"
    else:
        rank, code = next((r, c) for r, c in enumerate(codes) if c not in (None, 0))
        cause = describe_exit(code, f"rank {rank}")
    step = latest_checkpoint_step(out_dir)
    if step is None:
        return f"{cause}; no checkpoint was written yet"
    return f"{cause}; the other ranks were stopped and the run can resume from its checkpoint at step {step}"


# --- torchrun ------------------------------------------------------------------------------------
def run_from_file(path: Path) -> DistributedRun:
    """A DistributedRun from a JSON file: {'sae': …, 'train': …, 'out_dir': …, 'activations': dir, 'hook': …}."""
    from functools import partial

    from mistudio_tui.ml.activations.store import store_source

    spec = json.loads(Path(path).read_text())
    train_cfg = TrainConfig.from_dict(spec["train"])
    return DistributedRun(
        sae_cfg=SAEConfig.from_dict(spec["sae"]),
        train_cfg=train_cfg,
        out_dir=Path(spec["out_dir"]),
        source=partial(store_source, spec["activations"], spec.get("hook"), train_cfg.seed),
        eval_source=partial(store_source, spec["activations"], spec.get("hook"), train_cfg.seed, held_out=True),
        resume=bool(spec.get("resume")),
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point for torchrun: every process trains its rank; rank 0 prints the summary as JSON."""
    parser = argparse.ArgumentParser(description="one rank of a data-parallel SAE training (run under torchrun)")
    parser.add_argument("run", type=Path, help="JSON file with sae, train, out_dir, activations, hook, resume")
    args = parser.parse_args(argv)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    run = run_from_file(args.run)
    summary = run_rank(run, rank, world, local_rank, "env://", StderrContext(rank, None))
    if rank == 0:
        print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
