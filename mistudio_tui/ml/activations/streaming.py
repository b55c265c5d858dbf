"""Activations straight from the model (no disk cache) as shuffled, resumable BatchSources.

An `ActivationStream` runs the model over a tokenization (sequences in a seeded random order per epoch),
fills a window of `buffer_tokens` rows for every hook in one forward pass per batch, and serves each hook
through its own consumer (`stream.source(hook)`), so one forward pass feeds N SAEs. A window is rebuilt from
its start cursor on resume; windows no consumer needs are dropped, so memory holds at most `max_windows`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mistudio_tui.ml.activations.extract import Exclusion, check_compatible, forward_hooks, iter_chunks
from mistudio_tui.ml.data.token_store import TokenStore
from mistudio_tui.ml.models.hooks import resolve_hook
from mistudio_tui.ml.models.loading import LoadedModel

Cursor = tuple[int, int, int]  # (epoch, index into that epoch's sequence order, position in the sequence)


def _generator(*parts: int) -> torch.Generator:
    key = 0
    for part in parts:
        key = (key * 1_000_003 + int(part)) % (2**63 - 1)
    return torch.Generator().manual_seed(key)


@dataclass
class _Window:
    number: int
    start: Cursor
    end: Cursor
    data: dict[str, torch.Tensor]  # [buffer_tokens, d] per hook, in traversal order
    order: torch.Tensor  # the serving permutation


class ActivationStream:
    """Runs the model on the fly and keeps a bounded, shuffled window of rows for several hooks."""

    def __init__(
        self,
        loaded: LoadedModel,
        tokens: TokenStore,
        hooks: Sequence[str],
        seed: int = 0,
        buffer_tokens: int = 65536,
        batch_size: int = 8,
        exclude_bos: bool = True,
        exclude_special: bool = True,
        device: str | torch.device | None = None,
        max_windows: int = 2,
    ) -> None:
        hooks = list(dict.fromkeys(hooks))
        if not hooks:
            raise ValueError("hooks: give at least one hook point")
        for name, value in (
            ("buffer_tokens", buffer_tokens),
            ("batch_size", batch_size),
            ("max_windows", max_windows),
        ):
            if int(value) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if tokens.n_sequences == 0:
            raise ValueError(f"tokenization {tokens.folder} is empty")
        for hook in hooks:
            resolve_hook(loaded.model, hook)
        check_compatible(loaded, tokens)
        self.loaded = loaded
        self.tokens = tokens
        self.hooks = hooks
        self.seed = int(seed)
        self.buffer_tokens = int(buffer_tokens)
        self.batch_size = int(batch_size)
        self.max_windows = int(max_windows)
        self.device = torch.device(device) if device is not None else loaded.device
        self.exclusion = Exclusion.build(tokens, loaded.tokenizer, exclude_bos, exclude_special)
        self.dims, self.act_dtype = self._probe()
        self.forward_batches = 0
        self._starts: dict[int, Cursor] = {0: (0, 0, 0)}
        self._windows: dict[int, _Window] = {}
        self._consumers: dict[str, HookActivationSource] = {}
        self._epoch_order: tuple[int, np.ndarray] | None = None

    def _probe(self) -> tuple[dict[str, int], torch.dtype]:
        """Widths and dtype of each hook's activations, from one forward pass over the first sequence."""
        ids = np.asarray(self.tokens.tokens[:1], dtype=np.int64)
        lengths = np.asarray(self.tokens.lengths[:1], dtype=np.int64)
        acts = forward_hooks(self.loaded, self.hooks, ids, lengths)
        return {h: int(a.shape[-1]) for h, a in acts.items()}, next(iter(acts.values())).dtype

    def source(self, hook: str) -> HookActivationSource:
        """The BatchSource serving `hook` (one per hook, all fed by the same forward passes)."""
        if hook not in self.hooks:
            raise ValueError(f"this stream captures {', '.join(self.hooks)}, not {hook!r}")
        if hook not in self._consumers:
            self._consumers[hook] = HookActivationSource(self, hook)
        return self._consumers[hook]

    def _order(self, epoch: int) -> np.ndarray:
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            perm = torch.randperm(self.tokens.n_sequences, generator=_generator(self.seed, epoch)).numpy()
            self._epoch_order = (epoch, perm)
        return self._epoch_order[1]

    def _build(self, number: int, start: Cursor) -> _Window:
        """Fill one window from `start`, wrapping into the next epoch when the tokenization runs out."""
        data = {
            h: torch.empty(self.buffer_tokens, d, dtype=self.act_dtype, device=self.device)
            for h, d in self.dims.items()
        }
        fill = 0
        epoch, index, position = start
        empty_epochs = 0
        end: Cursor | None = None
        while end is None:
            order = self._order(epoch)
            served = False
            for chunk in iter_chunks(
                self.loaded,
                self.tokens,
                self.hooks,
                self.exclusion,
                self.batch_size,
                (index, position),
                order,
            ):
                self.forward_batches += 1
                take = min(len(chunk), self.buffer_tokens - fill)
                if take <= 0:
                    continue
                served = True
                for hook, buffer in data.items():
                    buffer[fill : fill + take].copy_(chunk.activations[hook][:take])
                fill += take
                if fill == self.buffer_tokens:
                    end = (epoch, *chunk.cursor_after(take - 1))
                    break
            if end is None:
                empty_epochs = 0 if served else empty_epochs + 1
                if empty_epochs > 1:
                    raise ValueError(f"tokenization {self.tokens.folder} has no tokens left after exclusions")
                epoch, index, position = epoch + 1, 0, 0
        order_perm = torch.randperm(self.buffer_tokens, generator=_generator(self.seed, -1, number))
        return _Window(number, start, end, data, order_perm.to(self.device))

    def window(self, number: int) -> _Window:
        """Window `number`, built when first needed; older windows no consumer needs are released."""
        self._release()
        built = self._windows.get(number)
        if built is not None:
            return built
        if number not in self._starts:
            raise ValueError(f"window {number} cannot be built before window {number - 1}")
        if len(self._windows) >= self.max_windows:
            raise ValueError(
                f"hook consumers are over {self.max_windows} windows apart; draw batches from each in turn"
            )
        built = self._build(number, self._starts[number])
        self._windows[number] = built
        self._starts[number + 1] = built.end
        return built

    def _release(self) -> None:
        if not self._consumers:
            return
        oldest = min(c.window for c in self._consumers.values())
        for number in [n for n in self._windows if n < oldest]:
            del self._windows[number]

    def _restore_start(self, number: int, start: Cursor) -> None:
        if self._starts.get(number) != start:
            self._starts[number] = start
            self._windows.pop(number, None)


class HookActivationSource:
    """A BatchSource for one hook of an ActivationStream; resumable from `state_dict()`."""

    def __init__(self, stream: ActivationStream, hook: str) -> None:
        self.stream = stream
        self.hook = hook
        self.d_in = stream.dims[hook]
        self.window = 0
        self.position = 0

    def next_batch(self, batch_size: int) -> torch.Tensor:
        """The next `batch_size` rows as float32."""
        parts = []
        need = int(batch_size)
        while need > 0:
            window = self.stream.window(self.window)
            take = window.order[self.position : self.position + need]
            parts.append(window.data[self.hook].index_select(0, take))
            self.position += len(take)
            need -= len(take)
            if self.position >= len(window.order):
                self.window += 1
                self.position = 0
        batch = parts[0] if len(parts) == 1 else torch.cat(parts)
        return batch.float()

    def state_dict(self) -> dict[str, Any]:
        start = self.stream._starts[self.window]
        return {
            "hook": self.hook,
            "seed": self.stream.seed,
            "buffer_tokens": self.stream.buffer_tokens,
            "window": self.window,
            "position": self.position,
            "window_start": list(start),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        expected = (self.hook, self.stream.seed, self.stream.buffer_tokens)
        found = (state.get("hook"), state.get("seed"), state.get("buffer_tokens"))
        if found != expected:
            raise ValueError(f"batch-source state is for (hook, seed, buffer_tokens) {found}, not {expected}")
        self.window = int(state["window"])
        self.position = int(state["position"])
        epoch, index, position = (int(v) for v in state["window_start"])
        self.stream._restore_start(self.window, (epoch, index, position))


class ModelActivationSource(HookActivationSource):
    """A BatchSource for one hook that runs the model on the fly (a one-hook ActivationStream)."""

    def __init__(
        self,
        loaded: LoadedModel,
        tokens: TokenStore,
        hook: str,
        seed: int = 0,
        buffer_tokens: int = 65536,
        batch_size: int = 8,
        exclude_bos: bool = True,
        exclude_special: bool = True,
        device: str | torch.device | None = None,
    ) -> None:
        stream = ActivationStream(
            loaded, tokens, [hook], seed, buffer_tokens, batch_size, exclude_bos, exclude_special, device
        )
        super().__init__(stream, hook)
        stream._consumers[hook] = self
