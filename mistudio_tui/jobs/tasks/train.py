"""Worker side of SAE training: shuffled activations in, SAELens folder out, evaluation at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mistudio_tui.jobs.checkpoint_files import latest_checkpoint_step
from mistudio_tui.jobs.context import JobCancelled, JobContext

ARCH_NAMES = {"relu": "standard"}  # user-facing name -> SAELens name
HELD_OUT_FRACTION = 0.05
CE_EVAL_SEQUENCES = 32


def sae_config(params: dict[str, Any]) -> Any:
    from mistudio_tui.ml.sae.config import SAEConfig

    sae = dict(params["sae"])
    sae["architecture"] = ARCH_NAMES.get(sae.get("architecture", "topk"), sae.get("architecture"))
    if sae["architecture"] not in ("topk", "batchtopk", "jumprelu"):
        sae.pop("k", None)
    return SAEConfig.from_dict(sae)


def train_config(params: dict[str, Any]) -> Any:
    from mistudio_tui.ml.sae.config import TrainConfig

    train = dict(params["train"])
    train["metadata"] = {k: v for k, v in (params.get("metadata") or {}).items() if v is not None}
    return TrainConfig.from_dict(train)


def run(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Train (or resume) one SAE; on cancel a checkpoint is kept and the run can be resumed."""
    from mistudio_tui.ml.activations.store import ActivationStore, ShuffledActivationSource, held_out_split
    from mistudio_tui.ml.sae.trainer import train_sae

    out_dir = Path(params["out_dir"])
    sae_cfg, train_cfg = sae_config(params), train_config(params)
    source_spec = params["source"]
    if source_spec.get("type") != "activations":
        raise ValueError(f"unknown training source {source_spec.get('type')!r}")
    store = ActivationStore(Path(source_spec["dir"]))
    hook = source_spec.get("hook") or store.hooks[0]
    train_rows, held_rows = held_out_split(store, fraction=HELD_OUT_FRACTION)
    source = ShuffledActivationSource(store, hook, seed=train_cfg.seed, rows=train_rows)
    eval_source = ShuffledActivationSource(store, hook, seed=train_cfg.seed + 1, rows=held_rows, prefetch=False)
    try:
        summary = train_sae(
            sae_cfg, train_cfg, source, out_dir, ctx, resume=bool(params.get("resume")), eval_source=eval_source
        )
    except JobCancelled:
        raise JobCancelled({"checkpoint": latest_checkpoint_step(out_dir)}) from None
    evaluation = dict(summary.get("eval") or {})
    ce = evaluate_ce(params, out_dir, hook, ctx)
    if ce:
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


def evaluate_ce(params: dict[str, Any], out_dir: Path, hook: str, ctx: JobContext) -> dict[str, float]:
    """CE loss with the SAE spliced in vs clean vs zero-ablated, on a few sequences, for causal LMs."""
    info = params.get("eval") or {}
    if not (info.get("is_causal_lm") and info.get("model_path") and info.get("tokenization_dir")):
        return {}
    import torch

    from mistudio_tui.ml.data.token_store import TokenStore
    from mistudio_tui.ml.models.hooks import patch_activation
    from mistudio_tui.ml.models.loading import load_model
    from mistudio_tui.ml.sae.evaluate import evaluate_ce_loss
    from mistudio_tui.ml.sae.formats import load_any

    ctx.progress(0, None, text="evaluating CE loss with the SAE spliced in")
    loaded = load_model(
        info["model_path"],
        dtype=info.get("model_dtype") or "float32",
        device=(params.get("train") or {}).get("device") or "auto",
    )
    sae = load_any(out_dir, device=loaded.device).sae.eval()
    tokens = TokenStore(Path(info["tokenization_dir"]))
    start = max(len(tokens) - CE_EVAL_SEQUENCES, 0)  # the end of the tokenization: least likely trained on

    def batches():
        for _, rows, lengths in tokens.iter_batches(8, start=start):
            ids = torch.as_tensor(rows, dtype=torch.long)
            mask = (torch.arange(ids.shape[1])[None, :] < torch.as_tensor(lengths)[:, None]).long()
            yield ids.to(loaded.device), mask.to(loaded.device)

    def patch(fn):
        return patch_activation(loaded.model, hook, fn)

    bos = tokens.meta.get("bos_token_id") if tokens.meta.get("prepend_bos") else None
    result = evaluate_ce_loss(loaded.model, sae, patch, batches(), bos_token_id=bos, ctx=ctx)
    return {k if k.startswith(("ce_", "kl_")) else f"ce_eval_{k}": float(v) for k, v in result.items()}
