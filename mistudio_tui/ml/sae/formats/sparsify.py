"""Import EleutherAI sparsify SAEs: cfg.json + sae.safetensors (encoder.weight [n, d_in], W_dec [n, d_in])."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mistudio_tui.ml.device import parse_dtype
from mistudio_tui.ml.sae.architectures import sae_from_tensors
from mistudio_tui.ml.sae.base import SparseAutoencoder
from mistudio_tui.ml.sae.config import SAEConfig
from mistudio_tui.ml.sae.formats.files import SAEFormatError, config_int, read_json, read_safetensors, take

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae.safetensors"


def load_sparsify(
    folder: Path, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None
) -> tuple[SparseAutoencoder, dict[str, Any]]:
    """Load one sparsify hook folder as a TopK SAE (b_dec is subtracted before encoding unless a transcoder)."""
    folder = Path(folder)
    cfg_path, path = folder / CFG_FILE, folder / WEIGHTS_FILE
    cfg = read_json(cfg_path)
    activation = cfg.get("activation", "topk")
    if activation != "topk":
        raise SAEFormatError(f"{cfg_path}: activation {activation!r} is not supported; expected topk")
    raw = read_safetensors(path)
    transcoder = bool(cfg.get("transcode", False))
    skip = bool(cfg.get("skip_connection")) or "W_skip" in raw
    if skip and not transcoder:
        raise SAEFormatError(f"{path}: skip connections (W_skip) are supported on transcoders only")
    if "encoder.weight" not in raw:
        raise SAEFormatError(f"{path} has no tensor 'encoder.weight' (found: {', '.join(sorted(raw)) or 'none'})")
    d_in = cfg.get("d_in", raw["encoder.weight"].shape[-1])
    d_in = config_int({"d_in": d_in}, "d_in", cfg_path)
    n_latents = cfg.get("num_latents", 0) or d_in * config_int(cfg, "expansion_factor", cfg_path, default=32)
    k = config_int(cfg, "k", cfg_path)
    encoder = take(raw, "encoder.weight", (n_latents, d_in), path)
    tensors = {
        "W_enc": encoder.t().contiguous(),
        "b_enc": take(raw, "encoder.bias", (n_latents,), path),
        "W_dec": take(raw, "W_dec", (n_latents, d_in), path),
        "b_dec": take(raw, "b_dec", (d_in,), path),
    }
    if skip:  # applied as x @ W_skip.T, SAELens's orientation
        tensors["W_skip"] = take(raw, "W_skip", (d_in, d_in), path)
    sae_cfg = SAEConfig(
        d_in=d_in,
        architecture="topk",
        d_sae=n_latents,
        k=k,
        apply_b_dec_to_input=not transcoder,
        normalize_activations=False,
        d_out=d_in if transcoder else None,  # sparsify transcoders map a module's input to its output, same width
        skip_connection=skip,
    )
    sae = sae_from_tensors(sae_cfg, tensors)
    sae.to(device=torch.device(device), dtype=parse_dtype(dtype) if dtype is not None else encoder.dtype)
    # a transcoder reads its module's input and writes its output: the one folder name is both hooks
    metadata = {"hook_name": folder.name, "model_name": None, "transcoder": transcoder}
    if transcoder:
        metadata["hook_name_out"] = folder.name
    return sae.eval(), metadata
