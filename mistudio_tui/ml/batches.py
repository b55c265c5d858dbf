"""The BatchSource protocol: what SAE training pulls activation batches from (shards, the model, a tensor)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class BatchSource(Protocol):
    """An endless, resumable stream of activation rows [batch, d_in] (float32, on the CPU or device)."""

    d_in: int

    def next_batch(self, batch_size: int) -> torch.Tensor:
        """The next `batch_size` rows; wraps around (a new shuffled epoch) when the data is exhausted."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Enough to continue the exact same sequence of batches after a restart."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class TensorBatchSource:
    """A BatchSource over an in-memory tensor, reshuffled each epoch with a seeded generator."""

    def __init__(self, data: torch.Tensor, seed: int = 0, shuffle: bool = True) -> None:
        if data.ndim != 2:
            raise ValueError(f"expected a [tokens, d_in] tensor, got shape {tuple(data.shape)}")
        self.data = data
        self.d_in = int(data.shape[1])
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.position = 0
        self._order = self._make_order()

    def _make_order(self) -> torch.Tensor:
        n = self.data.shape[0]
        if not self.shuffle:
            return torch.arange(n)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(n, generator=gen)

    def next_batch(self, batch_size: int) -> torch.Tensor:
        parts: list[torch.Tensor] = []
        need = batch_size
        while need > 0:
            if self.position >= len(self._order):
                self.epoch += 1
                self.position = 0
                self._order = self._make_order()
            take = self._order[self.position : self.position + need]
            self.position += len(take)
            need -= len(take)
            parts.append(self.data[take])
        return torch.cat(parts).float()

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = int(state.get("seed", self.seed))
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._order = self._make_order()
