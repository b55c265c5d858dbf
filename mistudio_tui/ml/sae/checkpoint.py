"""Training checkpoints: one atomically written file per step, the last N kept, loaded safely."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mistudio_tui.ml.sae.checkpoint_files import (  # noqa: F401 - re-exported: names shared with the runner
    CHECKPOINT_DIR,
    checkpoint_path,
    list_checkpoints,
)

TEMP_PREFIX = ".tmp-"


def remove_partial_checkpoints(folder: Path) -> list[Path]:
    """Delete the temporary files of checkpoint writes that never finished (a killed worker); return them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    partial = [p for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX) and p.is_file()]
    for path in partial:
        path.unlink(missing_ok=True)
    return partial


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint in `folder`, or None."""
    paths = list_checkpoints(folder)
    return paths[-1] if paths else None


def save_checkpoint(folder: Path, step: int, state: dict[str, Any], keep: int = 0) -> Path:
    """Write `state` atomically (temp file + rename) and delete all but the newest `keep` (0: keep all)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = checkpoint_path(folder, step)
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    if keep > 0:
        for old in list_checkpoints(folder)[:-keep]:
            old.unlink(missing_ok=True)
    return target


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with `weights_only=True`; a damaged file raises ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or "step" not in state:
        raise ValueError(f"checkpoint {path} is not a training checkpoint (no 'step' entry)")
    return state


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy, torch CPU and CUDA random states in a form `torch.load(weights_only=True)` accepts."""
    legacy = np.random.get_state(legacy=True)
    assert isinstance(legacy, tuple)  # the global generator is MT19937, whose state has the legacy form
    name, keys, pos, has_gauss, cached = legacy
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
