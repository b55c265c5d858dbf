"""SAE engine: architectures, training, evaluation and file formats (pure torch, driven by a JobContext)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mistudio_tui.ml.sae.architectures import create_sae
    from mistudio_tui.ml.sae.base import LossOutput, SparseAutoencoder
    from mistudio_tui.ml.sae.config import SAEConfig, TrainConfig
    from mistudio_tui.ml.sae.formats import LoadedSAE, detect_format, load_any, load_saelens, save_saelens
    from mistudio_tui.ml.sae.trainer import train_sae

# Loaded on first use (PEP 562) so that `mistudio_tui.ml.sae.config` can be imported without torch.
_HOMES = {
    "create_sae": "architectures",
    "LossOutput": "base",
    "SparseAutoencoder": "base",
    "SAEConfig": "config",
    "TrainConfig": "config",
    "LoadedSAE": "formats",
    "detect_format": "formats",
    "load_any": "formats",
    "load_saelens": "formats",
    "save_saelens": "formats",
    "train_sae": "trainer",
}

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


def __getattr__(name: str) -> Any:
    """The public names, imported from their submodule when first asked for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, the lazily loaded ones included."""
    return sorted([*globals(), *__all__])
