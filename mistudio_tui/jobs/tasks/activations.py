"""Worker side of activation jobs: extract hook activations into shards, or register imported ones."""

from __future__ import annotations

from typing import Any

from mistudio_tui.jobs.context import JobContext
from mistudio_tui.jobs.kinds.activations import ExtractParams, ImportParams, SynthParams


def _resource(manifest: dict[str, Any]) -> dict[str, Any]:
    hooks = list(manifest.get("hooks") or [])
    dims = manifest.get("dims") or {}
    d_in = manifest.get("d_in") or (dims.get(hooks[0]) if hooks else None)
    slim = {k: v for k, v in manifest.items() if k != "shards"}
    slim["n_shards"] = len(manifest.get("shards") or [])
    return {"n_tokens": int(manifest.get("n_tokens") or 0), "d_in": d_in, "hooks": hooks, "manifest": slim}


def extract(params: ExtractParams, ctx: JobContext) -> dict[str, Any]:
    """Run the model over the tokenization and store activations of the requested hook points."""
    from mistudio_tui.ml.activations.extract import extract_activations
    from mistudio_tui.ml.data.token_store import TokenStore
    from mistudio_tui.ml.models.loading import load_model

    loaded = load_model(
        params.model_path,
        dtype=params.model_dtype,
        quantization=params.quantization,
        device=params.device,
        trust_remote_code=params.trust_remote_code,
    )
    ctx.started(str(loaded.device))
    manifest = extract_activations(
        loaded,
        TokenStore(params.tokenization_dir),
        list(params.hooks),
        params.out_dir,
        params.n_tokens,
        batch_size=params.batch_size,
        shard_tokens=params.shard_tokens,
        store_dtype=params.store_dtype,
        exclude_bos=params.exclude_bos,
        exclude_special=params.exclude_special,
        ctx=ctx,
    )
    if int(manifest.get("n_tokens") or 0) == 0:
        raise ValueError("no activations were extracted: the tokenization has no usable positions")
    return {"resource": _resource(manifest)}


def import_set(params: ImportParams, ctx: JobContext) -> dict[str, Any]:
    """Register activations computed elsewhere (linked, not copied, where possible)."""
    from mistudio_tui.ml.activations.importing import import_activations

    ctx.progress(0, None, text=f"checking {params.path}")
    manifest = import_activations(params.path, params.out_dir, key=params.key)
    return {"resource": _resource(manifest)}


def synth(params: SynthParams, ctx: JobContext) -> dict[str, Any]:
    """Generate a synthetic activation set and its true features with sae_lens.synthetic."""
    from mistudio_tui.ml.activations.synthetic import build_synthetic_set

    manifest = build_synthetic_set(params.options, params.out_dir, ctx=ctx)
    return {"resource": _resource(manifest)}
