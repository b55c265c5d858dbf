"""The SAELens folder layout (v6, and the flat pre-6.0 configs): cfg.json, sae_weights.safetensors, sparsity."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from mistudio_tui.ml.device import dtype_name, parse_dtype
from mistudio_tui.ml.sae.architectures import sae_from_tensors
from mistudio_tui.ml.sae.base import SparseAutoencoder
from mistudio_tui.ml.sae.config import SAEConfig
from mistudio_tui.ml.sae.formats.files import SAEFormatError, config_int, read_json, read_safetensors, take

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"
SPARSITY_FILE = "sparsity.safetensors"
LAYOUT_VERSION = "6.0.0"  # the SAELens config layout these files follow
METADATA_DEFAULTS: dict[str, Any] = {
    "sae_lens_version": LAYOUT_VERSION,
    "model_name": None,
    "hook_name": None,
    "hook_head_index": None,
    "context_size": None,
    "prepend_bos": True,
    "dataset_path": None,
    "exclude_special_tokens": False,
}
# SAELens training saves (`save_model` of a training SAE) whose inference form is JumpReLU: raw weights, a scalar
# `topk_threshold`, and codes scaled by the decoder row norms unless `rescale_acts_by_decoder_norm` is false.
TRAINING_SAVES = {"batchtopk": "jumprelu", "matryoshka_batchtopk": "jumprelu"}
# Transcoders by (inference architecture, skip connection): SAELens has the first three; the others follow their
# pattern (miStudio trains TopK transcoders and JumpReLU ones with a skip, which SAELens has no name for).
TRANSCODERS = {
    ("standard", False): "transcoder",
    ("standard", True): "skip_transcoder",
    ("jumprelu", False): "jumprelu_transcoder",
    ("jumprelu", True): "jumprelu_skip_transcoder",
    ("topk", False): "topk_transcoder",
    ("topk", True): "topk_skip_transcoder",
}
_TRANSCODER_KINDS = {name: kind for kind, name in TRANSCODERS.items()}
_FLAT_METADATA_KEYS = {
    "model_name": "model_name",
    "hook_name": "hook_name",
    "hook_point": "hook_name",
    "hook_head_index": "hook_head_index",
    "hook_point_head_index": "hook_head_index",
    "context_size": "context_size",
    "prepend_bos": "prepend_bos",
    "dataset_path": "dataset_path",
    "exclude_special_tokens": "exclude_special_tokens",
    "neuronpedia_id": "neuronpedia_id",
    "hook_name_out": "hook_name_out",
    "model_from_pretrained_kwargs": "model_from_pretrained_kwargs",
}


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def saelens_config(sae: SparseAutoencoder, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The cfg.json content for `sae` (inference form: normalisation already folded)."""
    architecture = sae.saved_architecture
    if sae.cfg.is_transcoder:
        architecture = TRANSCODERS[architecture, sae.W_skip is not None]
    cfg: dict[str, Any] = {
        "architecture": architecture,
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        **({"d_out": sae.d_out} if sae.cfg.is_transcoder else {}),
        "dtype": dtype_name(sae.W_enc.dtype),
        "device": "cpu",
        "apply_b_dec_to_input": bool(sae.cfg.apply_b_dec_to_input),
        "normalize_activations": "none",
        "reshape_activations": "none",
        **sae.extra_saelens_config(),
    }
    cfg["metadata"] = {**METADATA_DEFAULTS, **(metadata or {})}
    return cfg


def save_saelens(
    sae: SparseAutoencoder,
    folder: Path,
    metadata: dict[str, Any] | None = None,
    sparsity: Tensor | None = None,
) -> Path:
    """Write `sae` as cfg.json + sae_weights.safetensors (+ sparsity.safetensors: log10 density [d_sae])."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous() for name, t in sae.inference_tensors().items()}
    _atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_file(tensors, tmp))
    if sparsity is not None:
        if tuple(sparsity.shape) != (sae.d_sae,):
            raise ValueError(f"sparsity must have shape ({sae.d_sae},), got {tuple(sparsity.shape)}")
        data = {"sparsity": sparsity.detach().float().cpu().contiguous()}
        _atomic_write(folder / SPARSITY_FILE, lambda tmp: save_file(data, tmp))
    text = json.dumps(saelens_config(sae, metadata), indent=2)
    _atomic_write(folder / CFG_FILE, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return folder


def _architecture(cfg: dict[str, Any], path: Path) -> tuple[str, int | None]:
    """(architecture, k) from a v6 or pre-6.0 config."""
    architecture = cfg.get("architecture")
    activation = cfg.get("activation_fn", cfg.get("activation_fn_str"))
    kwargs = cfg.get("activation_fn_kwargs") or {}
    k = cfg.get("k", kwargs.get("k") if isinstance(kwargs, dict) else None)
    if architecture in (None, "standard") and activation == "topk":
        architecture = "topk"
    architecture = TRAINING_SAVES.get(architecture, architecture) or "standard"
    if architecture not in ("standard", "topk", "jumprelu"):
        raise SAEFormatError(
            f"{path}: architecture {architecture!r} is not supported; expected standard, topk or jumprelu"
        )
    if architecture == "standard" and activation not in (None, "relu"):
        raise SAEFormatError(f"{path}: activation function {activation!r} is not supported; expected relu or topk")
    if architecture == "topk":
        k = config_int({"k": k}, "k", path)
    return architecture, k


def _metadata(cfg: dict[str, Any]) -> dict[str, Any]:
    if isinstance(cfg.get("metadata"), dict):
        return {**METADATA_DEFAULTS, **cfg["metadata"]}
    flat = {ours: cfg[theirs] for theirs, ours in _FLAT_METADATA_KEYS.items() if theirs in cfg}
    flat["sae_lens_version"] = cfg.get("sae_lens_version")
    return {**METADATA_DEFAULTS, **flat}


def read_saelens_config(folder: Path) -> tuple[SAEConfig, dict[str, Any], Any]:
    """(SAEConfig, metadata, stored dtype) from a SAELens cfg.json."""
    path = Path(folder) / CFG_FILE
    cfg = read_json(path)
    transcoder = _TRANSCODER_KINDS.get(cfg.get("architecture"))
    if transcoder is not None:
        cfg = {**cfg, "architecture": transcoder[0]}
    architecture, k = _architecture(cfg, path)
    d_in, d_sae = config_int(cfg, "d_in", path), config_int(cfg, "d_sae", path)
    normalize = cfg.get("normalize_activations", "none")
    if normalize not in ("none", None, False):
        raise SAEFormatError(
            f"{path}: normalize_activations={normalize!r} needs a runtime normaliser this loader does not apply; "
            "expected 'none' (fold the scaling into the weights first)"
        )
    apply_b_dec = cfg.get("apply_b_dec_to_input", True)
    try:
        dtype = parse_dtype(cfg.get("dtype", "float32"))
    except ValueError as exc:
        raise SAEFormatError(f"{path}: {exc}") from exc
    sae_cfg = SAEConfig(
        d_in=d_in,
        architecture=architecture,
        d_sae=d_sae,
        k=k if k is not None else min(32, d_sae),
        apply_b_dec_to_input=bool(apply_b_dec) and transcoder is None,
        normalize_activations=False,
        d_out=config_int(cfg, "d_out", path, default=d_in) if transcoder is not None else None,
        skip_connection=transcoder is not None and transcoder[1],
    )
    return sae_cfg, _metadata(cfg), dtype


def load_saelens(
    folder: Path, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None
) -> tuple[SparseAutoencoder, SAEConfig, dict[str, Any]]:
    """Load a SAELens folder: (sae in eval mode, its SAEConfig, the metadata dict)."""
    folder = Path(folder)
    sae_cfg, metadata, stored_dtype = read_saelens_config(folder)
    path = folder / WEIGHTS_FILE
    raw = read_safetensors(path)
    if "topk_threshold" in raw and "threshold" not in raw:
        raw = _inference_tensors_of_training_save(read_json(folder / CFG_FILE), raw, path)
    if sae_cfg.architecture == "jumprelu" and "threshold" not in raw and "log_threshold" in raw:
        raw["threshold"] = raw["log_threshold"].exp()
    d_in, d_sae, d_out = sae_cfg.d_in, int(sae_cfg.d_sae or 0), sae_cfg.d_out or sae_cfg.d_in
    shapes = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_out), "b_enc": (d_sae,), "b_dec": (d_out,)}
    if sae_cfg.skip_connection:
        shapes["W_skip"] = (d_out, d_in)
    if sae_cfg.architecture == "jumprelu":
        shapes["threshold"] = (d_sae,)
    tensors = {name: take(raw, name, shape, path) for name, shape in shapes.items()}
    sae = sae_from_tensors(sae_cfg, tensors)
    sae.to(device=torch.device(device), dtype=parse_dtype(dtype) if dtype is not None else stored_dtype)
    return sae.eval(), sae_cfg, metadata


def _inference_tensors_of_training_save(cfg: dict[str, Any], raw: dict[str, Tensor], path: Path) -> dict[str, Tensor]:
    """A (Matryoshka) BatchTopK training save in inference form: decoder norms folded into the encoder (as SAELens
    does on export) and the scalar `topk_threshold` as every latent's JumpReLU threshold."""
    tensors = {name: raw[name].float() for name in ("W_enc", "W_dec", "b_enc") if name in raw}
    if len(tensors) < 3 or raw["topk_threshold"].numel() != 1:
        raise SAEFormatError(f"{path}: a training save needs W_enc, W_dec, b_enc and a scalar topk_threshold")
    if cfg.get("rescale_acts_by_decoder_norm", True):
        norms = tensors["W_dec"].norm(dim=1)
        tensors = {
            "W_enc": tensors["W_enc"] * norms,
            "W_dec": tensors["W_dec"] / norms[:, None],
            "b_enc": tensors["b_enc"] * norms,
        }
    dtype = raw["W_enc"].dtype
    threshold = torch.full_like(tensors["b_enc"], float(raw["topk_threshold"]))
    return {**raw, **{name: t.to(dtype) for name, t in tensors.items()}, "threshold": threshold}


def load_sparsity(folder: Path) -> Tensor | None:
    """The log10 feature density saved beside the weights, or None when there is none."""
    path = Path(folder) / SPARSITY_FILE
    if not path.exists():
        return None
    tensors = read_safetensors(path)
    if "sparsity" not in tensors:
        raise SAEFormatError(f"{path} has no tensor 'sparsity' (found: {', '.join(sorted(tensors)) or 'none'})")
    return tensors["sparsity"]
