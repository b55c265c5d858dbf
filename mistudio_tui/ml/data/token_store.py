"""On-disk token sequences of a tokenization: a flat uint32 file read by memory map, plus meta.json.

Layout of a tokenization folder:
    tokens.bin    uint32, shape [n_sequences, context_size], row-major, appended while tokenizing
    lengths.bin   int32, shape [n_sequences]: valid tokens in each row (the rest is padding)
    meta.json     context_size, n_sequences, n_tokens, bos/pad/sep ids, tokenizer, ...

No torch or Textual here, so the UI can read token ids (e.g. to show example text) too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

TOKENS_FILE = "tokens.bin"
LENGTHS_FILE = "lengths.bin"
META_FILE = "meta.json"
TOKEN_DTYPE = np.uint32


class TokenStoreWriter:
    """Appends fixed-width rows of token ids; `close()` writes meta.json; `resume=True` continues a file."""

    def __init__(self, folder: Path, context_size: int, resume: bool = False) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.context_size = int(context_size)
        mode = "ab" if resume else "wb"
        self.n_sequences = 0
        self.n_tokens = 0
        if resume:
            self.n_sequences, self.n_tokens = self._truncate_to_complete_rows()
        self._tokens = open(self.folder / TOKENS_FILE, mode)  # noqa: SIM115 - closed in close()
        self._lengths = open(self.folder / LENGTHS_FILE, mode)  # noqa: SIM115

    def _truncate_to_complete_rows(self) -> tuple[int, int]:
        """Drop a partially written last row (after a crash) so both files agree; return (rows, tokens)."""
        tok_path, len_path = self.folder / TOKENS_FILE, self.folder / LENGTHS_FILE
        if not tok_path.exists() or not len_path.exists():
            return 0, 0
        row_bytes = self.context_size * np.dtype(TOKEN_DTYPE).itemsize
        rows = min(tok_path.stat().st_size // row_bytes, len_path.stat().st_size // 4)
        os.truncate(tok_path, rows * row_bytes)
        os.truncate(len_path, rows * 4)
        lengths = np.fromfile(len_path, dtype=np.int32) if rows else np.zeros(0, np.int32)
        return int(rows), int(lengths.sum())

    def append(self, rows: np.ndarray, lengths: np.ndarray) -> None:
        """Append `rows` [n, context_size] of token ids with their valid `lengths` [n]."""
        rows = np.ascontiguousarray(rows, dtype=TOKEN_DTYPE)
        if rows.ndim != 2 or rows.shape[1] != self.context_size:
            raise ValueError(f"expected rows of width {self.context_size}, got shape {rows.shape}")
        lengths = np.ascontiguousarray(lengths, dtype=np.int32)
        self._tokens.write(rows.tobytes())
        self._lengths.write(lengths.tobytes())
        self.n_sequences += rows.shape[0]
        self.n_tokens += int(lengths.sum())

    def flush(self) -> None:
        self._tokens.flush()
        self._lengths.flush()

    def close(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Finish: write meta.json (merged with counts) and return it."""
        self._tokens.close()
        self._lengths.close()
        full = dict(meta)
        full.update(
            context_size=self.context_size,
            n_sequences=self.n_sequences,
            n_tokens=self.n_tokens,
            dtype="uint32",
        )
        tmp = self.folder / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(full, indent=2))
        tmp.replace(self.folder / META_FILE)
        return full


class TokenStore:
    """Read side: memory-mapped token rows [n_sequences, context_size] and their valid lengths."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        meta_path = self.folder / META_FILE
        if not meta_path.exists():
            raise FileNotFoundError(f"tokenization at {self.folder} is incomplete: {META_FILE} is missing")
        self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        self.context_size = int(self.meta["context_size"])
        self.n_sequences = int(self.meta["n_sequences"])
        shape = (self.n_sequences, self.context_size)
        self.tokens: NDArray[np.uint32]
        self.lengths: NDArray[np.int32]
        if self.n_sequences:
            self.tokens = np.memmap(self.folder / TOKENS_FILE, dtype=TOKEN_DTYPE, mode="r", shape=shape)
            self.lengths = np.memmap(self.folder / LENGTHS_FILE, dtype=np.int32, mode="r", shape=(shape[0],))
        else:
            self.tokens = np.zeros(shape, dtype=TOKEN_DTYPE)
            self.lengths = np.zeros((0,), dtype=np.int32)

    @property
    def n_tokens(self) -> int:
        return int(self.meta["n_tokens"])

    def __len__(self) -> int:
        return self.n_sequences

    def row(self, index: int) -> np.ndarray:
        """The valid token ids of sequence `index`."""
        return np.asarray(self.tokens[index, : int(self.lengths[index])])

    def iter_batches(self, batch_size: int, start: int = 0) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield (first_row_index, tokens [b, ctx] int64, lengths [b]) from row `start` on."""
        for lo in range(start, self.n_sequences, batch_size):
            hi = min(lo + batch_size, self.n_sequences)
            yield lo, np.asarray(self.tokens[lo:hi], dtype=np.int64), np.asarray(self.lengths[lo:hi])
