"""Single-file state dicts that SAELens's pretrained loaders read, loaded with weights_only: Goodfire
(encoder_linear / decoder_linear), DeepSeek R1 SAEs (encoder / decoder nn.Linear) and Qwen Scope (W_enc [d_sae, d_in],
TopK with k in the repo name). None of them subtracts b_dec from the input."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mistudio_tui.ml.sae.base import SparseAutoencoder
from mistudio_tui.ml.sae.formats.files import SAEFormatError, build_sae, read_torch_state, take

SUFFIXES = (".pt", ".pth")
RESERVED = ("ae.pt",)  # dictionary_learning's file
# (encoder weight [d_sae, d_in], encoder bias, decoder weight [d_in, d_sae], decoder bias) of each layout
LINEAR_KEYS = {
    "goodfire": ("encoder_linear.weight", "encoder_linear.bias", "decoder_linear.weight", "decoder_linear.bias"),
    "deepseek_r1": ("encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias"),
    "qwen_scope": ("W_enc", "b_enc", "W_dec", "b_dec"),
}


def state_file(folder: Path) -> Path | None:
    """The one .pt / .pth file of `folder` (None when there is none, or several)."""
    found = [p for p in Path(folder).iterdir() if p.is_file() and p.suffix in SUFFIXES and p.name not in RESERVED]
    return found[0] if len(found) == 1 else None


def _layout(state: dict[str, Any], path: Path) -> str:
    for name, keys in LINEAR_KEYS.items():
        if all(key in state for key in keys):
            return name
    found = ", ".join(sorted(k for k in state if isinstance(k, str))[:8]) or "none"
    raise SAEFormatError(
        f"{path}: not a known SAE state dict (Goodfire, DeepSeek R1 or Qwen Scope tensor names); found {found}"
    )


def load_torch_state(
    folder: Path, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None, origin: str = ""
) -> tuple[SparseAutoencoder, dict[str, Any]]:
    """The folder's single state-dict file as a standard (Goodfire, DeepSeek R1) or TopK (Qwen Scope) SAE."""
    folder = Path(folder)
    path = state_file(folder)
    if path is None:
        raise SAEFormatError(f"{folder} should hold exactly one .pt or .pth state dict")
    state = read_torch_state(path)
    layout = _layout(state, path)
    enc_w, enc_b, dec_w, dec_b = LINEAR_KEYS[layout]
    if not isinstance(state[enc_b], Tensor) or state[enc_b].dim() != 1:
        raise SAEFormatError(f"{path}: entry {enc_b!r} should be a vector")
    d_sae = int(state[enc_b].shape[0])
    d_in = int(state[dec_b].shape[0]) if isinstance(state[dec_b], Tensor) else 0
    tensors: dict[str, Tensor] = {
        "W_enc": take(state, enc_w, (d_sae, d_in), path).T.contiguous(),
        "b_enc": take(state, enc_b, (d_sae,), path),
        "W_dec": take(state, dec_w, (d_in, d_sae), path).T.contiguous(),
        "b_dec": take(state, dec_b, (d_in,), path),
    }
    origin = origin or str(path)
    architecture, k = "standard", min(32, d_sae)
    if layout == "qwen_scope":
        found = re.search(r"L0_(\d+)", origin)
        if found is None:
            raise SAEFormatError(f"{path}: a Qwen Scope SAE's k comes from its repo name (…-L0_50); none in {origin}")
        architecture, k = "topk", int(found.group(1))
    sae = build_sae(tensors, architecture, device, dtype, k=k, apply_b_dec=False)
    layer = re.findall(r"(?:layer|[-_.]l)(\d+)", origin.rsplit("/", 2)[-1] if "/" in origin else origin)
    metadata = {"hook_name": f"blocks.{layer[-1]}.hook_resid_post" if layer else None, "layout": layout}
    return sae, metadata
