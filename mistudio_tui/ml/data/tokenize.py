"""Tokenize a dataset folder into a token store: packed rows (the SAELens convention) or one document per row.

Packing concatenates the documents with the separator between them and cuts rows of exactly `context_size`
tokens; with `prepend_bos` each row is BOS followed by `context_size - 1` corpus tokens, and the tokens left over
at the end (less than a row) are dropped. Without packing each document fills one row, truncated and padded.

Streaming: documents are read and tokenized `batch_documents` at a time; only the tokens of one batch and the
leftover of less than one row are held. Resumable: after syncing the store, `tokenize_state.json` records the rows
written and where the first token not yet stored came from (document and offset), so a rerun with `resume=True`
cuts the store back to that point and continues with identical output.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np

from mistudio_tui.ml.data.ingest import iter_documents, read_dataset_meta
from mistudio_tui.ml.data.token_store import (
    LENGTHS_FILE,
    META_FILE,
    TOKEN_DTYPE,
    TOKENS_FILE,
    TokenStoreWriter,
)
from mistudio_tui.reporting import JobContext, LocalContext

DOC_LENGTHS_FILE = "doc_lengths.bin"
STATE_FILE = "tokenize_state.json"
STATE_VERSION = 1
CHECKPOINT_SECONDS = 2.0
DOC_LENGTH_DTYPE = np.int32


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def load_tokenizer(tokenizer: Any) -> Any:
    """A transformers tokenizer: `tokenizer` itself, or loaded with AutoTokenizer from a path or hub name."""
    if isinstance(tokenizer, str | os.PathLike):
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(str(tokenizer))
        except Exception as err:
            raise ValueError(f"cannot load tokenizer {str(tokenizer)!r}: {_first_line(err)}") from None
    if not callable(tokenizer) or not hasattr(tokenizer, "convert_tokens_to_ids"):
        raise ValueError(
            f"tokenizer must be a transformers tokenizer or a path/hub name, got {type(tokenizer).__name__}"
        )
    return tokenizer


def tokenizer_name(tokenizer: Any) -> str:
    """The name or path a tokenizer was loaded from (its class name if none)."""
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def _token_id(tokenizer: Any, attribute: str) -> int | None:
    value = getattr(tokenizer, attribute, None)
    return int(value) if value is not None else None


def row_start_id(tokenizer: Any, prepend_bos: bool) -> int | None:
    """The id put at the start of each row, the tokenizer's own start token: BOS (causal LMs), else CLS
    (encoders such as BERT), else EOS; None without prepend_bos."""
    if not prepend_bos:
        return None
    for attribute in ("bos_token_id", "cls_token_id", "eos_token_id"):
        token_id = _token_id(tokenizer, attribute)
        if token_id is not None:
            return token_id
    raise ValueError(
        f"tokenizer {tokenizer_name(tokenizer)!r} has no BOS, CLS or EOS token to start rows with; "
        "tokenize without a start token (--no-bos; 'Prepend BOS' off in the form)"
    )


def separator_id(tokenizer: Any, separator: str) -> int | None:
    """The token id placed between packed documents: 'eos' (the tokenizer's own end token: EOS, else SEP for
    encoders), 'none' (None) or a token string of one token."""
    name = tokenizer_name(tokenizer)
    if separator == "none":
        return None
    if separator == "eos":
        for attribute in ("eos_token_id", "sep_token_id"):
            token_id = _token_id(tokenizer, attribute)
            if token_id is not None:
                return token_id
        raise ValueError(
            f"separator 'eos': tokenizer {name!r} has no EOS or SEP token; "
            "separate documents with nothing or a token of your choice (--separator none | --separator TOKEN)"
        )
    if not isinstance(separator, str) or not separator:
        raise ValueError(f"separator must be 'eos', 'none' or a token string, got {separator!r}")
    vocab = tokenizer.get_vocab()
    if separator in vocab:
        return int(vocab[separator])
    ids = tokenizer.encode(separator, add_special_tokens=False)
    if len(ids) == 1:
        return int(ids[0])
    raise ValueError(
        f"separator {separator!r} is not a single token of tokenizer {name!r} (it encodes to {len(ids)} tokens)"
    )


def token_name(tokenizer: Any, token_id: int | None) -> str | None:
    """The token string of an id ('[CLS]', '<|endoftext|>'), None for None."""
    if token_id is None:
        return None
    return str(tokenizer.convert_ids_to_tokens(int(token_id)))


def _special_tokens_used(tok: Any, bos_id: int | None, sep_id: int | None, packing: bool) -> str:
    start = f"rows start with {token_name(tok, bos_id)} (id {bos_id})" if bos_id is not None else "no start token"
    if not packing:
        between = "one document per row"
    elif sep_id is None:
        between = "documents joined with no separator"
    else:
        between = f"documents separated by {token_name(tok, sep_id)} (id {sep_id})"
    return f"tokenizer {tokenizer_name(tok)!r}: {start}; {between}"


def _pad_id(tokenizer: Any) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def _encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens (one batched call)."""
    ids: list[list[int]] = tokenizer(
        texts,
        add_special_tokens=False,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,
    )["input_ids"]
    return ids


@dataclass
class _Position:
    """How far a tokenization got; everything before it is in the store and the doc-lengths file."""

    rows: int = 0
    n_documents: int = 0  # documents accounted for (doc_lengths.bin entries, counters)
    next_doc: int = 0  # document of the first corpus token not yet stored
    skip_tokens: int = 0  # tokens of next_doc's segment (separator included) already stored
    emitted_before: bool = False  # a document preceded next_doc in the stream (so its segment has a separator)
    truncated_documents: int = 0
    empty_documents: int = 0


@dataclass
class _Piece:
    """The not-yet-stored tail of one document's segment (separator + tokens)."""

    doc: int
    offset: int
    emitted_before: bool
    tokens: np.ndarray


class _Packer:
    """Holds document segments and cuts rows of `body` tokens off the front."""

    def __init__(self, body: int) -> None:
        self.body = body
        self.pieces: list[_Piece] = []
        self.size = 0

    def add(self, piece: _Piece) -> None:
        if len(piece.tokens):
            self.pieces.append(piece)
            self.size += len(piece.tokens)

    def take(self, n_rows: int) -> tuple[np.ndarray, int]:
        """Cut `n_rows` rows [n_rows, body]; also return the document of the last token taken (-1 if none)."""
        n = n_rows * self.body
        if n == 0:
            return np.zeros((0, self.body), dtype=TOKEN_DTYPE), -1
        flat = np.concatenate([p.tokens for p in self.pieces])
        rows = flat[:n].reshape(n_rows, self.body)
        kept: list[_Piece] = []
        start, last_doc = 0, -1
        for piece in self.pieces:
            end = start + len(piece.tokens)
            if start < n:
                last_doc = piece.doc
            if end > n:
                cut = max(0, n - start)
                kept.append(_Piece(piece.doc, piece.offset + cut, piece.emitted_before, piece.tokens[cut:]))
            start = end
        self.pieces = kept
        self.size -= n
        return rows, last_doc


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)


def _validate(context_size: int, prepend_bos: bool, packing: bool, max_tokens: int | None, batch: int) -> None:
    def is_int(v: Any) -> bool:
        return isinstance(v, int | np.integer) and not isinstance(v, bool)

    least = 2 if prepend_bos else 1
    if not is_int(context_size) or context_size < least:
        raise ValueError(
            f"context_size must be an integer >= {least}{' with prepend_bos' if prepend_bos else ''}, "
            f"got {context_size!r}"
        )
    if not is_int(batch) or batch < 1:
        raise ValueError(f"batch_documents must be a positive integer, got {batch!r}")
    if max_tokens is not None:
        if not is_int(max_tokens) or max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
        if packing and max_tokens < context_size:
            raise ValueError(f"max_tokens ({max_tokens}) is less than one packed row of {context_size} tokens")


def _completed_meta(out_dir: Path) -> dict[str, Any] | None:
    """The meta of a finished tokenization in `out_dir` whose files are intact, else None."""
    meta_path = out_dir / META_FILE
    if not meta_path.exists() or (out_dir / STATE_FILE).exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        row_bytes = int(meta["context_size"]) * np.dtype(TOKEN_DTYPE).itemsize
        n = int(meta["n_sequences"])
        tokens_ok = (out_dir / TOKENS_FILE).stat().st_size == n * row_bytes
        lengths_ok = (out_dir / LENGTHS_FILE).stat().st_size == n * 4
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return meta if tokens_ok and lengths_ok else None


def _load_state(out_dir: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    path = out_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise ValueError(f"{path}: unreadable checkpoint; tokenize again without resume") from None
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"{path}: checkpoint version {state.get('version')!r} is not {STATE_VERSION}")
    for key, value in settings.items():
        if state["settings"].get(key) != value:
            raise ValueError(
                f"cannot resume the tokenization in {out_dir}: {key} differs from the interrupted run "
                f"({state['settings'].get(key)!r} then, {value!r} now); tokenize again without resume"
            )
    return state


def _cut_back(out_dir: Path, context_size: int, pos: _Position) -> None:
    """Truncate the store and doc-lengths file to the checkpoint (drops rows written after it)."""
    row_bytes = context_size * np.dtype(TOKEN_DTYPE).itemsize
    sizes = {
        TOKENS_FILE: pos.rows * row_bytes,
        LENGTHS_FILE: pos.rows * 4,
        DOC_LENGTHS_FILE: pos.n_documents * np.dtype(DOC_LENGTH_DTYPE).itemsize,
    }
    for name, size in sizes.items():
        path = out_dir / name
        if not path.exists() or path.stat().st_size < size:
            raise ValueError(
                f"cannot resume the tokenization in {out_dir}: {name} is shorter than its checkpoint; "
                "tokenize again without resume"
            )
        os.truncate(path, size)


def tokenize_dataset(
    dataset_dir: str | Path,
    tokenizer: Any,
    out_dir: str | Path,
    context_size: int,
    prepend_bos: bool = True,
    packing: bool = True,
    separator: str = "eos",
    max_tokens: int | None = None,
    batch_documents: int = 256,
    *,
    ctx: JobContext | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Tokenize the documents of a dataset folder into a token store in `out_dir`; returns its meta.json."""
    ctx = ctx if ctx is not None else LocalContext()
    _validate(context_size, prepend_bos, packing, max_tokens, batch_documents)
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    dataset_meta = read_dataset_meta(dataset_dir)
    tok = load_tokenizer(tokenizer)
    if not getattr(tok, "is_fast", False):
        ctx.log(f"tokenizer {tokenizer_name(tok)!r} has no fast (Rust) version; tokenizing will be slow", "warning")
    bos_id = row_start_id(tok, prepend_bos)
    sep_id = separator_id(tok, separator) if packing else None
    ctx.log(_special_tokens_used(tok, bos_id, sep_id, packing))
    if bos_id is not None and bos_id == tok.eos_token_id and tok.bos_token_id is None:
        ctx.log(f"tokenizer {tokenizer_name(tok)!r} has no BOS token; rows start with its EOS token instead")
    settings = {
        "dataset": str(dataset_dir.resolve()),
        "tokenizer": tokenizer_name(tok),
        "vocab_size": len(tok),
        "context_size": int(context_size),
        "prepend_bos": prepend_bos,
        "packing": packing,
        "separator": separator if packing else None,
        "max_tokens": max_tokens,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    state = None
    if resume:
        done = _completed_meta(out_dir)
        if done is not None:
            ctx.log(f"tokenization in {out_dir} is already complete ({done['n_sequences']:,} rows)")
            return done
        state = _load_state(out_dir, settings)
        if state is None:
            ctx.log("nothing to resume: tokenizing from the beginning")
    if state is None:
        for name in (TOKENS_FILE, LENGTHS_FILE, DOC_LENGTHS_FILE, META_FILE, STATE_FILE):
            (out_dir / name).unlink(missing_ok=True)
        pos, created = _Position(), _now()
    else:
        pos, created = _Position(**state["position"]), state["created"]
        _cut_back(out_dir, context_size, pos)
        ctx.log(f"resuming after {pos.rows:,} rows ({pos.next_doc:,} documents)")

    run = _Run(tok, dataset_dir, out_dir, int(context_size), bos_id, sep_id, _pad_id(tok), packing, max_tokens)
    run.total_documents = int(dataset_meta.get("documents", 0)) or None
    writer = TokenStoreWriter(out_dir, context_size, resume=state is not None)
    with (out_dir / DOC_LENGTHS_FILE).open("ab") as doc_lengths:
        try:
            stopped = run.loop(pos, writer, doc_lengths, batch_documents, ctx, settings, created)
        except BaseException:
            with contextlib.suppress(OSError):
                run.checkpoint(pos, writer, doc_lengths, settings, created)
            raise
    meta = {
        "dataset": settings["dataset"],
        "dataset_documents": dataset_meta.get("documents"),
        "tokenizer": settings["tokenizer"],
        "tokenizer_class": type(tok).__name__,
        "vocab_size": settings["vocab_size"],
        "bos_token_id": bos_id if prepend_bos else tok.bos_token_id,
        "bos_is_eos": bool(prepend_bos and tok.bos_token_id is None and bos_id == tok.eos_token_id),
        "start_token": token_name(tok, bos_id),
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": run.pad_id,
        "separator": settings["separator"],
        "separator_token_id": sep_id,
        "separator_token": token_name(tok, sep_id),
        "special_token_ids": sorted({int(i) for i in tok.all_special_ids}),
        "packing": packing,
        "prepend_bos": prepend_bos,
        "max_tokens": max_tokens,
        "stopped_at_max_tokens": stopped,
        "n_documents": pos.n_documents,
        "truncated_documents": pos.truncated_documents,
        "empty_documents": pos.empty_documents,
        "dropped_tail_tokens": run.dropped_tail_tokens,
        "doc_lengths_file": DOC_LENGTHS_FILE,
        "created": created,
        "finished": _now(),
    }
    meta = writer.close(meta)
    (out_dir / STATE_FILE).unlink(missing_ok=True)
    run.report(pos, writer, ctx)
    ctx.log(
        f"tokenized {pos.n_documents:,} documents into {meta['n_sequences']:,} rows of {context_size} "
        f"({meta['n_tokens']:,} tokens; {pos.truncated_documents:,} documents truncated)"
    )
    if meta["n_sequences"] == 0:
        ctx.log(f"no rows were written: the dataset has fewer than {context_size} tokens", level="warning")
    ctx.artifact("tokens", out_dir / TOKENS_FILE, n_sequences=meta["n_sequences"], n_tokens=meta["n_tokens"])
    return meta


class _Run:
    """The batch loop of one tokenization (packing or not), its checkpoints and progress."""

    def __init__(
        self,
        tok: Any,
        dataset_dir: Path,
        out_dir: Path,
        context_size: int,
        bos_id: int | None,
        sep_id: int | None,
        pad_id: int,
        packing: bool,
        max_tokens: int | None,
    ) -> None:
        self.tok, self.dataset_dir, self.out_dir = tok, dataset_dir, out_dir
        self.context_size = context_size
        self.bos_id, self.sep_id, self.pad_id = bos_id, sep_id, pad_id
        self.packing, self.max_tokens = packing, max_tokens
        self.body = context_size - (1 if bos_id is not None else 0)
        self.total_documents: int | None = None
        self.dropped_tail_tokens = 0

    def checkpoint(
        self,
        pos: _Position,
        writer: TokenStoreWriter,
        doc_lengths: IO[bytes],
        settings: dict[str, Any],
        created: str,
    ) -> None:
        """Sync the store and the doc-lengths file, then record `pos`."""
        writer.flush()
        doc_lengths.flush()
        for name in (TOKENS_FILE, LENGTHS_FILE, DOC_LENGTHS_FILE):
            _fsync(self.out_dir / name)
        state = {"version": STATE_VERSION, "settings": settings, "created": created, "position": asdict(pos)}
        _write_json(self.out_dir / STATE_FILE, state)

    def report(self, pos: _Position, writer: TokenStoreWriter, ctx: JobContext) -> None:
        text = f"{writer.n_sequences:,} rows, {writer.n_tokens:,} tokens"
        options: list[tuple[float, float, str]] = []
        if self.total_documents:
            options.append((pos.n_documents, self.total_documents, "documents"))
        if self.max_tokens:
            options.append((writer.n_tokens, self.max_tokens, "tokens"))
        if not options:
            ctx.progress(pos.n_documents, None, text, "documents")
            return
        done, total, unit = max(options, key=lambda o: o[0] / o[1])
        ctx.progress(done, total, text, unit)

    def loop(
        self,
        pos: _Position,
        writer: TokenStoreWriter,
        doc_lengths: IO[bytes],
        batch_documents: int,
        ctx: JobContext,
        settings: dict[str, Any],
        created: str,
    ) -> bool:
        """Tokenize batches until the dataset ends (False) or max_tokens is reached (True)."""
        packer = _Packer(self.body)
        resume_piece = (pos.next_doc, pos.skip_tokens, pos.emitted_before)
        emitted = pos.emitted_before
        documents = iter_documents(self.dataset_dir, skip=pos.next_doc)
        first = pos.next_doc
        last_checkpoint = time.monotonic()
        while True:
            ctx.check_cancelled()
            if self.max_tokens is not None and writer.n_tokens >= self._token_cap():
                return True
            texts = list(itertools.islice(documents, batch_documents))
            if not texts:
                break
            ids = _encode(self.tok, texts)
            lengths = [len(x) for x in ids]
            if self.packing:
                emitted, consumed_end, stopped = self._pack_batch(
                    packer, ids, first, emitted, resume_piece, pos, writer
                )
            else:
                consumed_end, stopped = self._rows_batch(ids, first, pos, writer)
            self._account(pos, lengths, first, consumed_end, doc_lengths)
            if self.packing and packer.pieces:
                origin = packer.pieces[0]
                pos.next_doc, pos.skip_tokens, pos.emitted_before = origin.doc, origin.offset, origin.emitted_before
            else:
                pos.next_doc, pos.skip_tokens, pos.emitted_before = consumed_end, 0, emitted
            pos.rows = writer.n_sequences
            first += len(texts)
            self.report(pos, writer, ctx)
            if stopped:
                return True
            if time.monotonic() - last_checkpoint >= CHECKPOINT_SECONDS:
                self.checkpoint(pos, writer, doc_lengths, settings, created)
                last_checkpoint = time.monotonic()
        if packer.size:
            self.dropped_tail_tokens = packer.size
            pos.truncated_documents += len(packer.pieces)
        return False

    def _token_cap(self) -> int:
        """The most tokens the store may hold: max_tokens, rounded down to whole rows when packing."""
        assert self.max_tokens is not None
        if self.packing:
            return self.max_tokens // self.context_size * self.context_size
        return self.max_tokens

    def _account(
        self, pos: _Position, lengths: list[int], first: int, consumed_end: int, doc_lengths: IO[bytes]
    ) -> None:
        """Record doc lengths and counters of the batch's documents not accounted for yet (before consumed_end)."""
        lo = max(first, pos.n_documents)
        if consumed_end <= lo:
            return
        new = np.asarray(lengths[lo - first : consumed_end - first], dtype=DOC_LENGTH_DTYPE)
        doc_lengths.write(new.tobytes())
        pos.empty_documents += int((new == 0).sum())
        if not self.packing:
            pos.truncated_documents += int((new > self.body).sum())
        pos.n_documents = consumed_end

    def _rows_with_bos(self, body_rows: np.ndarray) -> np.ndarray:
        if self.bos_id is None:
            return body_rows
        bos = np.full((body_rows.shape[0], 1), self.bos_id, dtype=TOKEN_DTYPE)
        return np.concatenate([bos, body_rows], axis=1)

    def _pack_batch(
        self,
        packer: _Packer,
        ids: list[list[int]],
        first: int,
        emitted: bool,
        resume_piece: tuple[int, int, bool],
        pos: _Position,
        writer: TokenStoreWriter,
    ) -> tuple[bool, int, bool]:
        """Add the batch to the packer and store its full rows; (emitted, documents consumed, stopped)."""
        resume_doc, resume_skip, resume_emitted = resume_piece
        for i, doc_ids in enumerate(ids):
            if not doc_ids:
                continue
            doc, offset = first + i, 0
            if doc == resume_doc:
                offset, emitted = resume_skip, resume_emitted
            packer.add(_Piece(doc, offset, emitted, self._segment(doc_ids, emitted)[offset:]))
            emitted = True
        n_rows = packer.size // self.body
        stopped = False
        if self.max_tokens is not None:
            room = (self._token_cap() - writer.n_tokens) // self.context_size
            if n_rows >= room:
                n_rows, stopped = room, True
        rows, last_doc = packer.take(n_rows)
        if len(rows):
            full = np.full(len(rows), self.context_size, dtype=np.int32)
            writer.append(self._rows_with_bos(rows), full)
        consumed_end = first + len(ids)
        if stopped:
            consumed_end = last_doc + 1 if last_doc >= 0 else pos.n_documents
            if packer.pieces and packer.pieces[0].doc == last_doc:
                pos.truncated_documents += 1
            packer.pieces, packer.size = [], 0
        return emitted, consumed_end, stopped

    def _segment(self, doc_ids: list[int], emitted_before: bool) -> np.ndarray:
        segment = np.asarray(doc_ids, dtype=TOKEN_DTYPE)
        if emitted_before and self.sep_id is not None:
            segment = np.concatenate([np.asarray([self.sep_id], dtype=TOKEN_DTYPE), segment])
        return segment

    def _rows_batch(
        self, ids: list[list[int]], first: int, pos: _Position, writer: TokenStoreWriter
    ) -> tuple[int, bool]:
        """Store one padded row per non-empty document; (documents consumed, stopped)."""
        start = 1 if self.bos_id is not None else 0
        rows = np.full((len(ids), self.context_size), self.pad_id, dtype=TOKEN_DTYPE)
        lengths = np.zeros(len(ids), dtype=np.int32)
        if self.bos_id is not None:
            rows[:, 0] = self.bos_id
        budget = None if self.max_tokens is None else self.max_tokens - writer.n_tokens
        n, consumed, stopped = 0, len(ids), False
        for i, doc_ids in enumerate(ids):
            if not doc_ids:
                continue
            take = min(len(doc_ids), self.body)
            if budget is not None:
                room = budget - start
                if room < 1:
                    consumed, stopped = i, True
                    break
                if take > room:
                    if len(doc_ids) <= self.body:
                        pos.truncated_documents += 1  # cut by max_tokens only, not by the context
                    take, consumed, stopped = room, i + 1, True
                budget -= start + take
            rows[n, start : start + take] = doc_ids[:take]
            lengths[n] = start + take
            n += 1
            if stopped:
                break
        if n:
            writer.append(rows[:n], lengths[:n])
        if self.max_tokens is not None and writer.n_tokens >= self.max_tokens:
            stopped = True
        return first + consumed, stopped
