"""Worker side of a group of SAE trainings fed by one forward pass per batch (or by one multi-hook activation set)."""

from __future__ import annotations

from typing import Any

from mistudio_tui.jobs.context import JobCancelled, JobContext
from mistudio_tui.jobs.kinds.train import ActivationsSource, MultiTrainParams, StreamSource
from mistudio_tui.jobs.tasks.train import evaluate_ce, training_result
from mistudio_tui.ml.sae.checkpoint_files import latest_checkpoint_step
from mistudio_tui.ml.sae.config import TrainConfig


def _members_from_store(params: MultiTrainParams, source: ActivationsSource, train_cfg: TrainConfig) -> list[Any]:
    from mistudio_tui.ml.activations.store import (
        HELD_OUT_FRACTION,
        ActivationStore,
        ShuffledActivationSource,
        held_out_split,
    )
    from mistudio_tui.ml.sae.multi import Member

    if source.dir is None:
        raise ValueError("the activation set this group trains on is gone")
    store = ActivationStore(source.dir)
    train_rows, held_rows = held_out_split(store, fraction=HELD_OUT_FRACTION)
    members = []
    for spec in params.members:
        hook = spec.hook
        members.append(
            Member(
                tag=spec.training_id,
                label=spec.label or hook,
                sae_cfg=spec.sae,
                source=ShuffledActivationSource(store, hook, seed=train_cfg.seed, rows=train_rows),
                out_dir=spec.out_dir,
                eval_source=ShuffledActivationSource(
                    store, hook, seed=train_cfg.seed + 1, rows=held_rows, prefetch=False
                ),
                metadata={"hook_name": hook},
            )
        )
    return members


def stream_sources(stream: Any, hooks: list[str]) -> list[Any]:
    """One consumer per member (in order): the stream's own for a hook's first member, extra ones after."""
    from mistudio_tui.ml.activations.streaming import HookActivationSource

    sources, seen = [], set()
    for index, hook in enumerate(hooks):
        if hook not in seen:
            sources.append(stream.source(hook))
            seen.add(hook)
        else:  # a second config on the same hook reads the same windows through its own cursor
            extra = HookActivationSource(stream, hook)
            stream._consumers[f"{hook}#{index}"] = extra
            sources.append(extra)
    return sources


def _members_from_stream(
    params: MultiTrainParams, spec: StreamSource, train_cfg: TrainConfig, ctx: JobContext
) -> list[Any]:
    from mistudio_tui.ml.activations.streaming import ActivationStream
    from mistudio_tui.ml.data.token_store import TokenStore
    from mistudio_tui.ml.models.loading import load_model
    from mistudio_tui.ml.sae.multi import Member

    ctx.progress(0, None, text=f"loading {spec.model_path}")
    loaded = load_model(spec.model_path, dtype=spec.model_dtype or "float32", device=train_cfg.device)
    tokens = TokenStore(spec.tokenization_dir)
    hooks = [m.hook for m in params.members]
    options: dict[str, Any] = {
        "batch_size": spec.batch_size,
        "exclude_bos": spec.exclude_bos,
        "exclude_special": spec.exclude_special,
    }
    stream = ActivationStream(
        loaded,
        tokens,
        hooks,
        seed=train_cfg.seed,
        # never hold more rows than the run will draw (the window is also the unit of shuffling)
        buffer_tokens=min(spec.buffer_tokens, train_cfg.init_tokens + train_cfg.total_tokens),
        max_windows=2,
        **options,
    )
    eval_stream = None
    if train_cfg.eval_tokens > 0:
        eval_stream = ActivationStream(
            loaded,
            tokens,
            hooks,
            seed=train_cfg.seed + 1,
            buffer_tokens=int(train_cfg.eval_tokens),
            max_windows=len(hooks) + 2,
            **options,
        )
    train_sources = stream_sources(stream, hooks)
    eval_sources = stream_sources(eval_stream, hooks) if eval_stream is not None else [None] * len(hooks)
    return [
        Member(
            tag=m.training_id,
            label=m.label or m.hook,
            sae_cfg=m.sae,
            source=source,
            out_dir=m.out_dir,
            eval_source=eval_source,
            metadata={"hook_name": m.hook},
        )
        for m, source, eval_source in zip(params.members, train_sources, eval_sources, strict=True)
    ]


def build_members(params: MultiTrainParams, train_cfg: TrainConfig, ctx: JobContext) -> list[Any]:
    """The group's members with their sources: a multi-hook activation set or the model streamed."""
    if isinstance(params.source, StreamSource):
        return _members_from_stream(params, params.source, train_cfg, ctx)
    return _members_from_store(params, params.source, train_cfg)


def run(params: MultiTrainParams, ctx: JobContext) -> dict[str, Any]:
    """Train (or resume) every SAE of the group; results are keyed by training id."""
    from mistudio_tui.ml.sae.multi import train_multi

    train_cfg = params.train_config()
    members = build_members(params, train_cfg, ctx)
    try:
        summaries = train_multi(members, train_cfg, ctx, resume=params.resume)
    except JobCancelled:
        checkpoints = {str(m.training_id): latest_checkpoint_step(m.out_dir) for m in params.members}
        raise JobCancelled({"checkpoints": checkpoints}) from None
    reshuffled = isinstance(params.source, StreamSource)
    trainings: dict[str, Any] = {}
    for spec in params.members:
        summary = summaries[spec.training_id]
        if reshuffled and summary.get("eval"):
            summary["eval"]["source"] = "stream_reshuffled"
        ce = evaluate_ce(params.eval, train_cfg.device, spec.out_dir, spec.hook, ctx)
        trainings[str(spec.training_id)] = training_result(summary, ce)
    return {"trainings": trainings}
