"""SAE file formats: write and read SAELens; import sparsify, dictionary_learning, Gemma Scope (1 and 2) and Llama
Scope; detect and load any."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mistudio_tui.ml.sae.base import SparseAutoencoder
from mistudio_tui.ml.sae.formats import dictionary_learning, saelens, scope, sparsify, torch_state
from mistudio_tui.ml.sae.formats.dictionary_learning import load_dictionary_learning
from mistudio_tui.ml.sae.formats.files import SAEFormatError
from mistudio_tui.ml.sae.formats.saelens import load_saelens, load_sparsity, save_saelens
from mistudio_tui.ml.sae.formats.scope import load_gemma_scope, load_gemma_scope_2, load_llama_scope
from mistudio_tui.ml.sae.formats.sparsify import load_sparsify
from mistudio_tui.ml.sae.formats.torch_state import load_torch_state

FORMATS = (
    "saelens",
    "sparsify",
    "dictionary_learning",
    "gemma_scope",
    "gemma_scope_2",
    "llama_scope",
    "torch_state",  # one .pt / .pth state dict: Goodfire, DeepSeek R1, Qwen Scope
)
# The files that mark each layout's folder (the hub import looks for these in a repo's listing too)
FORMAT_FILES: dict[str, tuple[str, ...]] = {
    "saelens": (saelens.CFG_FILE, saelens.WEIGHTS_FILE),
    "sparsify": (sparsify.CFG_FILE, sparsify.WEIGHTS_FILE),
    "dictionary_learning": (dictionary_learning.WEIGHTS_FILE,),
    "gemma_scope": (scope.GEMMA_SCOPE_FILE,),
    "gemma_scope_2": (scope.GEMMA_SCOPE_2_FILE,),
    "llama_scope": (scope.LLAMA_SCOPE_CFG, scope.LLAMA_SCOPE_WEIGHTS),
}

__all__ = [
    "FORMATS",
    "FORMAT_FILES",
    "LoadedSAE",
    "SAEFormatError",
    "detect_format",
    "load_any",
    "load_dictionary_learning",
    "load_gemma_scope",
    "load_gemma_scope_2",
    "load_llama_scope",
    "load_saelens",
    "load_sparsify",
    "load_sparsity",
    "load_torch_state",
    "save_saelens",
]


@dataclass
class LoadedSAE:
    """An SAE read from disk, in the SAELens convention, with what its files say about where it belongs."""

    sae: SparseAutoencoder
    metadata: dict[str, Any]
    source_format: str


def _format_of(folder: Path) -> str | None:
    for name, files in FORMAT_FILES.items():
        if all((folder / file).is_file() for file in files):
            return name
    return "torch_state" if torch_state.state_file(folder) is not None else None


def detect_format(folder: Path) -> str:
    """One of FORMATS, judged by the files in `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"SAE folder {folder} does not exist")
    found = _format_of(folder)
    if found is not None:
        return found
    inner = sorted(p.name for p in folder.iterdir() if p.is_dir() and _format_of(p) is not None)
    if inner:
        raise SAEFormatError(f"{folder} holds several SAEs ({', '.join(inner)}); pick one of those folders")
    raise SAEFormatError(
        f"{folder} is not an SAE folder: expected cfg.json + sae_weights.safetensors (SAELens), "
        "cfg.json + sae.safetensors (sparsify), ae.pt (dictionary_learning), params.npz (Gemma Scope), "
        "params.safetensors (Gemma Scope 2), hyperparams.json + checkpoints/final.safetensors (Llama Scope) "
        "or one .pt state dict (Goodfire, DeepSeek R1, Qwen Scope)"
    )


def load_any(
    folder: Path,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    origin: str = "",
    norm_scaling_factor: float | None = None,
    catalogued: bool = False,
) -> LoadedSAE:
    """Load an SAE folder of any supported format into the SAELens convention.

    `origin` (a hub repo id and folder, or a path) is where layouts without a config learn their hook and model;
    `norm_scaling_factor` is the input scale of an SAE that needs one and does not store it (SAELens's catalogue);
    `catalogued`: the folder is a SAELens release, so SAELens's defaults for its oldest configs apply.
    """
    folder = Path(folder)
    source_format = detect_format(folder)
    if source_format == "saelens":
        sae, _, metadata = load_saelens(folder, device, dtype, norm_scaling_factor, catalogued)
    elif source_format == "sparsify":
        sae, metadata = load_sparsify(folder, device, dtype)
    elif source_format == "dictionary_learning":
        sae, metadata = load_dictionary_learning(folder, device, dtype)
    elif source_format == "gemma_scope":
        sae, metadata = load_gemma_scope(folder, device, dtype, origin=origin)
    elif source_format == "gemma_scope_2":
        sae, metadata = load_gemma_scope_2(folder, device, dtype, origin=origin)
    elif source_format == "llama_scope":
        sae, metadata = load_llama_scope(folder, device, dtype, norm_scaling_factor=norm_scaling_factor)
    else:
        sae, metadata = load_torch_state(folder, device, dtype, origin=origin)
    return LoadedSAE(sae, metadata, source_format)
