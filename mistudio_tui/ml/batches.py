"""The BatchSource protocol: what SAE training pulls activation batches from (shards, the model, a tensor)."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Sequence
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
        """This epoch's row order, on the data's device (indexing GPU data with a CPU index copies the index to the
        GPU and waits for the device, every batch)."""
        n = self.data.shape[0]
        if not self.shuffle:
            return torch.arange(n, device=self.data.device)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(n, generator=gen).to(self.data.device)

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
        return (parts[0] if len(parts) == 1 else torch.cat(parts)).float()

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seed = int(state.get("seed", self.seed))
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._order = self._make_order()


# (batch on the device, its copy-done CUDA event or None, the source state after it, the producer's error or None)
_Prefetched = tuple[torch.Tensor | None, Any, dict[str, Any], BaseException | None]


class ConcatenatedSource:
    """Rows of several sources side by side ([input | target] rows of a transcoder): the sources must serve the
    same tokens in the same order (e.g. two hooks of one activation set read with the same seed and rows)."""

    def __init__(self, sources: Sequence[BatchSource]) -> None:
        if not sources:
            raise ValueError("ConcatenatedSource needs at least one source")
        self.sources = list(sources)
        self.d_in = sum(int(source.d_in) for source in self.sources)

    def next_batch(self, batch_size: int) -> torch.Tensor:
        return torch.cat([source.next_batch(batch_size) for source in self.sources], dim=1)

    def state_dict(self) -> dict[str, Any]:
        return {"parts": [source.state_dict() for source in self.sources]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        parts = state.get("parts")
        if not isinstance(parts, list) or len(parts) != len(self.sources):
            raise ValueError(f"batch-source state holds {parts and len(parts)} parts, expected {len(self.sources)}")
        for source, part in zip(self.sources, parts, strict=True):
            source.load_state_dict(part)


class PrefetchingSource:
    """Reads the next batch in a background thread (and, on CUDA, copies it from pinned memory on a side stream)
    while the current step computes. `state_dict()` is the wrapped source's state after the last batch handed out,
    so checkpoints never skip the batches that were read ahead."""

    def __init__(self, source: BatchSource, device: torch.device, depth: int = 2) -> None:
        self.source, self.device, self.depth = source, torch.device(device), depth
        self.d_in = source.d_in
        self._state = source.state_dict()
        self._size: int | None = None
        self._queue: queue.Queue[_Prefetched] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    def next_batch(self, batch_size: int) -> torch.Tensor:
        if batch_size != self._size:
            self._restart(batch_size)
        batch, ready, state, error = self._queue.get()
        if error is not None:
            self._size = None
            raise error
        assert batch is not None
        if ready is not None:  # the copy ran on the side stream: order it before this stream's use
            current = torch.cuda.current_stream(self.device)
            current.wait_event(ready)
            batch.record_stream(current)
        self._state = state
        return batch

    def state_dict(self) -> dict[str, Any]:
        return self._state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.close()
        self.source.load_state_dict(state)
        self._state = self.source.state_dict()

    def close(self) -> None:
        """Stop reading ahead and rewind the source to the last batch handed out."""
        if self._thread is not None:
            self._stop.set()
            while self._thread.is_alive():
                with contextlib.suppress(queue.Empty):
                    self._queue.get(timeout=0.05)
            self._thread = None
            self.source.load_state_dict(self._state)
        while not self._queue.empty():
            self._queue.get_nowait()
        self._size = None

    def _restart(self, batch_size: int) -> None:
        self.close()
        self._size, self._stop = batch_size, threading.Event()
        self._thread = threading.Thread(
            target=self._produce, args=(batch_size, self._stop), name="batch-prefetch", daemon=True
        )
        self._thread.start()

    def _produce(self, batch_size: int, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                batch = self.source.next_batch(batch_size)
                state = self.source.state_dict()
                ready = None
                if self._stream is not None:
                    with torch.cuda.stream(self._stream):
                        host = batch.pin_memory() if batch.device.type == "cpu" else batch
                        batch = host.to(self.device, non_blocking=True).float()
                        ready = torch.cuda.Event()
                        ready.record(self._stream)
                item: _Prefetched = (batch, ready, state, None)
            except BaseException as exc:  # handed to the consumer, which raises it
                item = (None, None, self._state, exc)
            while not stop.is_set():
                try:
                    self._queue.put(item, timeout=0.05)
                    break
                except queue.Full:
                    continue
            if item[3] is not None:
                return
