"""Careful readers for SAE files: every failure names the file (and key) and says what was expected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from mistudio_tui.ml.device import parse_dtype
from mistudio_tui.ml.sae.architectures import sae_from_tensors
from mistudio_tui.ml.sae.base import SparseAutoencoder
from mistudio_tui.ml.sae.config import SAEConfig


class SAEFormatError(ValueError):
    """An SAE file is missing, damaged or not laid out as its format requires."""


def require_file(path: Path) -> Path:
    """`path` if it is a file, else FileNotFoundError naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    return path


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`."""
    require_file(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SAEFormatError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise SAEFormatError(f"{path} should hold a JSON object, found {type(data).__name__}")
    return data


def json_object(parent: dict[str, Any], key: str) -> dict[str, Any]:
    """`parent[key]` when it is a JSON object, else an empty one."""
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """All tensors of a safetensors file, on the CPU."""
    require_file(path)
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise SAEFormatError(f"{path} is not a readable safetensors file ({exc})") from exc


def read_torch_state(path: Path) -> dict[str, Tensor]:
    """A state dict saved with torch.save, loaded with weights_only=True."""
    require_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SAEFormatError(f"{path} cannot be loaded as a torch state dict ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise SAEFormatError(f"{path} should hold a state dict, found {type(state).__name__}")
    return state


def take(tensors: dict[str, Tensor], key: str, shape: tuple[int, ...], path: Path) -> Tensor:
    """tensors[key], checked to exist and have `shape`."""
    if key not in tensors:
        raise SAEFormatError(f"{path} has no tensor {key!r} (found: {', '.join(sorted(tensors)) or 'none'})")
    tensor = tensors[key]
    if not isinstance(tensor, Tensor):
        raise SAEFormatError(f"{path}: entry {key!r} is not a tensor")
    if tuple(tensor.shape) != tuple(shape):
        raise SAEFormatError(f"{path}: tensor {key!r} has shape {tuple(tensor.shape)}, expected {tuple(shape)}")
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise SAEFormatError(f"{path}: tensor {key!r} holds {bad:,} NaN or infinite value(s); it cannot be used")
    return tensor


def config_int(cfg: dict[str, Any], key: str, path: Path, default: int | None = None) -> int:
    """A positive integer field of a config file."""
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SAEFormatError(f"{path}: field {key!r} should be a positive integer, found {value!r}")
    return value


def build_sae(
    tensors: dict[str, Tensor],
    architecture: str,
    device: Any,
    dtype: Any,
    k: int | None = None,
    apply_b_dec: bool = True,
) -> SparseAutoencoder:
    """An SAE in eval mode holding `tensors` (SAELens names), on `device`, in `dtype` (None: W_enc's stored dtype)."""
    d_in, d_sae = (int(n) for n in tensors["W_enc"].shape)
    cfg = SAEConfig(d_in, architecture, d_sae, k=k or min(32, d_sae), apply_b_dec_to_input=apply_b_dec)
    cfg.normalize_activations = False  # imported weights take raw activations
    stored = tensors["W_enc"].dtype
    sae = sae_from_tensors(cfg, tensors)
    sae.to(device=torch.device(device), dtype=parse_dtype(dtype) if dtype is not None else stored)
    return sae.eval()
