"""Read an activation set back: row ranges by memory map, and a shuffled, resumable BatchSource over it."""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mistudio_tui.ml.activations.extract import COLUMNS, MANIFEST_FILE
from mistudio_tui.ml.device import parse_dtype

HELD_OUT_FRACTION = 0.05  # the tail of an activation set that training never sees
# Rows per piece the shuffler loads at once; shards larger than this (e.g. imported files) are read in pieces.
DEFAULT_PIECE_ROWS = 65536


class ActivationStore:
    """An activation set folder: manifest plus shards read lazily through safetensors memory maps."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        path = self.folder / MANIFEST_FILE
        if not self.folder.is_dir():
            raise FileNotFoundError(f"activation set folder {self.folder} does not exist")
        if not path.is_file():
            raise FileNotFoundError(f"{self.folder} is not an activation set: {MANIFEST_FILE} is missing")
        try:
            self.manifest: dict[str, Any] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
        for key in ("hooks", "shards", "n_tokens"):
            if key not in self.manifest:
                raise ValueError(f"{path} has no {key!r} field; it is not an activation set manifest")
        self.hooks: list[str] = list(self.manifest["hooks"])
        self.shards: list[dict[str, Any]] = list(self.manifest["shards"])
        self.dims: dict[str, int] = {h: int(d) for h, d in (self.manifest.get("d_in_by_hook") or {}).items()}
        self._keys: dict[str, str] = dict(self.manifest.get("tensor_keys") or {})
        sizes = [int(s["n_tokens"]) for s in self.shards]
        self.offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).tolist()
        for index in range(len(self.shards)):
            self._check_file(index)

    # --- facts --------------------------------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        """Rows in the set (all shards)."""
        return int(self.offsets[-1])

    @property
    def d_in(self) -> int:
        """Activation width, when every hook has the same one."""
        widths = set(self.dims.values())
        if len(widths) != 1:
            raise ValueError(f"hooks of {self.folder} have different widths {self.dims}; use dims[hook]")
        return widths.pop()

    @property
    def dtype(self) -> torch.dtype:
        return parse_dtype(self.manifest.get("dtype", "float32"))

    @property
    def has_token_ids(self) -> bool:
        return bool(self.manifest.get("has_token_ids", False))

    @property
    def context_size(self) -> int | None:
        value = self.manifest.get("context_size")
        return int(value) if value is not None else None

    def shard_path(self, index: int) -> Path:
        """Where shard `index` lives (relative to the folder; imported sets may hold absolute paths)."""
        return self.folder / str(self.shards[index]["file"])

    # --- reading ------------------------------------------------------------------------------------
    def _check_file(self, index: int) -> None:
        path = self.shard_path(index)
        if not path.is_file():
            raise FileNotFoundError(f"activation shard {path} is missing")
        expected = self.shards[index].get("bytes")
        if expected is not None and path.stat().st_size != int(expected):
            raise ValueError(
                f"activation shard {path} is corrupt: {path.stat().st_size} bytes, expected {int(expected)}"
            )

    def _slice(self, index: int, key: str, lo: int, hi: int) -> torch.Tensor:
        from safetensors import safe_open

        path = self.shard_path(index)
        try:
            with safe_open(str(path), framework="pt") as handle:
                if key not in handle.keys():  # noqa: SIM118 - safe_open has no __contains__
                    raise ValueError(f"activation shard {path} has no tensor {key!r}")
                rows: torch.Tensor = handle.get_slice(key)[lo:hi]
                return rows
        except FileNotFoundError:
            raise FileNotFoundError(f"activation shard {path} is missing") from None
        except ValueError:
            raise
        except Exception as exc:  # safetensors raises its own error type for malformed files
            raise ValueError(f"activation shard {path} is corrupt: {exc}") from None

    def _check_hook(self, hook: str) -> str:
        if hook not in self.hooks:
            raise ValueError(f"activation set {self.folder} has no hook {hook!r}; it holds {', '.join(self.hooks)}")
        return self._keys.get(hook, hook)

    def _read(self, key: str, start: int, stop: int | None) -> torch.Tensor:
        stop = self.n_tokens if stop is None else min(int(stop), self.n_tokens)
        start = max(0, int(start))
        if start >= stop:
            raise ValueError(
                f"empty row range [{start}, {stop}) of activation set {self.folder} ({self.n_tokens} rows)"
            )
        first = bisect.bisect_right(self.offsets, start) - 1
        parts = []
        index = first
        while index < len(self.shards) and self.offsets[index] < stop:
            base = self.offsets[index]
            lo, hi = max(start, base) - base, min(stop, self.offsets[index + 1]) - base
            if hi > lo:
                parts.append(self._slice(index, key, lo, hi))
            index += 1
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def read(self, hook: str, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Rows [start, stop) of `hook`'s activations, in the stored dtype."""
        return self._read(self._check_hook(hook), start, stop)

    def read_shard(self, hook: str, index: int, lo: int = 0, hi: int | None = None) -> torch.Tensor:
        """Rows [lo, hi) of one shard."""
        key = self._check_hook(hook)
        hi = int(self.shards[index]["n_tokens"]) if hi is None else hi
        return self._slice(index, key, lo, hi)

    def _column(self, column: str, start: int, stop: int | None) -> torch.Tensor:
        if not self.has_token_ids:
            raise ValueError(f"activation set {self.folder} was imported without token ids")
        return self._read(column, start, stop)

    def token_ids(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Token id of each row."""
        return self._column(COLUMNS[0], start, stop)

    def sequences(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Row in the tokenization each activation row came from."""
        return self._column(COLUMNS[1], start, stop)

    def positions(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Position within its sequence of each row."""
        return self._column(COLUMNS[2], start, stop)

    def iter_batches(
        self, hook: str, batch_size: int, start: int = 0, stop: int | None = None
    ) -> Iterator[torch.Tensor]:
        """Rows in storage order as float32 batches (for evaluation)."""
        stop = self.n_tokens if stop is None else min(stop, self.n_tokens)
        for lo in range(start, stop, batch_size):
            yield self.read(hook, lo, min(lo + batch_size, stop)).float()

    def verify(self) -> None:
        """Open every shard and check it holds each hook with the recorded shape (clear error otherwise)."""
        for index, shard in enumerate(self.shards):
            n = int(shard["n_tokens"])
            for hook in self.hooks:
                rows = self.read_shard(hook, index, max(0, n - 1), n)
                if rows.shape[0] != min(1, n) or (hook in self.dims and rows.shape[-1] != self.dims[hook]):
                    raise ValueError(f"activation shard {self.shard_path(index)} does not match its manifest")

    def pieces(
        self, start: int = 0, stop: int | None = None, max_rows: int = DEFAULT_PIECE_ROWS
    ) -> list[tuple[int, int, int]]:
        """(shard, lo, hi) pieces of at most `max_rows` covering global rows [start, stop)."""
        stop = self.n_tokens if stop is None else min(stop, self.n_tokens)
        out: list[tuple[int, int, int]] = []
        for index in range(len(self.shards)):
            base, end = self.offsets[index], self.offsets[index + 1]
            lo, hi = max(start, base), min(stop, end)
            for a in range(lo, hi, max_rows):
                out.append((index, a - base, min(a + max_rows, hi) - base))
        return out


def held_out_split(
    store: ActivationStore, fraction: float = 0.0, shards: int = 0
) -> tuple[tuple[int, int], tuple[int, int]]:
    """(train rows, held-out rows) as [start, stop) ranges: the last `fraction` of rows or last shards."""
    n = store.n_tokens
    if shards:
        if not 0 < shards < len(store.shards):
            raise ValueError(f"held-out shards must be between 1 and {len(store.shards) - 1}, got {shards}")
        cut = int(store.offsets[len(store.shards) - shards])
    else:
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"held-out fraction must be between 0 and 1, got {fraction}")
        cut = n - max(1, round(n * fraction))
    if cut <= 0:
        raise ValueError(f"activation set {store.folder} has too few rows ({n}) to hold some out")
    return (0, cut), (cut, n)


class ShuffledActivationSource:
    """A BatchSource over one hook of an ActivationStore, shuffled across and within shards, resumable.

    Each epoch visits the pieces (shards, or parts of large shards) in a seeded random order, loads
    `buffer_shards` of them at a time and serves their rows in a seeded random order. With `prefetch`, the next
    window is read by a background thread while this one is served, so memory holds at most two windows.
    """

    def __init__(
        self,
        store: ActivationStore,
        hook: str,
        seed: int = 0,
        buffer_shards: int = 4,
        rows: tuple[int, int] | None = None,
        device: str | torch.device = "cpu",
        piece_rows: int = DEFAULT_PIECE_ROWS,
        prefetch: bool = True,
    ) -> None:
        if buffer_shards < 1:
            raise ValueError(f"buffer_shards must be at least 1, got {buffer_shards}")
        self.store = store
        self.hook = hook
        self.seed = int(seed)
        self.buffer_shards = int(buffer_shards)
        self.rows = (0, store.n_tokens) if rows is None else (int(rows[0]), int(rows[1]))
        self.device = torch.device(device)
        self.pieces = store.pieces(*self.rows, max_rows=piece_rows)
        if not self.pieces:
            raise ValueError(f"activation set {store.folder} has no rows in range {self.rows} for {hook!r}")
        store._check_hook(hook)
        self.d_in = int(store.dims.get(hook) or store.read_shard(hook, self.pieces[0][0], 0, 1).shape[-1])
        self.epoch = 0
        self.window = 0
        self.position = 0
        self._loaded: tuple[int, int] | None = None
        self._data: torch.Tensor | None = None
        self._order: torch.Tensor | None = None
        self._epoch_windows: tuple[int, list[list[tuple[int, int, int]]]] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="window-reader") if prefetch else None
        self._prefetched: tuple[tuple[int, int], Future[tuple[torch.Tensor, torch.Tensor]]] | None = None

    def _generator(self, *parts: int) -> torch.Generator:
        key = self.seed
        for part in parts:
            key = (key * 1_000_003 + part) % (2**63 - 1)
        return torch.Generator().manual_seed(key)

    def _windows(self, epoch: int) -> list[list[tuple[int, int, int]]]:
        """The pieces of `epoch` in shuffled order, grouped into windows of `buffer_shards`."""
        if self._epoch_windows is None or self._epoch_windows[0] != epoch:
            perm = torch.randperm(len(self.pieces), generator=self._generator(epoch)).tolist()
            ordered = [self.pieces[i] for i in perm]
            step = self.buffer_shards
            self._epoch_windows = (epoch, [ordered[i : i + step] for i in range(0, len(ordered), step)])
        return self._epoch_windows[1]

    def _read_window(
        self, key: tuple[int, int], pieces: list[tuple[int, int, int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, serving order) of window `key` = (epoch, window)."""
        total = sum(hi - lo for _, lo, hi in pieces)
        data = torch.empty(total, self.d_in, dtype=self.store.dtype)
        fill = 0
        for shard, lo, hi in pieces:
            data[fill : fill + hi - lo] = self.store.read_shard(self.hook, shard, lo, hi)
            fill += hi - lo
        order = torch.randperm(total, generator=self._generator(key[0], key[1] + 1))
        return data.to(self.device), order.to(self.device)

    def _following(self, key: tuple[int, int]) -> tuple[int, int]:
        epoch, window = key
        return (epoch, window + 1) if window + 1 < len(self._windows(epoch)) else (epoch + 1, 0)

    def _load(self) -> None:
        key = (self.epoch, self.window)
        if self._loaded == key:
            return
        self._data = self._order = None
        if self._prefetched is not None and self._prefetched[0] == key:
            self._data, self._order = self._prefetched[1].result()
        else:
            self._data, self._order = self._read_window(key, self._windows(key[0])[key[1]])
        self._prefetched = None
        self._loaded = key
        if self._pool is not None:
            following = self._following(key)
            pieces = self._windows(following[0])[following[1]]
            self._prefetched = (following, self._pool.submit(self._read_window, following, pieces))

    def next_batch(self, batch_size: int) -> torch.Tensor:
        """The next `batch_size` rows as float32; starts a new shuffled epoch when the data runs out."""
        parts = []
        need = int(batch_size)
        while need > 0:
            self._load()
            assert self._data is not None and self._order is not None
            take = self._order[self.position : self.position + need]
            parts.append(self._data.index_select(0, take))
            self.position += len(take)
            need -= len(take)
            if self.position >= len(self._order):
                self.position = 0
                self.window += 1
                if self.window >= len(self._windows(self.epoch)):
                    self.window = 0
                    self.epoch += 1
        batch = parts[0] if len(parts) == 1 else torch.cat(parts)
        return batch.float()

    def state_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "hook": self.hook,
            "rows": list(self.rows),
            "buffer_shards": self.buffer_shards,
            "epoch": self.epoch,
            "window": self.window,
            "position": self.position,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("hook", self.hook) != self.hook or list(state.get("rows", self.rows)) != list(self.rows):
            raise ValueError(
                f"batch-source state is for hook {state.get('hook')!r} rows {state.get('rows')}, "
                f"not {self.hook!r} rows {list(self.rows)}"
            )
        self.seed = int(state["seed"])
        self.buffer_shards = int(state.get("buffer_shards", self.buffer_shards))
        self.epoch = int(state["epoch"])
        self.window = int(state["window"])
        self.position = int(state["position"])
        self._loaded = None
        self._prefetched = None
        self._epoch_windows = None


def store_source(folder: str, hook: str, seed: int, held_out: bool = False, hook_out: str | None = None) -> Any:
    """The shuffled training rows (or the held-out rows) of one hook of an activation set; with `hook_out`,
    [hook | hook_out] rows of the same tokens (a transcoder's input and target)."""
    from mistudio_tui.ml.batches import ConcatenatedSource

    store = ActivationStore(Path(folder))
    train_rows, held_rows = held_out_split(store, fraction=HELD_OUT_FRACTION)
    # the same seed and rows give every hook the same token order, so the columns line up
    seed, rows, prefetch = (seed + 1, held_rows, False) if held_out else (seed, train_rows, True)
    hooks = [hook] if hook_out is None else [hook, hook_out]
    sources = [ShuffledActivationSource(store, name, seed=seed, rows=rows, prefetch=prefetch) for name in hooks]
    return sources[0] if hook_out is None else ConcatenatedSource(sources)
