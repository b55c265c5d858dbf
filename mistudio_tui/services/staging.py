"""Folders written whole or not at all: a killed export leaves a hidden sibling, never a complete-looking folder."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """A hidden sibling of `target` to write into, moved onto `target` only when the block completes.

    A new or empty `target` is replaced by one rename; into a folder that already holds files the new files are
    moved one by one (each rename atomic). On an error the sibling is deleted; after a kill only it remains.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(staged, ignore_errors=True)  # left by a killed export that had this pid
    staged.mkdir()
    try:
        yield staged
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        if target.exists():
            for item in staged.iterdir():
                os.replace(item, target / item.name)
        else:
            os.replace(staged, target)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
