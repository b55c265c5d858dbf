"""SAE engine: architectures, training, evaluation and file formats (pure torch, driven by a JobContext)."""

from __future__ import annotations

from mistudio_tui.ml.sae.architectures import create_sae
from mistudio_tui.ml.sae.base import LossOutput, SparseAutoencoder
from mistudio_tui.ml.sae.config import SAEConfig, TrainConfig
from mistudio_tui.ml.sae.formats import LoadedSAE, detect_format, load_any, load_saelens, save_saelens
from mistudio_tui.ml.sae.trainer import train_sae

__all__ = [
    "LoadedSAE",
    "LossOutput",
    "SAEConfig",
    "SparseAutoencoder",
    "TrainConfig",
    "create_sae",
    "detect_format",
    "load_any",
    "load_saelens",
    "save_saelens",
    "train_sae",
]
