"""Several SAEs trained in lockstep on batches from the same forward passes (or the same activation set).

Each member is an ordinary `SAETrainer` with its own source, output folder, checkpoints and metrics; a
`TaggedContext` adds the member's tag (the training id) to its metric rows and artifacts so one job can
report several runs. Members step in turn, so a shared `ActivationStream` serves every hook from one window.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mistudio_tui import reporting as p
from mistudio_tui.ml.batches import BatchSource
from mistudio_tui.ml.sae.config import SAEConfig, TrainConfig
from mistudio_tui.ml.sae.trainer import SAETrainer
from mistudio_tui.reporting import JobCancelled, JobContext

TAG_KEY = "training_id"


class TaggedContext(JobContext):
    """Forwards to a parent context, tagging metric rows and artifacts; per-member progress is left out."""

    def __init__(self, parent: JobContext, tag: Any, label: str) -> None:
        super().__init__(parent.job_dir, interval=0.0, is_cancelled=parent.cancelled)
        self.parent, self.tag, self.label = parent, tag, label

    def started(self, device: str) -> None:
        self.device = device

    def progress(self, done: float, total: float | None = None, text: str = "", unit: str = "") -> None:
        return None

    def metric(self, step: int, **values: Any) -> None:
        self.parent.metric(step, **values, **{TAG_KEY: self.tag})

    def log(self, text: str, level: str = "info") -> None:
        self.parent.log(f"[{self.label}] {text}", level)

    def artifact(self, kind: str, path: str | Path = "", **meta: Any) -> None:
        self.parent.artifact(kind, path, **meta, **{TAG_KEY: self.tag})

    def check_cancelled(self) -> None:
        self.parent.check_cancelled()

    def _send(self, message: p.Message) -> None:
        raise AssertionError("TaggedContext forwards through its parent")


@dataclass
class Member:
    """One SAE of a group: its tag (training id), config, batch source and output folder."""

    tag: Any
    label: str
    sae_cfg: SAEConfig
    source: BatchSource
    out_dir: Path
    eval_source: BatchSource | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def check_members(members: list[Member]) -> None:
    """At least one member, unique tags, one output folder each."""
    if not members:
        raise ValueError("members: give at least one SAE to train")
    tags = [m.tag for m in members]
    if len(set(tags)) != len(tags):
        raise ValueError(f"member tags must be unique, got {tags}")
    folders = [Path(m.out_dir).resolve() for m in members]
    if len(set(folders)) != len(folders):
        raise ValueError("each SAE of a group needs its own output folder")


class MultiSAETrainer:
    """Steps several SAETrainers in turn, one batch each per step, and reports overall progress."""

    def __init__(self, members: list[Member], train_cfg: TrainConfig, ctx: JobContext) -> None:
        check_members(members)
        self.members, self.train_cfg, self.ctx = members, train_cfg, ctx
        self.trainers = [
            SAETrainer(
                m.sae_cfg,
                dataclasses.replace(train_cfg, metadata={**train_cfg.metadata, **m.metadata}),
                m.source,
                Path(m.out_dir),
                TaggedContext(ctx, m.tag, m.label),
                prefetch=False,  # the members may share one model stream: only this thread may read it
            )
            for m in members
        ]
        self.device = self.trainers[0].device
        self.total_steps = self.trainers[0].total_steps

    def prepare(self, resume: bool) -> None:
        """Initialise (or resume) every member; resumed members must agree on the step they continue from."""
        for trainer in self.trainers:
            trainer.prepare(resume)
        steps = {t.step for t in self.trainers}
        if len(steps) > 1:
            found = ", ".join(f"{m.label}: step {t.step}" for m, t in zip(self.members, self.trainers, strict=True))
            raise ValueError(f"the group's checkpoints are at different steps ({found}); resume them one by one")

    def train(self) -> None:
        """Train all members to the token budget; on cancel, checkpoint every member and re-raise."""
        total = self.train_cfg.total_tokens * len(self.trainers)
        try:
            while self.trainers[0].step < self.total_steps:
                self.ctx.check_cancelled()
                for trainer in self.trainers:
                    trainer.train_step()
                    trainer.after_step()
                done = sum(t.tokens for t in self.trainers)
                step = self.trainers[0].step
                text = f"step {step}/{self.total_steps} · {len(self.trainers)} SAEs"
                self.ctx.progress(done, total, text, unit="tokens")
        except JobCancelled:
            for trainer in self.trainers:
                trainer.save_checkpoint()
            self.ctx.log(f"training cancelled at step {self.trainers[0].step}; every SAE of the group checkpointed")
            raise

    def finish(self) -> dict[Any, dict[str, Any]]:
        """Finish every member (final metrics, checkpoint, evaluation, SAELens folder): summaries by tag."""
        return {m.tag: t.finish(m.eval_source) for m, t in zip(self.members, self.trainers, strict=True)}


def train_multi(
    members: list[Member], train_cfg: TrainConfig, ctx: JobContext, resume: bool = False
) -> dict[Any, dict[str, Any]]:
    """Train every member on its source in lockstep; return each member's `train_sae`-style summary by tag."""
    trainer = MultiSAETrainer(members, train_cfg, ctx)
    ctx.started(str(trainer.device))
    trainer.prepare(resume)
    trainer.train()
    return trainer.finish()
