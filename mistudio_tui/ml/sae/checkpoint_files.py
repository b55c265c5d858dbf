"""Training checkpoint file names, readable without torch (the runner drops curve points past a resume)."""

from __future__ import annotations

import re
from pathlib import Path

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_NAME = re.compile(r"^step-(\d{9,})\.pt$")


def checkpoint_path(folder: Path, step: int) -> Path:
    """Where the checkpoint of `step` lives in `folder`."""
    return Path(folder) / f"step-{step:09d}.pt"


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint files in `folder`, oldest step first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def checkpoint_steps(training_dir: Path) -> list[int]:
    """Steps of the checkpoints of a training folder, oldest first."""
    paths = list_checkpoints(Path(training_dir) / CHECKPOINT_DIR)
    return [int(m.group(1)) for p in paths if (m := CHECKPOINT_NAME.match(p.name))]


def latest_checkpoint_step(training_dir: Path) -> int | None:
    steps = checkpoint_steps(training_dir)
    return steps[-1] if steps else None
