"""The layouts people download besides SAELens's own: Gemma Scope (params.npz), Gemma Scope 2 (params.safetensors)
and Llama Scope (hyperparams.json + checkpoints/final.safetensors), converted the way SAELens's pretrained loaders
convert them (JumpReLU SAEs that do not subtract b_dec from the input)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mistudio_tui.ml.sae.base import SparseAutoencoder
from mistudio_tui.ml.sae.formats.files import (
    SAEFormatError,
    build_sae,
    read_json,
    read_safetensors,
    require_file,
    take,
)

GEMMA_SCOPE_FILE = "params.npz"
GEMMA_SCOPE_2_FILE = "params.safetensors"
GEMMA_SCOPE_2_CFG = "config.json"
LLAMA_SCOPE_CFG = "hyperparams.json"
LLAMA_SCOPE_WEIGHTS = "checkpoints/final.safetensors"
_LAYER = re.compile(r"layer_?(\d+)", re.IGNORECASE)
_GEMMA_2_MODEL = re.compile(r"gemma-scope-(2b|9b|27b)-(pt|it)")
JUMPRELU_TENSORS = ("W_enc", "W_dec", "b_enc", "b_dec", "threshold")


def _jumprelu_sae(tensors: dict[str, Tensor], path: Path, device: Any, dtype: Any) -> SparseAutoencoder:
    """A JumpReLU SAE (no b_dec on the input) from SAELens-named tensors, checked for shape."""
    if "W_enc" not in tensors:
        raise SAEFormatError(f"{path} has no tensor 'W_enc' (found: {', '.join(sorted(tensors)) or 'none'})")
    d_in, d_sae = (int(n) for n in tensors["W_enc"].shape)
    shapes = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_enc": (d_sae,), "b_dec": (d_in,)}
    shapes["threshold"] = (d_sae,)
    checked = {name: take(tensors, name, shape, path).to(torch.float32) for name, shape in shapes.items()}
    # SAELens's inference JumpReLU is relu(pre) * (pre > t): a negative t acts as 0
    checked["threshold"] = checked["threshold"].clamp(min=0.0)
    return build_sae(checked, "jumprelu", device, dtype, apply_b_dec=False)


def _drop_unit_scaling(tensors: dict[str, Tensor], path: Path) -> None:
    """Some Gemma Scope files carry a `scaling_factor` of ones, which SAELens drops; any other value is refused."""
    scale = tensors.pop("scaling_factor", None)
    if scale is not None and not torch.equal(scale, torch.ones_like(scale)):
        raise SAEFormatError(f"{path}: a 'scaling_factor' other than ones is not supported")


def _hook(kind: str, layer: int | None, origin: str, path: Path) -> str | None:
    if kind in ("att", "attn_out"):
        raise SAEFormatError(
            f"{path}: {origin} is an attention SAE on per-head outputs (hook_z), which miStudio's hooks do not provide"
        )
    if layer is None:
        return None
    return {"res": f"blocks.{layer}.hook_resid_post", "resid_post": f"blocks.{layer}.hook_resid_post"}.get(
        kind, f"blocks.{layer}.hook_mlp_out" if kind in ("mlp", "mlp_out") else None
    )


def _layer(origin: str) -> int | None:
    found = _LAYER.findall(origin)
    return int(found[-1]) if found else None


def load_gemma_scope(
    folder: Path, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None, origin: str = ""
) -> tuple[SparseAutoencoder, dict[str, Any]]:
    """Gemma Scope's params.npz (W_enc, W_dec, b_enc, b_dec, threshold), read without pickle."""
    folder = Path(folder)
    path = require_file(folder / GEMMA_SCOPE_FILE)
    try:
        with np.load(path, allow_pickle=False) as data:
            tensors = {("W_" + key[2:] if key.startswith("w_") else key): torch.from_numpy(data[key]) for key in data}
    except (ValueError, OSError, EOFError) as exc:
        raise SAEFormatError(f"{path} is not a readable .npz archive of arrays ({exc})") from exc
    _drop_unit_scaling(tensors, path)
    unexpected = sorted(set(tensors) - set(JUMPRELU_TENSORS))
    if unexpected:
        raise SAEFormatError(f"{path}: arrays {', '.join(unexpected)} are not part of a Gemma Scope JumpReLU SAE")
    origin = origin or str(folder)
    if "embedding" in origin:
        raise SAEFormatError(
            f"{path}: Gemma Scope embedding SAEs are not supported (they read TransformerLens's embed)"
        )
    kinds = re.findall(r"gemma-scope-[^/]*-(res|mlp|att)\b", origin)
    sae = _jumprelu_sae(tensors, path, device, dtype)
    model = _GEMMA_2_MODEL.search(origin)
    metadata = {
        "model_name": f"google/gemma-2-{model.group(1)}{'-it' if model.group(2) == 'it' else ''}" if model else None,
        "hook_name": _hook(kinds[-1], _layer(origin), origin, path) if kinds else None,
        "context_size": 1024,
        "dataset_path": "monology/pile-uncopyrighted",
    }
    return sae, metadata


def load_gemma_scope_2(
    folder: Path, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None, origin: str = ""
) -> tuple[SparseAutoencoder, dict[str, Any]]:
    """Gemma Scope 2's params.safetensors (w_enc, w_dec, b_enc, b_dec, threshold) and its optional config.json."""
    folder = Path(folder)
    path = folder / GEMMA_SCOPE_2_FILE
    raw = read_safetensors(path)
    cfg_path = folder / GEMMA_SCOPE_2_CFG
    cfg = read_json(cfg_path) if cfg_path.is_file() else {}
    architecture = cfg.get("architecture", "jump_relu")
    if architecture != "jump_relu":
        raise SAEFormatError(f"{cfg_path}: architecture {architecture!r} is not supported; expected jump_relu")
    origin = origin or str(folder)
    if "affine_skip_connection" in raw or "transcoder" in origin or "clt" in origin.split("/")[-1]:
        raise SAEFormatError(f"{path}: Gemma Scope 2 transcoders are not SAEs this loader imports")
    tensors = {("W_" + key[2:] if key.startswith("w_") else key): tensor for key, tensor in raw.items()}
    unexpected = sorted(set(tensors) - set(JUMPRELU_TENSORS))
    if unexpected:
        raise SAEFormatError(f"{path}: tensors {', '.join(unexpected)} are not part of a Gemma Scope 2 JumpReLU SAE")
    hook_in = str(cfg.get("hf_hook_point_in") or "")
    kind = next((k for k in ("resid_post", "attn_out", "mlp_out") if k in origin), None)
    if kind is None and hook_in:
        kind = "attn_out" if "o_proj" in hook_in else "mlp_out" if "feedforward" in hook_in else "resid_post"
    sae = _jumprelu_sae(tensors, path, device, dtype)
    found = re.search(r"gemma-scope-2-([^/]+)", origin)
    model = cfg.get("model_name") or (f"gemma-3-{found.group(1)}" if found else None)
    model = f"google/{model}" if model and "/" not in model else model
    metadata = {
        "model_name": model,
        "hook_name": _hook(kind, _layer(origin), origin, path) if kind else None,
        "hf_hook_name": hook_in or None,
    }
    return sae, metadata


def llama_scope_scaling(hyper: dict[str, Any], path: Path) -> tuple[int, int, float]:
    """(d_model, d_sae, the input scaling factor sqrt(d_model) / average input norm) of a Llama Scope SAE."""
    d_model, d_sae = hyper.get("d_model"), hyper.get("d_sae")
    norms = hyper.get("dataset_average_activation_norm")
    mean_in = norms.get("in") if isinstance(norms, dict) else None
    for key, value in (("d_model", d_model), ("d_sae", d_sae)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise SAEFormatError(f"{path}: field {key!r} should be a positive integer, found {value!r}")
    if isinstance(mean_in, bool) or not isinstance(mean_in, (int, float)) or not mean_in > 0:
        raise SAEFormatError(
            f"{path}: field 'dataset_average_activation_norm.in' should be a positive number, found {mean_in!r}"
        )
    return int(d_model), int(d_sae), math.sqrt(d_model) / float(mean_in)  # type: ignore[arg-type]


def load_llama_scope(
    folder: Path,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    norm_scaling_factor: float | None = None,
) -> tuple[SparseAutoencoder, dict[str, Any]]:
    """Llama Scope: a JumpReLU SAE with one threshold, trained on inputs scaled to mean norm sqrt(d_model).

    As SAELens does: the threshold is multiplied by the hyperparams' scaling factor, then the factor (the
    catalogue's, when given) is folded into W_enc, W_dec and b_dec.
    """
    folder = Path(folder)
    cfg_path, path = folder / LLAMA_SCOPE_CFG, folder / LLAMA_SCOPE_WEIGHTS
    hyper = read_json(cfg_path)
    for key, expected in (("act_fn", "jumprelu"), ("norm_activation", "dataset-wise")):
        if hyper.get(key, expected) != expected:
            raise SAEFormatError(f"{cfg_path}: {key} {hyper[key]!r} is not supported; expected {expected}")
    hook_in, hook_out = hyper.get("hook_point_in"), hyper.get("hook_point_out")
    if hook_out not in (None, hook_in):
        raise SAEFormatError(f"{cfg_path}: hook_point_out {hook_out!r} differs from hook_point_in: a transcoder")
    threshold = hyper.get("jump_relu_threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise SAEFormatError(f"{cfg_path}: field 'jump_relu_threshold' should be a number, found {threshold!r}")
    d_model, d_sae, factor = llama_scope_scaling(hyper, cfg_path)
    raw = read_safetensors(path)
    shapes: dict[str, tuple[int, ...]] = {"encoder.weight": (d_sae, d_model), "decoder.weight": (d_model, d_sae)}
    shapes.update({"encoder.bias": (d_sae,), "decoder.bias": (d_model,)})
    raw = {name: take(raw, name, shape, path).to(torch.float32) for name, shape in shapes.items()}
    fold = float(norm_scaling_factor) if norm_scaling_factor else factor
    tensors = {
        "W_enc": raw["encoder.weight"].T * fold,
        "W_dec": raw["decoder.weight"].T / fold,
        "b_enc": raw["encoder.bias"],
        "b_dec": raw["decoder.bias"] / fold,
        "threshold": torch.ones(d_sae) * (threshold * factor),
    }
    sae = _jumprelu_sae(tensors, path, device, dtype)
    metadata = {
        "model_name": "meta-llama/Llama-3.1-8B",
        "hook_name": hook_in,
        "context_size": 1024,
        "dataset_path": "cerebras/SlimPajama-627B",
        "folded": [f"normalize_activations (x{fold:g})"],
    }
    return sae, metadata
