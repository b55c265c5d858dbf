"""Import dictionary_learning SAEs: ae.pt (a state dict) + config.json with trainer.dict_class."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mistudio_tui.ml.device import parse_dtype
from mistudio_tui.ml.sae.architectures import sae_from_tensors
from mistudio_tui.ml.sae.base import SparseAutoencoder
from mistudio_tui.ml.sae.config import SAEConfig
from mistudio_tui.ml.sae.formats.files import SAEFormatError, json_object, read_json, read_torch_state, take

WEIGHTS_FILE = "ae.pt"
CFG_FILE = "config.json"
SUPPORTED = ("AutoEncoder", "AutoEncoderTopK", "BatchTopKSAE", "JumpReluAutoEncoder")


def _dict_class(trainer: dict[str, Any], state: dict[str, Tensor], path: Path) -> str:
    name = trainer.get("dict_class")
    if name is None:
        if "W_enc" in state and "threshold" in state:
            name = "JumpReluAutoEncoder"
        elif "b_dec" in state and "k" in state:
            name = "AutoEncoderTopK"
        elif "bias" in state:
            name = "AutoEncoder"
    if name not in SUPPORTED:
        expected = ", ".join(SUPPORTED)
        raise SAEFormatError(f"{path}: dictionary class {name!r} is not supported; expected one of {expected}")
    return str(name)


def _linear_layout(state: dict[str, Tensor], path: Path, bias_key: str) -> tuple[int, int, dict[str, Tensor]]:
    """encoder.weight [F, D], encoder.bias [F], decoder.weight [D, F] and the pre-encoder bias -> SAELens tensors."""
    if "encoder.weight" not in state:
        raise SAEFormatError(f"{path} has no tensor 'encoder.weight' (found: {', '.join(sorted(state)) or 'none'})")
    d_sae, d_in = state["encoder.weight"].shape
    tensors = {
        "W_enc": take(state, "encoder.weight", (d_sae, d_in), path).t().contiguous(),
        "b_enc": take(state, "encoder.bias", (d_sae,), path),
        "W_dec": take(state, "decoder.weight", (d_in, d_sae), path).t().contiguous(),
        "b_dec": take(state, bias_key, (d_in,), path),
    }
    return int(d_in), int(d_sae), tensors


def _hook_name(trainer: dict[str, Any]) -> str | None:
    """SAEBench's submodule names (`resid_post_layer_12`) as hook points (`blocks.12.hook_resid_post`)."""
    name = trainer.get("submodule_name")
    found = re.fullmatch(r"(resid_post|mlp_out|attn_out)_layer_(\d+)", str(name))
    return f"blocks.{found.group(2)}.hook_{found.group(1)}" if found else name


def _k(state: dict[str, Tensor], trainer: dict[str, Any], path: Path) -> int:
    k = int(state["k"]) if "k" in state else trainer.get("k")
    if not isinstance(k, int) or k <= 0:
        raise SAEFormatError(f"{path}: no positive 'k' in the state dict or config.json, found {k!r}")
    return k


def load_dictionary_learning(
    folder: Path, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None
) -> tuple[SparseAutoencoder, dict[str, Any]]:
    """Load ae.pt (weights_only) as a standard, topk or jumprelu SAE in the SAELens convention."""
    folder = Path(folder)
    path = folder / WEIGHTS_FILE
    state = read_torch_state(path)
    config = read_json(folder / CFG_FILE) if (folder / CFG_FILE).exists() else {}
    trainer = json_object(config, "trainer")
    dict_class = _dict_class(trainer, state, path)
    architecture, k, apply_b_dec = "standard", None, True
    if dict_class == "AutoEncoder":
        d_in, d_sae, tensors = _linear_layout(state, path, "bias")
    elif dict_class == "JumpReluAutoEncoder":
        if "W_enc" not in state:
            raise SAEFormatError(f"{path} has no tensor 'W_enc' (found: {', '.join(sorted(state)) or 'none'})")
        d_in, d_sae = (int(s) for s in state["W_enc"].shape)
        shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
        tensors = {name: take(state, name, shape, path) for name, shape in shapes.items()}
        # its forward is relu(pre * (pre > t)): a negative t acts as 0
        tensors["threshold"] = take(state, "threshold", (d_sae,), path).clamp(min=0.0)
        architecture, apply_b_dec = "jumprelu", bool(trainer.get("apply_b_dec_to_input", False))
    else:
        d_in, d_sae, tensors = _linear_layout(state, path, "b_dec")
        k = _k(state, trainer, path)
        architecture = "topk"
        if dict_class == "BatchTopKSAE":
            threshold = state.get("threshold")
            if threshold is None or threshold.numel() != 1 or float(threshold) < 0:
                raise SAEFormatError(f"{path}: BatchTopKSAE needs a learned scalar 'threshold' >= 0, found {threshold}")
            tensors["threshold"] = torch.full((d_sae,), float(threshold), dtype=torch.float32)
            architecture = "jumprelu"
    sae_cfg = SAEConfig(
        d_in=d_in,
        architecture=architecture,
        d_sae=d_sae,
        k=k if k is not None else min(32, d_sae),
        apply_b_dec_to_input=apply_b_dec,
        normalize_activations=False,
    )
    sae = sae_from_tensors(sae_cfg, tensors)
    stored = tensors["W_enc"].dtype
    sae.to(device=torch.device(device), dtype=parse_dtype(dtype) if dtype is not None else stored)
    metadata = {
        "model_name": trainer.get("lm_name"),
        "hook_name": _hook_name(trainer),
        "layer": trainer.get("layer"),
        "dict_class": dict_class,
    }
    return sae.eval(), metadata
