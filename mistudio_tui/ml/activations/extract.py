"""Run a model over a tokenization and write the activations of hook points into safetensors shards.

Layout of an activation set folder:
    shard-00000.safetensors   one [n, d_in] tensor per hook name, plus token_ids [n] int32, sequence [n] int64
                              (row in the tokenization) and position [n] int32
    manifest.json             model, hooks, dims, dtype, shards, exclusions, resume cursor, ...
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mistudio_tui.ml.data.token_store import TokenStore
from mistudio_tui.ml.device import dtype_name, parse_dtype
from mistudio_tui.ml.models.hooks import resolve_hook, run_with_capture
from mistudio_tui.ml.models.loading import LoadedModel
from mistudio_tui.reporting import JobContext

MANIFEST_FILE = "manifest.json"
FORMAT_NAME = "mistudio-activations"
FORMAT_VERSION = 1
COLUMNS = ("token_ids", "sequence", "position")
EXCLUSION_KINDS = ("padding", "bos", "special")
# Keys a tokenization's meta.json may use for the ids of special tokens and separators. The pad id is left out:
# padding is known from the row lengths, and a tokenizer without a pad token may pad with an ordinary token.
_ID_KEYS = ("bos_token_id", "bos_id", "eos_token_id", "eos_id", "sep_token_id", "sep_id", "separator_id",
            "separator_token_id")  # fmt: skip
_ID_LIST_KEYS = ("special_token_ids", "special_ids", "all_special_ids")
# Settings that must match for a rerun to continue an existing activation set.
_RESUME_KEYS = ("model", "hooks", "tokenization", "dtype", "context_size", "exclude_bos", "exclude_special")


def shard_name(index: int) -> str:
    """File name of shard `index`."""
    return f"shard-{index:05d}.safetensors"


def now_iso() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write manifest.json atomically."""
    tmp = folder / (MANIFEST_FILE + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(folder / MANIFEST_FILE)


@dataclass(frozen=True)
class Exclusion:
    """Which token positions never become activation rows: padding always, BOS and special ids on request."""

    bos_id: int | None
    special_ids: tuple[int, ...]
    exclude_bos: bool = True
    exclude_special: bool = True

    @classmethod
    def build(cls, tokens: TokenStore, tokenizer: Any, exclude_bos: bool, exclude_special: bool) -> Exclusion:
        """Collect the BOS and special ids from the tokenization's meta.json and the tokenizer."""
        meta = tokens.meta
        ids: set[int] = set()
        for key in _ID_KEYS:
            if isinstance(meta.get(key), int):
                ids.add(int(meta[key]))
        for key in _ID_LIST_KEYS:
            if isinstance(meta.get(key), list):
                ids.update(int(i) for i in meta[key] if isinstance(i, int))
        bos = meta.get("bos_token_id", meta.get("bos_id"))
        if tokenizer is not None:
            ids.update(int(i) for i in getattr(tokenizer, "all_special_ids", []) or [])
            if bos is None:
                bos = getattr(tokenizer, "bos_token_id", None)
        return cls(None if bos is None else int(bos), tuple(sorted(ids)), bool(exclude_bos), bool(exclude_special))

    @cached_property
    def _special_table(self) -> np.ndarray:
        """Lookup table: is token id i special? (ids past the end map to the last entry, which is False)."""
        table = np.zeros(max(self.special_ids) + 2, dtype=bool)
        table[list(self.special_ids)] = True
        return table

    def classify(
        self, ids: np.ndarray, lengths: np.ndarray, skip: np.ndarray
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(keep mask, {kind: excluded mask}) over [rows, positions], skipping positions < skip[row]."""
        positions = np.arange(ids.shape[1])[None, :]
        visited = positions >= skip[:, None]
        valid = positions < lengths[:, None]
        padding = visited & ~valid
        inside = visited & valid
        bos = np.zeros_like(inside)
        special = np.zeros_like(inside)
        if self.exclude_bos and self.bos_id is not None:
            bos[:, 0] = inside[:, 0] & (ids[:, 0] == self.bos_id)
        if self.exclude_special and self.special_ids:
            table = self._special_table
            special = inside & ~bos & table[np.minimum(ids, len(table) - 1)]
        keep = inside & ~bos & ~special
        return keep, {"padding": padding, "bos": bos, "special": special}

    def to_dict(self) -> dict[str, Any]:
        return {
            "exclude_bos": self.exclude_bos,
            "exclude_special": self.exclude_special,
            "bos_token_id": self.bos_id,
            "special_token_ids": list(self.special_ids),
        }


@dataclass
class ActivationChunk:
    """The kept activation rows of one batch of token rows, in traversal order."""

    activations: dict[str, torch.Tensor]  # [k, d] per hook, on the model's device
    token_ids: np.ndarray  # [k] int64
    sequence: np.ndarray  # [k] int64, row in the tokenization
    position: np.ndarray  # [k] int64
    order: np.ndarray  # [k] int64, index into the traversal order of rows
    excluded: dict[str, np.ndarray]  # [rows, positions] masks of excluded positions
    order_start: int  # traversal index of the batch's first row
    context_size: int

    def __len__(self) -> int:
        return int(self.token_ids.shape[0])

    def cursor_after(self, row: int) -> tuple[int, int]:
        """Traversal cursor (order index, position) just after kept row `row`."""
        order, position = int(self.order[row]), int(self.position[row]) + 1
        return (order + 1, 0) if position >= self.context_size else (order, position)

    def excluded_before(self, cursor: tuple[int, int]) -> dict[str, int]:
        """Excluded positions of this batch that come before `cursor` in traversal order."""
        flat = (cursor[0] - self.order_start) * self.context_size + cursor[1]
        return {k: int(np.count_nonzero(m.reshape(-1)[:flat])) for k, m in self.excluded.items()}

    def excluded_total(self) -> dict[str, int]:
        return {k: int(np.count_nonzero(m)) for k, m in self.excluded.items()}


def check_compatible(loaded: LoadedModel, tokens: TokenStore) -> None:
    """Refuse a tokenization whose ids or context do not fit the model."""
    embeddings = loaded.model.get_input_embeddings()  # type: ignore[operator]  # a transformers model; nn.Module.__getattr__ types it as a Tensor
    vocab = int(getattr(embeddings, "num_embeddings", 0) or 0)
    meta_vocab = tokens.meta.get("vocab_size")
    if vocab and isinstance(meta_vocab, int) and meta_vocab > vocab:
        raise ValueError(
            f"tokenization {tokens.folder} uses a vocabulary of {meta_vocab} ids but model {loaded.name} "
            f"has {vocab} embeddings; tokenize with this model's tokenizer"
        )
    config = loaded.config.get_text_config() if hasattr(loaded.config, "get_text_config") else loaded.config
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if isinstance(limit, int) and tokens.context_size > limit:
        raise ValueError(
            f"tokenization {tokens.folder} has context size {tokens.context_size} but model {loaded.name} "
            f"accepts at most {limit} positions"
        )


def forward_hooks(
    loaded: LoadedModel, hooks: Sequence[str], ids: np.ndarray, lengths: np.ndarray
) -> dict[str, torch.Tensor]:
    """One forward pass over token rows [b, ctx], stopping after the last hook; {hook: [b, ctx, d]}."""
    device = loaded.device
    inputs: dict[str, Any] = {"input_ids": torch.from_numpy(ids).to(device, non_blocking=True)}
    if bool((lengths < ids.shape[1]).any()):
        mask = torch.from_numpy((np.arange(ids.shape[1])[None, :] < lengths[:, None]).astype(np.int64))
        inputs["attention_mask"] = mask.to(device, non_blocking=True)
    if loaded.is_causal_lm:
        inputs["use_cache"] = False
    with torch.inference_mode():
        acts = run_with_capture(loaded.model, hooks, **inputs)
    for hook, act in acts.items():
        if act.ndim != 3 or tuple(act.shape[:2]) != tuple(ids.shape):
            raise ValueError(
                f"hook {hook} gives activations of shape {tuple(act.shape)}; expected [batch, positions, d] "
                f"= [{ids.shape[0]}, {ids.shape[1]}, d]"
            )
    return acts


def iter_chunks(
    loaded: LoadedModel,
    tokens: TokenStore,
    hooks: Sequence[str],
    exclusion: Exclusion,
    batch_size: int,
    start: tuple[int, int] = (0, 0),
    order: np.ndarray | None = None,
) -> Iterator[ActivationChunk]:
    """Run the model over token rows in `order` (default: storage order) from `start`, yielding kept rows."""
    total = tokens.n_sequences if order is None else len(order)
    vocab = int(getattr(loaded.model.get_input_embeddings(), "num_embeddings", 0) or 0)  # type: ignore[operator]  # a transformers model; nn.Module.__getattr__ types it as a Tensor
    first, first_skip = start
    for lo in range(first, total, batch_size):
        hi = min(lo + batch_size, total)
        rows = np.arange(lo, hi) if order is None else np.asarray(order[lo:hi], dtype=np.int64)
        ids = np.asarray(tokens.tokens[lo:hi] if order is None else tokens.tokens[rows], dtype=np.int64)
        lengths = np.asarray(tokens.lengths[lo:hi] if order is None else tokens.lengths[rows], dtype=np.int64)
        if vocab and ids.size and int(ids.max()) >= vocab:
            raise ValueError(
                f"tokenization {tokens.folder} holds token id {int(ids.max())} but model {loaded.name} "
                f"has only {vocab} embeddings"
            )
        skip = np.zeros(hi - lo, dtype=np.int64)
        if lo == first:
            skip[0] = first_skip
        keep, excluded = exclusion.classify(ids, lengths, skip)
        flat = np.flatnonzero(keep)
        ctx_size = ids.shape[1]
        acts = forward_hooks(loaded, hooks, ids, lengths) if len(flat) else {}
        index = torch.from_numpy(flat).to(loaded.device, non_blocking=True)
        row_in_batch = flat // ctx_size
        yield ActivationChunk(
            activations={h: a.reshape(-1, a.shape[-1]).index_select(0, index) for h, a in acts.items()},
            token_ids=ids.reshape(-1)[flat],
            sequence=rows[row_in_batch],
            position=flat % ctx_size,
            order=lo + row_in_batch,
            excluded=excluded,
            order_start=lo,
            context_size=ctx_size,
        )


class _Buffer:
    """Rows of one shard being filled: one tensor per hook plus the token columns."""

    def __init__(self, hooks: Sequence[str], dims: dict[str, int], capacity: int, dtype: torch.dtype, pin: bool):
        self.activations = {h: torch.empty(capacity, dims[h], dtype=dtype, pin_memory=pin) for h in hooks}
        self.token_ids = np.empty(capacity, dtype=np.int32)
        self.sequence = np.empty(capacity, dtype=np.int64)
        self.position = np.empty(capacity, dtype=np.int32)
        self.fill = 0
        self.in_flight: Future[int] | None = None

    def write(self, path: Path, n: int, ready: torch.cuda.Event | None) -> int:
        """Write the first `n` rows to `path` atomically (after pending device copies); returns the file size."""
        from safetensors.torch import save_file

        if ready is not None:
            ready.synchronize()
        tensors = {hook: buffer[:n] for hook, buffer in self.activations.items()}
        columns: dict[str, np.ndarray[Any, Any]] = {
            "token_ids": self.token_ids,
            "sequence": self.sequence,
            "position": self.position,
        }
        tensors.update({name: torch.from_numpy(column[:n]) for name, column in columns.items()})
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp))
        tmp.replace(path)
        return path.stat().st_size


@dataclass
class _PendingShard:
    path: Path
    n_tokens: int
    cursor: tuple[int, int]
    excluded: dict[str, int]
    future: Future[int]


class _ShardWriter:
    """Fills a shard-sized buffer; full buffers are written by a background thread while the other one fills.

    Two buffers (pinned on CUDA, so device-to-host copies do not stall the GPU) keep memory bounded by two shards.
    """

    def __init__(
        self, hooks: Sequence[str], dims: dict[str, int], capacity: int, dtype: torch.dtype, device: torch.device
    ) -> None:
        self.capacity = capacity
        self.cuda = device.type == "cuda"
        self._buffers = [_Buffer(hooks, dims, capacity, dtype, self.cuda) for _ in range(2)]
        self._active = 0
        self._pending: deque[_PendingShard] = deque()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-writer")

    @property
    def fill(self) -> int:
        return self._buffers[self._active].fill

    @property
    def free(self) -> int:
        return self.capacity - self.fill

    def add(self, chunk: ActivationChunk, lo: int, hi: int) -> None:
        buffer = self._buffers[self._active]
        a, b = buffer.fill, buffer.fill + (hi - lo)
        for hook, target in buffer.activations.items():
            target[a:b].copy_(chunk.activations[hook][lo:hi].to(target.dtype), non_blocking=self.cuda)
        buffer.token_ids[a:b] = chunk.token_ids[lo:hi]
        buffer.sequence[a:b] = chunk.sequence[lo:hi]
        buffer.position[a:b] = chunk.position[lo:hi]
        buffer.fill = b

    def submit(self, path: Path, cursor: tuple[int, int], excluded: dict[str, int]) -> None:
        """Queue the filled buffer for writing as shard `path` and switch to the other buffer."""
        buffer = self._buffers[self._active]
        ready = None
        if self.cuda:
            ready = torch.cuda.Event()
            ready.record()
        future = self._pool.submit(buffer.write, path, buffer.fill, ready)
        buffer.in_flight = future
        self._pending.append(_PendingShard(path, buffer.fill, cursor, excluded, future))
        self._active ^= 1
        other = self._buffers[self._active]
        if other.in_flight is not None:
            other.in_flight.result()  # the only place extraction waits for the disk
            other.in_flight = None
        other.fill = 0

    def finished(self, wait: bool = False) -> list[tuple[_PendingShard, int]]:
        """Shards whose files are complete, in order, with their sizes (all of them when `wait`)."""
        done = []
        while self._pending and (wait or self._pending[0].future.done()):
            shard = self._pending.popleft()
            done.append((shard, shard.future.result()))
        return done

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _settings_mismatch(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in _RESUME_KEYS if old.get(k) != new.get(k)]


def _remove_partial_files(folder: Path, n_shards: int) -> None:
    """Delete shard files past the last complete one (left by an interrupted run) and temporary files."""
    for path in folder.glob("shard-*.safetensors*"):
        stem = path.name.split(".")[0]
        index = stem.removeprefix("shard-")
        if path.name.endswith(".tmp") or (index.isdigit() and int(index) >= n_shards):
            path.unlink()


def _validate_request(hooks: Sequence[str], n_tokens: int, batch_size: int, shard_tokens: int) -> None:
    if not hooks:
        raise ValueError("hooks: give at least one hook point")
    if len(set(hooks)) != len(hooks):
        raise ValueError(f"hooks: {', '.join(hooks)} names a hook point twice")
    reserved = [h for h in hooks if h in COLUMNS]
    if reserved:
        raise ValueError(f"hooks: {reserved[0]!r} is reserved for a column of the shards")
    for name, value in (("n_tokens", n_tokens), ("batch_size", batch_size), ("shard_tokens", shard_tokens)):
        if int(value) <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value}")


def extract_activations(
    loaded: LoadedModel,
    tokens: TokenStore,
    hooks: list[str],
    out_dir: Path,
    n_tokens: int,
    batch_size: int = 8,
    shard_tokens: int = 65536,
    store_dtype: str = "float32",
    exclude_bos: bool = True,
    exclude_special: bool = True,
    *,
    ctx: JobContext,
) -> dict[str, Any]:
    """Write activations of `hooks` for up to `n_tokens` kept positions as shards in `out_dir`; resumable."""
    hooks = list(hooks)
    _validate_request(hooks, n_tokens, batch_size, shard_tokens)
    for hook in hooks:
        resolve_hook(loaded.model, hook)
    dtype = parse_dtype(store_dtype)
    check_compatible(loaded, tokens)
    exclusion = Exclusion.build(tokens, loaded.tokenizer, exclude_bos, exclude_special)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = {
        "model": loaded.name,
        "hooks": hooks,
        "tokenization": str(Path(tokens.folder).resolve()),
        "dtype": dtype_name(dtype),
        "context_size": tokens.context_size,
        **exclusion.to_dict(),
    }
    manifest = _open_manifest(out_dir, settings, loaded)
    manifest["requested_tokens"] = int(n_tokens)
    done = int(manifest["n_tokens"])
    if done >= n_tokens or manifest["tokenization_exhausted"]:
        manifest["complete"] = True
        write_manifest(out_dir, manifest)
        ctx.log(f"activation set {out_dir} already holds {done} tokens")
        return manifest
    manifest["complete"] = False
    write_manifest(out_dir, manifest)
    cursor = (int(manifest["cursor"]["sequence"]), int(manifest["cursor"]["position"]))
    excluded = dict(manifest["excluded"])
    ctx.log(f"extracting {', '.join(hooks)} from {loaded.name}: {n_tokens} tokens, resuming at {done}")
    writer: _ShardWriter | None = None
    queued = done  # rows in shards written or being written
    next_index = len(manifest["shards"])

    def record(finished: list[tuple[_PendingShard, int]]) -> None:
        nonlocal done
        for shard, size in finished:
            done += shard.n_tokens
            manifest["shards"].append({"file": shard.path.name, "n_tokens": shard.n_tokens, "bytes": size})
            manifest.update(
                n_tokens=done,
                cursor={"sequence": shard.cursor[0], "position": shard.cursor[1]},
                excluded=shard.excluded,
                updated=now_iso(),
            )
            write_manifest(out_dir, manifest)
            ctx.artifact("activation_shard", shard.path, n_tokens=shard.n_tokens, index=len(manifest["shards"]) - 1)

    def submit(cursor: tuple[int, int], counts: dict[str, int]) -> None:
        nonlocal queued, next_index
        assert writer is not None
        queued += writer.fill
        writer.submit(out_dir / shard_name(next_index), cursor, counts)
        next_index += 1

    exhausted = False
    try:
        for chunk in iter_chunks(loaded, tokens, hooks, exclusion, batch_size, start=cursor):
            ctx.check_cancelled()
            if writer is None and len(chunk):
                dims = {h: int(a.shape[-1]) for h, a in chunk.activations.items()}
                _check_dims(manifest, dims)
                writer = _ShardWriter(hooks, dims, shard_tokens, dtype, loaded.device)
            lo = 0
            while lo < len(chunk) and queued < n_tokens:
                assert writer is not None
                take = min(len(chunk) - lo, writer.free, n_tokens - queued - writer.fill)
                writer.add(chunk, lo, lo + take)
                lo += take
                if writer.free == 0 or queued + writer.fill >= n_tokens:
                    cut = chunk.cursor_after(lo - 1)
                    before = chunk.excluded_before(cut)
                    submit(cut, {k: excluded[k] + before[k] for k in EXCLUSION_KINDS})
            if writer is not None:
                record(writer.finished())
            if queued >= n_tokens:
                break
            chunk_counts = chunk.excluded_total()
            excluded = {k: excluded[k] + chunk_counts[k] for k in EXCLUSION_KINDS}
            buffered = queued + (writer.fill if writer else 0)
            ctx.progress(buffered, n_tokens, text=f"{next_index} shards", unit="tokens")
        else:
            exhausted = True
            if writer is not None and writer.fill:
                submit((tokens.n_sequences, 0), excluded)
    finally:
        if writer is not None:
            # shards already handed to the writer are complete data: record them even when cancelled
            record(writer.finished(wait=True))
            writer.close()
    if exhausted:
        manifest.update(
            cursor={"sequence": tokens.n_sequences, "position": 0}, excluded=excluded, tokenization_exhausted=True
        )
        if done < n_tokens:
            ctx.log(f"the tokenization ran out after {done} of {n_tokens} requested tokens")
    manifest.update(complete=True, updated=now_iso())
    write_manifest(out_dir, manifest)
    ctx.progress(done, n_tokens, text=f"{len(manifest['shards'])} shards", unit="tokens")
    ctx.flush()
    return manifest


def _check_dims(manifest: dict[str, Any], dims: dict[str, int]) -> None:
    known = manifest.get("d_in_by_hook") or {}
    if known and known != dims:
        raise ValueError(f"activation widths {dims} differ from the existing shards' {known}")
    manifest["d_in_by_hook"] = dims
    widths = set(dims.values())
    manifest["d_in"] = widths.pop() if len(widths) == 1 else None


def _open_manifest(out_dir: Path, settings: dict[str, Any], loaded: LoadedModel) -> dict[str, Any]:
    """The existing manifest when its settings match (stray partial shards removed), else a fresh one."""
    path = out_dir / MANIFEST_FILE
    if path.exists():
        try:
            manifest: dict[str, Any] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc}); delete the folder to start over") from None
        diff = _settings_mismatch(manifest, settings)
        if diff:
            raise ValueError(
                f"{out_dir} already holds activations made with other settings ({'; '.join(diff)}); "
                "choose another folder or delete it"
            )
        for shard in manifest["shards"]:
            if not (out_dir / shard["file"]).is_file():
                raise FileNotFoundError(f"activation shard {out_dir / shard['file']} listed in {path} is missing")
        _remove_partial_files(out_dir, len(manifest["shards"]))
        return manifest
    _remove_partial_files(out_dir, 0)
    created = now_iso()
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "source": "extracted",
        **settings,
        "model_family": loaded.family,
        "model_dtype": dtype_name(loaded.dtype),
        "d_in": None,
        "d_in_by_hook": {},
        "has_token_ids": True,
        "n_tokens": 0,
        "requested_tokens": 0,
        "shards": [],
        "excluded": dict.fromkeys(EXCLUSION_KINDS, 0),
        "cursor": {"sequence": 0, "position": 0},
        "tokenization_exhausted": False,
        "complete": False,
        "created": created,
        "updated": created,
    }
