"""Worker side of model jobs: download (hub) or check (folder) a model and describe its architecture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mistudio_tui.jobs.context import JobContext
from mistudio_tui.jobs.kinds.models import ModelAddParams


def describe_folder(
    path: Path, dtype: str = "float32", quantization: str | None = None, trust_remote_code: bool = False
) -> dict[str, Any]:
    """The LanguageModel fields of a model folder: sizes, family, hook points, module tree, memory estimate."""
    from mistudio_tui.ml.models.architecture import describe_config
    from mistudio_tui.ml.models.loading import check_weight_files, is_causal_lm_config, load_config
    from mistudio_tui.ml.models.memory import estimate_memory

    config = load_config(path, trust_remote_code=trust_remote_code)
    check_weight_files(path)
    description = describe_config(config)
    try:
        description["memory_estimate"] = estimate_memory(config, dtype, quantization)
    except ValueError:
        description["memory_estimate"] = None
    return {
        "model_type": description.get("model_type"),
        "family": description.get("family"),
        "d_model": description.get("d_model"),
        "n_layers": description.get("n_layers"),
        "n_params": description.get("total_params"),
        "vocab_size": description.get("vocab_size"),
        "is_causal_lm": bool(is_causal_lm_config(config)),
        "architecture": description,
    }


def check_quantization(quantization: str | None, dtype: str = "float32") -> None:
    """Refuse 8-bit / 4-bit quantization on a machine without CUDA (or without bitsandbytes), before any download."""
    if quantization is None:
        return
    from mistudio_tui.ml.device import parse_dtype, pick_device
    from mistudio_tui.ml.models.loading import quantization_config

    quantization_config(quantization, parse_dtype(dtype), pick_device("auto"))


def estimate(
    source: str,
    dtype: str = "float32",
    quantization: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> dict[str, Any]:
    """What loading a model would take, from its config alone (a hub model's config.json is all that is fetched)."""
    from mistudio_tui.ml.device import pick_device
    from mistudio_tui.ml.models.architecture import describe_config
    from mistudio_tui.ml.models.loading import load_config
    from mistudio_tui.ml.models.memory import available_memory, estimate_memory

    config = load_config(source, revision=revision, trust_remote_code=trust_remote_code)
    description = describe_config(config)
    device = pick_device("auto")
    problem = None
    try:
        check_quantization(quantization, dtype)
    except ValueError as exc:
        problem = str(exc)
    need = estimate_memory(config, dtype, quantization)
    free = available_memory(device)
    return {
        "source": source,
        "model_type": description.get("model_type"),
        "d_model": description.get("d_model"),
        "n_layers": description.get("n_layers"),
        "n_params": description.get("total_params"),
        "dtype": dtype,
        "quantization": quantization,
        "memory_estimate": need,
        "device": str(device),
        "available_memory": free,
        "fits": None if free is None else need <= free,
        "problem": problem,
    }


def add(params: ModelAddParams, ctx: JobContext) -> dict[str, Any]:
    """Download a hub model into its folder (resumable), then inspect it on the meta device."""
    check_quantization(params.quantization, params.dtype)
    path = params.path
    if params.source_type == "hub":
        from mistudio_tui.ml.hub import download_repo

        ctx.log(f"downloading {params.source} into {path}")
        download_repo(params.source, path, repo_type="model", revision=params.revision, ctx=ctx)
    ctx.progress(0, None, text="inspecting the architecture")
    resource = describe_folder(path, params.dtype, params.quantization, params.trust_remote_code)
    ctx.log(
        f"{resource['model_type']}: d_model {resource['d_model']}, {resource['n_layers']} layers, "
        f"{resource['n_params']:,} parameters"
    )
    return {"resource": resource}
