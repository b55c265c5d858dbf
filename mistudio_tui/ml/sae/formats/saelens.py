"""The SAELens folder layout (v6, and the flat pre-6.0 configs): cfg.json, sae_weights.safetensors, sparsity."""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from mistudio_tui.ml.device import dtype_name, parse_dtype
from mistudio_tui.ml.sae.architectures import sae_from_tensors
from mistudio_tui.ml.sae.base import SparseAutoencoder
from mistudio_tui.ml.sae.config import SAEConfig
from mistudio_tui.ml.sae.formats.files import (
    SAEFormatError,
    config_int,
    json_object,
    read_json,
    read_safetensors,
    take,
)

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


INFERENCE_ARCHITECTURES = ("standard", "topk", "jumprelu")
TRAINING_ARCHITECTURES = ("batchtopk",)  # TrainingSAE.save_model layouts SAELens itself saves as another architecture
SCALER_FILE = "activation_scaler.json"  # SAELens's trainer state: the normalisation factor of a mid-run checkpoint
RUNTIME_NORMALISERS = ("layer_norm", "constant_norm_rescale", "covariance_whitening")


def _pre_6(cfg: dict[str, Any]) -> bool:
    """Whether SAELens reads `cfg` as a pre-6.0 config (no version, or one below 6)."""
    metadata = json_object(cfg, "metadata")
    version = str(cfg.get("sae_lens_version") or metadata.get("sae_lens_version") or "")
    major = re.match(r"\d+", version)
    return major is None or int(major.group()) < 6


def _architecture(cfg: dict[str, Any], path: Path, catalogued: bool = False) -> tuple[str, int | None]:
    """(architecture, k) from a v6 or pre-6.0 config.

    `catalogued`: the folder is a SAELens release, whose pre-6.0 configs SAELens reads as standard when they name
    no architecture (the oldest releases, e.g. gpt2-small-res-jb); anywhere else that guess is refused.
    """
    architecture = cfg.get("architecture")
    activation = cfg.get("activation_fn", cfg.get("activation_fn_str"))
    if architecture is None and activation is None and catalogued and _pre_6(cfg):
        activation = "relu"
    if architecture is None and activation is None:  # guessing ReLU would turn a TopK or JumpReLU SAE into garbage
        raise SAEFormatError(
            f"{path}: missing field 'architecture' (and no pre-6.0 'activation_fn'); cannot tell which SAE it is"
        )
    if architecture == "matryoshka_batchtopk":  # its inference form is a BatchTopK's: the prefixes only train
        architecture = "batchtopk"
    kwargs = cfg.get("activation_fn_kwargs") or {}
    k = cfg.get("k", kwargs.get("k") if isinstance(kwargs, dict) else None)
    if architecture in (None, "standard") and activation == "topk":
        architecture = "topk"
    architecture = architecture or "standard"
    if architecture not in INFERENCE_ARCHITECTURES + TRAINING_ARCHITECTURES:
        raise SAEFormatError(
            f"{path}: architecture {architecture!r} is not supported; expected standard, topk, jumprelu, a "
            "(matryoshka) batchtopk training save, or a transcoder"
        )
    if architecture == "standard" and activation not in (None, "relu"):
        raise SAEFormatError(f"{path}: activation function {activation!r} is not supported; expected relu or topk")
    if architecture == "topk":
        k = config_int({"k": k}, "k", path)
    return architecture, k if isinstance(k, int) else None


def _metadata(cfg: dict[str, Any]) -> dict[str, Any]:
    if isinstance(cfg.get("metadata"), dict):
        return {**METADATA_DEFAULTS, **cfg["metadata"]}
    flat = {ours: cfg[theirs] for theirs, ours in _FLAT_METADATA_KEYS.items() if theirs in cfg}
    flat["sae_lens_version"] = cfg.get("sae_lens_version")
    return {**METADATA_DEFAULTS, **flat}


def _flag(cfg: dict[str, Any], key: str, default: bool, path: Path) -> bool:
    value = cfg.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise SAEFormatError(f"{path}: field {key!r} should be true or false, found {value!r}")
    return value


def _scaler_factor(folder: Path) -> float | None:
    """The scaling factor SAELens's trainer saved beside a mid-run checkpoint (None when there is none)."""
    path = folder / SCALER_FILE
    if not path.is_file():
        return None
    factor = read_json(path).get("scaling_factor")
    if factor is None:
        return None
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 0:
        raise SAEFormatError(f"{path}: field 'scaling_factor' should be a positive number, found {factor!r}")
    return float(factor)


@dataclass(frozen=True)
class SAELensFields:
    """What a SAELens cfg.json says about the computation, beyond the architecture and sizes."""

    architecture: str  # as stored: standard | topk | jumprelu | batchtopk (a training save)
    k: int | None
    apply_b_dec_to_input: bool
    rescale_acts_by_decoder_norm: bool
    norm_scaling_factor: float | None  # expected_average_only_in: inputs were multiplied by it; folded on load
    dtype: torch.dtype
    transcoder: tuple[str, bool] | None = None  # (inference architecture, skip connection) of a transcoder
    d_out: int | None = None  # a transcoder's output width


def read_saelens_fields(
    folder: Path, norm_scaling_factor: float | None = None, catalogued: bool = False
) -> SAELensFields:
    """Check every cfg.json field that changes what the SAE computes: each is handled exactly or refused by name.

    `norm_scaling_factor` is the factor of an `expected_average_only_in` SAE when it is not stored beside the
    weights (SAELens's catalogue keeps it for some releases).
    """
    folder = Path(folder)
    path = folder / CFG_FILE
    cfg = read_json(path)
    transcoder = _TRANSCODER_KINDS.get(cfg.get("architecture", ""))
    if transcoder is not None:
        cfg = {**cfg, "architecture": transcoder[0]}
    architecture, k = _architecture(cfg, path, catalogued)
    metadata = json_object(cfg, "metadata")
    head = metadata.get("hook_head_index", cfg.get("hook_head_index", cfg.get("hook_point_head_index")))
    if head is not None:
        raise SAEFormatError(
            f"{path}: hook_head_index={head!r}: the SAE reads one attention head's output, which miStudio's hooks "
            "do not select; only SAEs on whole hook outputs can be imported"
        )
    reshape = cfg.get("reshape_activations")
    hook = str(metadata.get("hook_name") or cfg.get("hook_name") or cfg.get("hook_point") or "")
    if reshape is None:
        reshape = "hook_z" if "hook_z" in hook else "none"  # SAELens's default for configs without the field
    if reshape not in ("none", None):
        raise SAEFormatError(
            f"{path}: reshape_activations={reshape!r}: the SAE reads per-head attention outputs (hook_z) "
            "flattened, which miStudio's hooks do not provide; expected 'none'"
        )
    normalize = cfg.get("normalize_activations", "none")
    if normalize is True:
        normalize = "expected_average_only_in"  # pre-6.0 boolean form
    factor = None
    if normalize == "expected_average_only_in":
        factor = _scaler_factor(folder) or norm_scaling_factor
        if factor is None:
            raise SAEFormatError(
                f"{path}: normalize_activations='expected_average_only_in' but no scaling factor is known "
                f"(no {SCALER_FILE} beside it, and none given); the weights expect inputs rescaled by it"
            )
    elif normalize in RUNTIME_NORMALISERS:
        raise SAEFormatError(
            f"{path}: normalize_activations={normalize!r} needs a runtime normaliser this loader does not apply; "
            "expected 'none' (fold the scaling into the weights first)"
        )
    elif normalize not in ("none", None, False):
        raise SAEFormatError(f"{path}: normalize_activations={normalize!r} is unknown; expected 'none'")
    rescale = _flag(cfg, "rescale_acts_by_decoder_norm", False, path)
    if rescale and architecture not in ("topk", "batchtopk"):
        raise SAEFormatError(
            f"{path}: rescale_acts_by_decoder_norm is only defined for topk and batchtopk SAEs, not {architecture}"
        )
    try:
        dtype = parse_dtype(cfg.get("dtype", "float32"))
    except ValueError as exc:
        raise SAEFormatError(f"{path}: field 'dtype': {exc}") from exc
    return SAELensFields(
        architecture=architecture,
        k=k,
        apply_b_dec_to_input=_flag(cfg, "apply_b_dec_to_input", True, path),
        rescale_acts_by_decoder_norm=rescale,
        norm_scaling_factor=factor,
        dtype=dtype,
        transcoder=transcoder,
        d_out=config_int(cfg, "d_out", path, default=config_int(cfg, "d_in", path)) if transcoder else None,
    )


def _read_config(
    folder: Path, norm_scaling_factor: float | None, catalogued: bool = False
) -> tuple[SAEConfig, dict[str, Any], SAELensFields]:
    path = folder / CFG_FILE
    fields = read_saelens_fields(folder, norm_scaling_factor, catalogued)
    cfg = read_json(path)
    d_in, d_sae = config_int(cfg, "d_in", path), config_int(cfg, "d_sae", path)
    architecture = "jumprelu" if fields.architecture == "batchtopk" else fields.architecture
    sae_cfg = SAEConfig(
        d_in=d_in,
        architecture=architecture,
        d_sae=d_sae,
        k=fields.k if architecture == "topk" and fields.k is not None else min(32, d_sae),
        apply_b_dec_to_input=fields.apply_b_dec_to_input and fields.transcoder is None,
        normalize_activations=False,
        d_out=fields.d_out,
        skip_connection=fields.transcoder is not None and fields.transcoder[1],
    )
    return sae_cfg, _metadata(cfg), fields


def read_saelens_config(
    folder: Path, norm_scaling_factor: float | None = None
) -> tuple[SAEConfig, dict[str, Any], Any]:
    """(SAEConfig of the inference form, metadata, stored dtype) from a SAELens cfg.json."""
    sae_cfg, metadata, fields = _read_config(Path(folder), norm_scaling_factor)
    return sae_cfg, metadata, fields.dtype


def _expected_tensors(fields: SAELensFields, d_in: int, d_sae: int) -> dict[str, tuple[int, ...]]:
    architecture, d_out = fields.architecture, fields.d_out or d_in
    shapes: dict[str, tuple[int, ...]] = {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_out), "b_enc": (d_sae,)}
    shapes["b_dec"] = (d_out,)
    if fields.transcoder is not None and fields.transcoder[1]:
        shapes["W_skip"] = (d_out, d_in)
    if architecture == "jumprelu":
        shapes["threshold"] = (d_sae,)
    if architecture == "batchtopk":
        shapes["topk_threshold"] = ()
    return shapes


def _raw_tensors(raw: dict[str, Tensor], fields: SAELensFields, d_in: int, d_sae: int, path: Path) -> dict[str, Tensor]:
    """The stored tensors, checked like SAELens's strict load, in float32 (a lossless widening)."""
    raw = dict(raw)
    if fields.architecture == "jumprelu" and "threshold" not in raw and "log_threshold" in raw:
        raw["threshold"] = take(raw, "log_threshold", (d_sae,), path).float().exp()  # older JumpReLU training saves
        del raw["log_threshold"]
    scaling = raw.pop("scaling_factor", None)  # SAELens < 6: per-latent finetuning scale of the codes
    shapes = _expected_tensors(fields, d_in, d_sae)
    unexpected = sorted(set(raw) - set(shapes))
    if unexpected:
        raise SAEFormatError(
            f"{path}: tensors {', '.join(unexpected)} are not part of a {fields.architecture} SAE; "
            f"expected {', '.join(shapes)}"
        )
    tensors = {name: take(raw, name, shape, path) for name, shape in shapes.items()}
    # float32 is a lossless widening of what SAELens stores; its BatchTopK cut stays in double, as SAELens keeps it
    tensors = {name: t if name == "topk_threshold" else t.to(torch.float32) for name, t in tensors.items()}
    if scaling is not None:
        if tuple(scaling.shape) != (d_sae,):
            raise SAEFormatError(f"{path}: tensor 'scaling_factor' has shape {tuple(scaling.shape)}, expected {d_sae}")
        # decode((f * s)) == f @ (s[:, None] * W_dec): the scale belongs to the decoder rows
        tensors["W_dec"] = tensors["W_dec"] * scaling.to(torch.float32)[:, None]
    return tensors


@torch.no_grad()
def fold_to_inference(tensors: dict[str, Tensor], fields: SAELensFields) -> dict[str, Tensor]:
    """The inference tensors SAELens itself derives from these: activation scale, decoder norms, BatchTopK cut.

    The order and arithmetic follow SAELens's trainer (fold the scaling factor at the end of training) and
    `save_inference_model` (fold the decoder norms, then write the BatchTopK threshold for every latent).
    """
    out = dict(tensors)
    factor = fields.norm_scaling_factor
    if factor is not None:
        out["W_enc"] = out["W_enc"] * factor
        out["W_dec"] = out["W_dec"] / factor
        out["b_dec"] = out["b_dec"] / factor
        if fields.architecture == "batchtopk" and fields.rescale_acts_by_decoder_norm:
            out["topk_threshold"] = out["topk_threshold"].double() / factor  # in units of pre * ||W_dec||
    if fields.rescale_acts_by_decoder_norm:
        # codes = topk(pre * n), x_hat = (codes / n) @ W_dec: the same as pre' = pre * n with unit decoder rows
        norms = out["W_dec"].norm(dim=-1).clamp(min=1e-8)
        out["b_enc"] = out["b_enc"] * norms
        out["W_dec"] = out["W_dec"] / norms.unsqueeze(1)
        out["W_enc"] = out["W_enc"] * norms.unsqueeze(1).T
    if fields.architecture == "batchtopk":
        cut = out.pop("topk_threshold").item()
        out["threshold"] = torch.ones_like(out["b_enc"]) * cut
    if "threshold" in out:
        # SAELens's inference JumpReLU is relu(pre) * (pre > t): a negative t acts as 0
        out["threshold"] = out["threshold"].clamp(min=0.0)
    return out


def load_saelens(
    folder: Path,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    norm_scaling_factor: float | None = None,
    catalogued: bool = False,
) -> tuple[SparseAutoencoder, SAEConfig, dict[str, Any]]:
    """Load a SAELens folder (inference or training save): (sae in eval mode, its SAEConfig, the metadata dict)."""
    folder = Path(folder)
    sae_cfg, metadata, fields = _read_config(folder, norm_scaling_factor, catalogued)
    path = folder / WEIGHTS_FILE
    tensors = _raw_tensors(read_safetensors(path), fields, sae_cfg.d_in, int(sae_cfg.d_sae or 0), path)
    sae = sae_from_tensors(sae_cfg, fold_to_inference(tensors, fields))
    sae.to(device=torch.device(device), dtype=parse_dtype(dtype) if dtype is not None else fields.dtype)
    if fields.architecture != sae_cfg.architecture or fields.rescale_acts_by_decoder_norm or fields.norm_scaling_factor:
        metadata = {**metadata, "folded": _folded(fields)}
    return sae.eval(), sae_cfg, metadata


def _folded(fields: SAELensFields) -> list[str]:
    done = []
    if fields.norm_scaling_factor is not None:
        done.append(f"normalize_activations (x{fields.norm_scaling_factor:g})")
    if fields.rescale_acts_by_decoder_norm:
        done.append("rescale_acts_by_decoder_norm")
    if fields.architecture == "batchtopk":
        done.append("topk_threshold -> jumprelu threshold")
    return done


def load_sparsity(folder: Path) -> Tensor | None:
    """The log10 feature density saved beside the weights, or None when there is none."""
    path = Path(folder) / SPARSITY_FILE
    if not path.exists():
        return None
    tensors = read_safetensors(path)
    if "sparsity" not in tensors:
        raise SAEFormatError(f"{path} has no tensor 'sparsity' (found: {', '.join(sorted(tensors)) or 'none'})")
    return tensors["sparsity"]
