"""PrefetchingSource: reading ahead in a thread changes neither the batches nor the resumable position."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mistudio_tui.jobs.context import LocalContext
from mistudio_tui.ml.batches import PrefetchingSource, TensorBatchSource
from mistudio_tui.ml.sae.config import SAEConfig, TrainConfig
from mistudio_tui.ml.sae.trainer import SAETrainer


def data() -> torch.Tensor:
    return torch.arange(50 * 3, dtype=torch.float32).view(50, 3)


def test_same_batches_and_the_state_counts_only_what_was_handed_out():
    plain, ahead = TensorBatchSource(data(), seed=1), PrefetchingSource(TensorBatchSource(data(), seed=1), "cpu")
    for _ in range(7):  # crosses an epoch boundary (50 rows, 8 per batch)
        assert torch.equal(plain.next_batch(8), ahead.next_batch(8))
        assert ahead.state_dict() == plain.state_dict()
    assert torch.equal(plain.next_batch(5), ahead.next_batch(5))  # a new batch size rewinds what was read ahead
    assert ahead.state_dict() == plain.state_dict()
    ahead.close()


def test_resuming_from_the_state_continues_the_same_sequence():
    ahead = PrefetchingSource(TensorBatchSource(data(), seed=2), "cpu")
    for _ in range(3):
        ahead.next_batch(8)
    state = dict(ahead.state_dict())
    expected = [ahead.next_batch(8) for _ in range(4)]
    ahead.close()
    resumed = PrefetchingSource(TensorBatchSource(data(), seed=2), "cpu")
    resumed.load_state_dict(state)
    assert all(torch.equal(e, resumed.next_batch(8)) for e in expected)
    resumed.close()


def test_a_failing_source_raises_in_the_consumer():
    class Broken(TensorBatchSource):
        def next_batch(self, batch_size: int) -> torch.Tensor:
            if self.position >= 16:
                raise ValueError("shard 3 is corrupt")
            return super().next_batch(batch_size)

    ahead = PrefetchingSource(Broken(data(), seed=0), "cpu")
    ahead.next_batch(8)
    ahead.next_batch(8)
    with pytest.raises(ValueError, match="shard 3 is corrupt"):
        ahead.next_batch(8)
    ahead.close()


def test_training_with_prefetch_equals_training_without(tmp_path: Path):
    x = torch.randn(2048, 16, generator=torch.Generator().manual_seed(0))
    sae_cfg = SAEConfig(d_in=16, d_sae=64, k=4, architecture="topk")
    results = []
    for prefetch in (False, True):
        train_cfg = TrainConfig(total_tokens=256 * 12, batch_size=256, init_tokens=512, metrics_every=4)
        trainer = SAETrainer(
            sae_cfg, train_cfg, TensorBatchSource(x, seed=3), tmp_path / str(prefetch), LocalContext(), prefetch
        )
        trainer.prepare(resume=False)
        trainer.train()
        results.append((trainer.sae.W_dec.detach().clone(), trainer.source.state_dict()))
    assert torch.equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]
