"""Worker side of SAE training: shuffled activations in, SAELens folder out, evaluation at the end."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from mistudio_tui.jobs.checkpoint_files import latest_checkpoint_step
from mistudio_tui.jobs.context import JobCancelled, JobContext
from mistudio_tui.jobs.tasks.sae import HELD_OUT_FRACTION, ce_loss_metrics

ARCH_NAMES = {"relu": "standard"}  # user-facing name -> SAELens name


def sae_config(params: dict[str, Any]) -> Any:
    from mistudio_tui.ml.sae.config import SAEConfig

    sae = dict(params["sae"])
    sae["architecture"] = ARCH_NAMES.get(sae.get("architecture", "topk"), sae.get("architecture"))
    if sae["architecture"] not in ("topk", "batchtopk", "jumprelu", "matryoshka"):
        sae.pop("k", None)
    return SAEConfig.from_dict(sae)


def train_config(params: dict[str, Any]) -> Any:
    from mistudio_tui.ml.sae.config import TrainConfig

    train = dict(params["train"])
    train["metadata"] = {k: v for k, v in (params.get("metadata") or {}).items() if v is not None}
    return TrainConfig.from_dict(train)


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Train (or resume) one SAE; on cancel a checkpoint is kept and the run can be resumed."""
    from mistudio_tui.ml.activations.store import ActivationStore
    from mistudio_tui.ml.sae.trainer import train_sae

    out_dir = Path(params["out_dir"])
    sae_cfg, train_cfg = sae_config(params), train_config(params)
    source_spec = params["source"]
    if source_spec.get("type") != "activations":
        raise ValueError(f"unknown training source {source_spec.get('type')!r}")
    folder = source_spec["dir"]
    hook = source_spec.get("hook") or ActivationStore(Path(folder)).hooks[0]
    hook_out = source_spec.get("hook_out")  # a transcoder's target hook
    resume = bool(params.get("resume"))
    try:
        if int(params.get("nproc") or 1) > 1:
            if hook_out:
                raise ValueError("transcoders train in one process; leave out --nproc")
            from mistudio_tui.ml.sae.distributed import DistributedRun, train_distributed

            sources = partial(store_source, folder, hook, train_cfg.seed)
            run = DistributedRun(sae_cfg, train_cfg, out_dir, sources, partial(sources, held_out=True), resume=resume)
            summary = train_distributed(run, ctx, int(params["nproc"]))
        else:
            source, eval_source = (
                store_source(folder, hook, train_cfg.seed, hook_out=hook_out),
                store_source(folder, hook, train_cfg.seed, held_out=True, hook_out=hook_out),
            )
            summary = train_sae(sae_cfg, train_cfg, source, out_dir, ctx, resume=resume, eval_source=eval_source)
    except JobCancelled:
        raise JobCancelled({"checkpoint": latest_checkpoint_step(out_dir)}) from None
    return training_result(summary, evaluate_ce(params, out_dir, hook, ctx, hook_out))


def training_result(summary: dict[str, Any], ce: dict[str, float]) -> dict[str, Any]:
    """The job result of one trained SAE: its Training row fields and the scalar summary."""
    evaluation = dict(summary.get("eval") or {})
    evaluation.update(ce)
    final = summary.get("final_metrics") or {}
    return {
        "resource": {
            "evaluation": evaluation,
            "loss": final.get("loss"),
            "l0": evaluation.get("l0", final.get("l0")),
            "explained_variance": evaluation.get("explained_variance", final.get("explained_variance")),
            "dead_fraction": evaluation.get("dead_fraction", final.get("dead_fraction")),
            "steps": summary.get("steps"),
            "tokens": summary.get("tokens"),
        },
        "summary": {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool))},
    }


def store_source(folder: str, hook: str, seed: int, held_out: bool = False, hook_out: str | None = None) -> Any:
    """The shuffled training rows (or the held-out rows) of one hook of an activation set; with `hook_out`,
    [hook | hook_out] rows of the same tokens (a transcoder's input and target)."""
    from mistudio_tui.ml.activations.store import ActivationStore, ShuffledActivationSource, held_out_split
    from mistudio_tui.ml.batches import ConcatenatedSource

    store = ActivationStore(Path(folder))
    train_rows, held_rows = held_out_split(store, fraction=HELD_OUT_FRACTION)
    # the same seed and rows give every hook the same token order, so the columns line up
    seed, rows, prefetch = (seed + 1, held_rows, False) if held_out else (seed, train_rows, True)
    hooks = [hook] if hook_out is None else [hook, hook_out]
    sources = [ShuffledActivationSource(store, name, seed=seed, rows=rows, prefetch=prefetch) for name in hooks]
    return sources[0] if hook_out is None else ConcatenatedSource(sources)


def evaluate_ce(
    params: dict[str, Any], out_dir: Path, hook: str, ctx: JobContext, hook_out: str | None = None
) -> dict[str, float]:
    """CE loss with the SAE (a transcoder: at its output hook) spliced in vs clean vs zero-ablated, for causal LMs."""
    device = (params.get("train") or {}).get("device") or "auto"
    return ce_loss_metrics(params.get("eval") or {}, out_dir, hook, device, ctx, hook_out=hook_out)
