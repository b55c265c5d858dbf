"""SAE file formats: write and read SAELens; import sparsify and dictionary_learning; detect and load any."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mistudio_tui.ml.sae.base import SparseAutoencoder
from mistudio_tui.ml.sae.formats import dictionary_learning, saelens, sparsify
from mistudio_tui.ml.sae.formats.dictionary_learning import load_dictionary_learning
from mistudio_tui.ml.sae.formats.files import SAEFormatError
from mistudio_tui.ml.sae.formats.saelens import load_saelens, load_sparsity, save_saelens
from mistudio_tui.ml.sae.formats.sparsify import load_sparsify

FORMATS = ("saelens", "sparsify", "dictionary_learning")

__all__ = [
    "FORMATS",
    "LoadedSAE",
    "SAEFormatError",
    "detect_format",
    "load_any",
    "load_dictionary_learning",
    "load_saelens",
    "load_sparsify",
    "load_sparsity",
    "save_saelens",
]


@dataclass
class LoadedSAE:
    """An SAE read from disk, in the SAELens convention, with what its files say about where it belongs."""

    sae: SparseAutoencoder
    metadata: dict[str, Any]
    source_format: str


def _format_of(folder: Path) -> str | None:
    if (folder / saelens.CFG_FILE).is_file() and (folder / saelens.WEIGHTS_FILE).is_file():
        return "saelens"
    if (folder / sparsify.CFG_FILE).is_file() and (folder / sparsify.WEIGHTS_FILE).is_file():
        return "sparsify"
    if (folder / dictionary_learning.WEIGHTS_FILE).is_file():
        return "dictionary_learning"
    return None


def detect_format(folder: Path) -> str:
    """'saelens', 'sparsify' or 'dictionary_learning', judged by the files in `folder`."""
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
        "cfg.json + sae.safetensors (sparsify) or ae.pt + config.json (dictionary_learning)"
    )


def load_any(folder: Path, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None) -> LoadedSAE:
    """Load an SAE folder of any supported format into the SAELens convention."""
    folder = Path(folder)
    source_format = detect_format(folder)
    if source_format == "saelens":
        sae, _, metadata = load_saelens(folder, device, dtype)
    elif source_format == "sparsify":
        sae, metadata = load_sparsify(folder, device, dtype)
    else:
        sae, metadata = load_dictionary_learning(folder, device, dtype)
    return LoadedSAE(sae, metadata, source_format)
