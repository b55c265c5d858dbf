"""Checkpoint file names, re-exported from `mistudio_tui.ml.sae.checkpoint_files` (torch-free) where they live."""

from __future__ import annotations

from mistudio_tui.ml.sae.checkpoint_files import (
    CHECKPOINT_DIR,
    CHECKPOINT_NAME,
    checkpoint_path,
    checkpoint_steps,
    latest_checkpoint_step,
    list_checkpoints,
)

__all__ = [
    "CHECKPOINT_DIR",
    "CHECKPOINT_NAME",
    "checkpoint_path",
    "checkpoint_steps",
    "latest_checkpoint_step",
    "list_checkpoints",
]
