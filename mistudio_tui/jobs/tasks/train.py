"""Worker side of SAE training: shuffled activations in, SAELens folder out, evaluation at the end."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from mistudio_tui.jobs.context import JobCancelled, JobContext
from mistudio_tui.jobs.tasks.sae import ce_loss_metrics
from mistudio_tui.ml.sae.checkpoint_files import latest_checkpoint_step
from mistudio_tui.ml.sae.config import sae_config, train_config


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Train (or resume) one SAE; on cancel a checkpoint is kept and the run can be resumed."""
    from mistudio_tui.ml.activations.store import ActivationStore, store_source
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


def evaluate_ce(
    params: dict[str, Any], out_dir: Path, hook: str, ctx: JobContext, hook_out: str | None = None
) -> dict[str, float]:
    """CE loss with the SAE (a transcoder: at its output hook) spliced in vs clean vs zero-ablated, for causal LMs."""
    device = (params.get("train") or {}).get("device") or "auto"
    return ce_loss_metrics(params.get("eval") or {}, out_dir, hook, device, ctx, hook_out=hook_out)
