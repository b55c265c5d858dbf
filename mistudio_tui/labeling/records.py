"""Build labeling FeatureRecords from a feature set folder (store, vocabulary, scoring pool) — no torch."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mistudio_tui.labeling.types import Example, FeatureRecord
from mistudio_tui.ml.features.table import read_vocab
from mistudio_tui.ml.token_display import token_text

NON_ACTIVATING_WINDOW = 24


def _example(ex: Any, vocab: list[str]) -> Example:
    keep = np.asarray(ex.mask, dtype=bool)
    ids = np.asarray(ex.token_ids)[keep]
    acts = np.asarray(ex.activations, dtype=np.float32)[keep]
    return Example(tokens=[token_text(vocab, int(t)) for t in ids], activations=[float(a) for a in acts])


class ScoringPool:
    """Random windows with the features active at each token: non-activating examples for any feature."""

    def __init__(self, folder: Path) -> None:
        self.available = (folder / "pool.safetensors").exists()
        if not self.available:
            return
        from safetensors.numpy import load_file

        data = load_file(str(folder / "pool.safetensors"))
        self.token_ids = data["token_ids"]
        self.valid = data["valid"].astype(bool)
        self.active = data["active"]

    def non_activating(self, feature: int, n: int, vocab: list[str], rng: np.random.Generator) -> list[Example]:
        """Up to `n` windows of the pool where `feature` fires on no token."""
        if not self.available or n <= 0:
            return []
        fires = (self.active == feature).any(axis=-1) & self.valid  # [P, T]
        quiet_rows = np.flatnonzero(~fires.any(axis=-1))
        rng.shuffle(quiet_rows)
        examples = []
        for row in quiet_rows[:n]:
            positions = np.flatnonzero(self.valid[row])
            if positions.size == 0:
                continue
            start = int(rng.integers(0, max(positions.size - NON_ACTIVATING_WINDOW, 0) + 1))
            window = positions[start : start + NON_ACTIVATING_WINDOW]
            tokens = [token_text(vocab, int(t)) for t in self.token_ids[row, window]]
            examples.append(Example(tokens=tokens, activations=[0.0] * len(tokens)))
        return examples


def build_records(
    folder: Path | str, indices: Iterable[int], holdout: int = 10, seed: int = 0
) -> Iterator[FeatureRecord]:
    """One FeatureRecord per index: prompt examples, held-out activating examples, non-activating ones."""
    from mistudio_tui.ml.features.store import FeatureSetReader

    folder = Path(folder)
    vocab = read_vocab(folder)
    pool = ScoringPool(folder)
    rng = np.random.default_rng(seed)
    with FeatureSetReader(folder) as reader:
        for index in indices:
            detail = reader.feature(int(index))
            top = [_example(ex, vocab) for ex in detail.top_examples]
            quantile = [_example(ex, vocab) for band in detail.quantile_bands for ex in band.examples]
            # Every third example of each kind is held out for scoring, never shown to the explainer.
            held = top[2::3] + quantile[2::3]
            prompt_top = [ex for i, ex in enumerate(top) if i % 3 != 2]
            prompt_quantile = [ex for i, ex in enumerate(quantile) if i % 3 != 2]
            promoted = [
                token_text(vocab, int(t)) for t in (detail.promoted_ids if detail.promoted_ids is not None else [])
            ]
            suppressed = [
                token_text(vocab, int(t)) for t in (detail.suppressed_ids if detail.suppressed_ids is not None else [])
            ]
            yield FeatureRecord(
                index=int(index),
                top_examples=prompt_top,
                quantile_examples=prompt_quantile,
                logit_promoted=promoted,
                logit_suppressed=suppressed,
                density=detail.density,
                max_activation=detail.max,
                holdout_activating=held[:holdout],
                holdout_non_activating=pool.non_activating(int(index), holdout, vocab, rng),
            )
