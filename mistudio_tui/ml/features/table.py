"""Torch-free readers of a feature set's side files: the per-feature table and the vocabulary strings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def read_feature_table(folder: Path | str) -> Iterator[dict[str, Any]]:
    """Rows of table.jsonl (index, density, mean/max activation, top tokens, technical label, dead)."""
    path = Path(folder) / "table.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"feature table missing: {path} (the extraction did not finish)")
    with open(path) as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path} line {number}: invalid JSON: {exc.msg}") from None


def read_vocab(folder: Path | str) -> list[str]:
    """Display strings of every token id, written by the extraction."""
    path = Path(folder) / "vocab.json"
    if not path.exists():
        raise FileNotFoundError(f"vocabulary missing: {path}")
    vocab: list[str] = json.loads(path.read_text())
    return vocab
