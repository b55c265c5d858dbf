"""How much memory a model's weights need, from an empty (meta-device) instance: nothing is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mistudio_tui.ml.device import parse_dtype

if TYPE_CHECKING:
    from transformers.pytorch_utils import Conv1D
from mistudio_tui.ml.models.loading import QUANTIZATIONS, auto_class_for, dtype_kwarg, load_config

# bitsandbytes keeps a float32 scale per output row (8-bit) or per 64 weights (4-bit without double quant).
_NF4_BLOCK = 64


def _as_config(config: Any, trust_remote_code: bool = False) -> Any:
    if isinstance(config, (str, Path)):
        return load_config(config, trust_remote_code=trust_remote_code)
    return config


def build_on_meta(config: Any, dtype: str | torch.dtype = "float32", trust_remote_code: bool = False) -> nn.Module:
    """The model a config describes, built on the meta device (shapes and dtypes only, no weights)."""
    config = _as_config(config, trust_remote_code)
    auto_class = auto_class_for(config)
    kwargs = {dtype_kwarg(): parse_dtype(dtype), "trust_remote_code": trust_remote_code}
    with torch.device("meta"):
        model: nn.Module = auto_class.from_config(config, **kwargs)
    return model


def _quantizable(model: nn.Module) -> list[nn.Linear | Conv1D]:
    """The linear layers bitsandbytes would quantize (all but the output embedding)."""
    from transformers.pytorch_utils import Conv1D

    get_out = getattr(model, "get_output_embeddings", None)
    skip = get_out() if callable(get_out) else None
    return [m for m in model.modules() if isinstance(m, (nn.Linear, Conv1D)) and m is not skip]


def _bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def estimate_memory(config: Any, dtype: str | torch.dtype = "float32", quantization: str | None = None) -> int:
    """Bytes the loaded weights and buffers take, from the real parameter count (activations not included)."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; expected none, 8bit or 4bit")
    model = build_on_meta(config, dtype)
    total = _bytes(model.parameters()) + _bytes(model.buffers())
    if quantization is None:
        return int(total)
    for module in _quantizable(model):
        weight = module.weight
        n = weight.numel()
        if quantization == "8bit":
            quantized = n + 4 * weight.shape[0]
        else:
            quantized = n // 2 + 4 * -(-n // _NF4_BLOCK)
        total += quantized - n * weight.element_size()
    return int(total)


def available_memory(device: str | torch.device) -> int | None:
    """Free bytes on a CUDA device, or available system RAM for the CPU; None when unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            free, _total = torch.cuda.mem_get_info(device)
        except (RuntimeError, AssertionError):
            return None
        return int(free)
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)
