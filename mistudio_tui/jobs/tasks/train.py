"""Worker side of SAE training: shuffled activations in, SAELens folder out, evaluation at the end."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from mistudio_tui.jobs.context import JobCancelled, JobContext
from mistudio_tui.jobs.kinds.train import EvalModel, TrainParams
from mistudio_tui.jobs.tasks.sae import ce_loss_metrics
from mistudio_tui.ml.sae.checkpoint_files import latest_checkpoint_step


def run(params: TrainParams, ctx: JobContext) -> dict[str, Any]:
    """Train (or resume) one SAE; on cancel a checkpoint is kept and the run can be resumed."""
    from mistudio_tui.ml.activations.store import ActivationStore, store_source
    from mistudio_tui.ml.sae.trainer import train_sae

    out_dir, train_cfg, source_spec = params.out_dir, params.train_config(), params.source
    if source_spec.dir is None:
        raise ValueError(f"{out_dir.name}: the activation set this run trains on is gone")
    folder = str(source_spec.dir)
    hook = source_spec.hook or ActivationStore(source_spec.dir).hooks[0]
    hook_out = source_spec.hook_out  # a transcoder's target hook
    nproc = params.nproc or 1
    try:
        if nproc > 1:
            from mistudio_tui.ml.sae.distributed import DistributedRun, train_distributed

            sources = partial(store_source, folder, hook, train_cfg.seed)
            run = DistributedRun(
                params.sae, train_cfg, out_dir, sources, partial(sources, held_out=True), resume=params.resume
            )
            summary = train_distributed(run, ctx, nproc)
        else:
            source, eval_source = (
                store_source(folder, hook, train_cfg.seed, hook_out=hook_out),
                store_source(folder, hook, train_cfg.seed, held_out=True, hook_out=hook_out),
            )
            summary = train_sae(
                params.sae, train_cfg, source, out_dir, ctx, resume=params.resume, eval_source=eval_source
            )
    except JobCancelled:
        raise JobCancelled({"checkpoint": latest_checkpoint_step(out_dir)}) from None
    return training_result(summary, evaluate_ce(params.eval, train_cfg.device, out_dir, hook, ctx, hook_out))


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
    info: EvalModel, device: str, out_dir: Path, hook: str, ctx: JobContext, hook_out: str | None = None
) -> dict[str, float]:
    """CE loss with the SAE (a transcoder: at its output hook) spliced in vs clean vs zero-ablated, for causal LMs."""
    return ce_loss_metrics(info, out_dir, hook, device or "auto", ctx, hook_out=hook_out)
