"""Statistics of a dataset folder and of a tokenization, computed in one streaming pass (JSON-able dicts)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mistudio_tui.ml.data.ingest import DOCUMENTS_FILE, iter_documents
from mistudio_tui.ml.data.token_store import TokenStore
from mistudio_tui.ml.data.tokenize import DOC_LENGTH_DTYPE, DOC_LENGTHS_FILE
from mistudio_tui.reporting import JobContext

BINS_PER_OCTAVE = 4
CHUNK = 4096
TOKENS_PER_BATCH = 1 << 20


class LengthTally:
    """Exact streaming summary of non-negative integer lengths (memory grows with distinct lengths only)."""

    def __init__(self) -> None:
        self._counts: Counter[int] = Counter()

    def add(self, lengths: Iterable[int] | np.ndarray) -> None:
        """Count a chunk of lengths."""
        values, counts = np.unique(np.asarray(lengths, dtype=np.int64), return_counts=True)
        if len(values) and values[0] < 0:
            raise ValueError(f"lengths must be >= 0, got {int(values[0])}")
        self._counts.update(dict(zip(values.tolist(), counts.tolist(), strict=True)))

    def summary(self) -> dict[str, Any]:
        """count, total, min, median, mean and max (None when empty)."""
        if not self._counts:
            return {"count": 0, "total": 0, "min": None, "median": None, "mean": None, "max": None}
        values = np.array(sorted(self._counts), dtype=np.int64)
        counts = np.array([self._counts[v] for v in values.tolist()], dtype=np.int64)
        n = int(counts.sum())
        total = int((values * counts).sum())
        cumulative = np.cumsum(counts)
        lower = int(values[np.searchsorted(cumulative, (n - 1) // 2, side="right")])
        upper = int(values[np.searchsorted(cumulative, n // 2, side="right")])
        return {
            "count": n,
            "total": total,
            "min": int(values[0]),
            "median": (lower + upper) / 2,
            "mean": total / n,
            "max": int(values[-1]),
        }

    def histogram(self, bins_per_octave: int = BINS_PER_OCTAVE) -> dict[str, Any]:
        """Counts over log-spaced bins: [0, 1), then [2^((k-1)/b), 2^(k/b)); empty bins at the ends trimmed."""
        if not self._counts:
            return {"edges": [], "counts": []}
        values = np.array(list(self._counts), dtype=np.float64)
        weights = np.array(list(self._counts.values()), dtype=np.int64)
        index = np.zeros(len(values), dtype=np.int64)
        positive = values >= 1
        index[positive] = np.floor(np.log2(values[positive]) * bins_per_octave).astype(np.int64) + 1
        counts = np.bincount(index, weights=weights).astype(np.int64)
        lo = int(np.flatnonzero(counts)[0])
        edges = [0.0 if k == 0 else 2 ** ((k - 1) / bins_per_octave) for k in range(lo, len(counts) + 1)]
        return {"edges": edges, "counts": counts[lo:].tolist()}


def dataset_stats(
    dataset_dir: str | Path,
    sample_rows: int = 5,
    sample_chars: int | None = 500,
    ctx: JobContext | None = None,
) -> dict[str, Any]:
    """Documents, characters, words, length summary and log-spaced histogram, and the first few documents."""
    dataset_dir = Path(dataset_dir)
    tally = LengthTally()
    samples: list[str] = []
    chunk: list[int] = []
    n_documents = words = 0
    for text in iter_documents(dataset_dir):
        n_documents += 1
        words += len(text.split())
        chunk.append(len(text))
        if len(samples) < sample_rows:
            samples.append(text if sample_chars is None else text[:sample_chars])
        if len(chunk) >= CHUNK:
            tally.add(chunk)
            chunk.clear()
            if ctx is not None:
                ctx.progress(n_documents, None, "reading documents", "documents")
                ctx.check_cancelled()
    tally.add(chunk)
    summary = tally.summary()
    return {
        "documents": n_documents,
        "characters": summary["total"],
        "words": words,
        "bytes": (dataset_dir / DOCUMENTS_FILE).stat().st_size,
        "length_chars": {k: summary[k] for k in ("min", "median", "mean", "max")},
        "length_histogram": {"unit": "characters", **tally.histogram()},
        "samples": samples,
    }


def _special_ids(meta: dict[str, Any]) -> set[int]:
    ids = set(meta.get("special_token_ids") or [])
    for key in ("bos_token_id", "eos_token_id", "pad_token_id", "separator_token_id"):
        if meta.get(key) is not None:
            ids.add(int(meta[key]))
    return ids


def _document_lengths(store: TokenStore) -> tuple[LengthTally, str] | None:
    """Token lengths of the tokenized documents: the doc-lengths file, else (no packing) the row lengths."""
    tally = LengthTally()
    path = store.folder / DOC_LENGTHS_FILE
    if path.exists() and path.stat().st_size:
        lengths = np.memmap(path, dtype=DOC_LENGTH_DTYPE, mode="r")
        for lo in range(0, len(lengths), TOKENS_PER_BATCH):
            tally.add(lengths[lo : lo + TOKENS_PER_BATCH])
        return tally, "documents"
    if store.meta.get("packing") is False and store.n_sequences:
        start = 1 if store.meta.get("prepend_bos") else 0
        for lo in range(0, store.n_sequences, TOKENS_PER_BATCH):
            tally.add(np.asarray(store.lengths[lo : lo + TOKENS_PER_BATCH], dtype=np.int64) - start)
        return tally, "rows (truncated to the context)"
    return None


def tokenization_stats(store: TokenStore, top_n: int = 50, ctx: JobContext | None = None) -> dict[str, Any]:
    """Rows, tokens, padding fraction, the most frequent token ids and document lengths in tokens."""
    width = store.context_size
    counts = np.zeros(int(store.meta.get("vocab_size") or 0), dtype=np.int64)
    n_tokens = 0
    rows_per_batch = max(1, TOKENS_PER_BATCH // width)
    positions = np.arange(width)
    for lo, tokens, lengths in store.iter_batches(rows_per_batch):
        valid = tokens[positions[None, :] < lengths[:, None]]
        n_tokens += len(valid)
        batch_counts = np.bincount(valid, minlength=len(counts))
        if len(batch_counts) > len(counts):
            counts = np.pad(counts, (0, len(batch_counts) - len(counts)))
        counts += batch_counts
        if ctx is not None:
            ctx.progress(lo + len(tokens), store.n_sequences, "counting tokens", "rows")
            ctx.check_cancelled()
    special = _special_ids(store.meta)
    order = np.argsort(-counts, kind="stable")[:top_n]
    top = [{"id": int(i), "count": int(counts[i]), "special": int(i) in special} for i in order if counts[i]]
    capacity = store.n_sequences * width
    doc_lengths = _document_lengths(store)
    documents = None
    if doc_lengths is not None:
        tally, source = doc_lengths
        summary = tally.summary()
        documents = {
            "source": source,
            **{k: summary[k] for k in ("count", "min", "median", "mean", "max")},
            "histogram": {"unit": "tokens", **tally.histogram()},
        }
    return {
        "sequences": store.n_sequences,
        "context_size": width,
        "tokens": n_tokens,
        "padding_fraction": (1 - n_tokens / capacity) if capacity else 0.0,
        "distinct_tokens": int(np.count_nonzero(counts)),
        "top_tokens": top,
        "document_lengths": documents,
    }


def decode_top_tokens(stats: dict[str, Any], tokenizer: Any) -> list[dict[str, Any]]:
    """The `top_tokens` of `tokenization_stats` with each id's token and decoded text added."""
    from mistudio_tui.ml.token_display import token_strings

    ids = [int(entry["id"]) for entry in stats["top_tokens"]]
    texts = token_strings(tokenizer, ids)
    return [
        {**entry, "token": tokenizer.convert_ids_to_tokens(token_id), "text": text}
        for entry, token_id, text in zip(stats["top_tokens"], ids, texts, strict=True)
    ]
