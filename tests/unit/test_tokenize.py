"""Tokenization: packing, BOS, separators, no-packing rows, max_tokens, resume, streaming, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from mistudio_tui.jobs.context import JobCancelled, LocalContext
from mistudio_tui.ml.data import tokenize as tokenize_mod
from mistudio_tui.ml.data.cleaning import CleaningOptions
from mistudio_tui.ml.data.ingest import ingest_dataset
from mistudio_tui.ml.data.token_store import LENGTHS_FILE, META_FILE, TOKENS_FILE, TokenStore
from mistudio_tui.ml.data.tokenize import DOC_LENGTHS_FILE, STATE_FILE, tokenize_dataset

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def tok(tiny_lm_dir: Path):
    return AutoTokenizer.from_pretrained(tiny_lm_dir)


def make_docs(tiny_corpus: list[str], n: int) -> list[str]:
    return [f"{tiny_corpus[i % len(tiny_corpus)]} (copy {i})" * (1 + i % 3) for i in range(n)]


def make_dataset(path: Path, docs: list[str]) -> Path:
    ingest_dataset(({"text": d} for d in docs), path, cleaning=CleaningOptions(drop_empty=False))
    return path


@pytest.fixture
def docs(tiny_corpus: list[str]) -> list[str]:
    return make_docs(tiny_corpus, 120)


@pytest.fixture
def dataset(tmp_path: Path, docs: list[str]) -> Path:
    return make_dataset(tmp_path / "dataset", docs)


def encode(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def stream(tok, docs: list[str], sep: int | None) -> list[int]:
    """The documents' token ids joined by `sep` (empty documents left out)."""
    out: list[int] = []
    for ids in (encode(tok, d) for d in docs):
        if not ids:
            continue
        if out and sep is not None:
            out.append(sep)
        out.extend(ids)
    return out


def comparable(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if k not in ("created", "finished")}


def test_packing_rows_are_the_documents_joined_by_the_separator(tmp_path, tok, docs, dataset) -> None:
    meta = tokenize_dataset(dataset, tok, tmp_path / "tk", context_size=16, batch_documents=7)
    store = TokenStore(tmp_path / "tk")
    assert store.n_sequences == meta["n_sequences"] > 10
    assert (store.tokens[:, 0] == tok.bos_token_id).all()
    assert (store.lengths == 16).all()
    body = np.asarray(store.tokens[:, 1:]).reshape(-1)
    assert tok.decode(body.tolist()) == EOT.join(docs)[: len(tok.decode(body.tolist()))]
    expected = stream(tok, docs, tok.eos_token_id)
    assert body.tolist() == expected[: len(body)]
    assert len(expected) - len(body) == meta["dropped_tail_tokens"] < 15
    assert meta["n_tokens"] == store.n_sequences * 16
    assert meta["n_documents"] == len(docs)
    assert (meta["packing"], meta["prepend_bos"], meta["separator"]) == (True, True, "eos")
    assert meta["separator_token_id"] == tok.eos_token_id
    assert meta["bos_token_id"] == tok.bos_token_id and meta["bos_is_eos"] is False
    assert meta["vocab_size"] == len(tok)
    assert meta["special_token_ids"] == sorted(tok.all_special_ids)
    assert meta["tokenizer"] == tok.name_or_path
    doc_lengths = np.fromfile(tmp_path / "tk" / DOC_LENGTHS_FILE, dtype=np.int32)
    assert doc_lengths.tolist() == [len(encode(tok, d)) for d in docs]
    assert not (tmp_path / "tk" / STATE_FILE).exists()


def test_packing_without_bos_fills_rows_with_corpus_tokens(tmp_path, tok, docs, dataset) -> None:
    tokenize_dataset(dataset, tok, tmp_path / "tk", context_size=12, prepend_bos=False, separator="none")
    store = TokenStore(tmp_path / "tk")
    flat = np.asarray(store.tokens).reshape(-1).tolist()
    assert flat == stream(tok, docs, None)[: len(flat)]
    assert store.meta["bos_token_id"] == tok.bos_token_id and store.meta["separator_token_id"] is None


def test_custom_separator_token(tmp_path, tok, docs, dataset) -> None:
    meta = tokenize_dataset(dataset, tok, tmp_path / "tk", context_size=16, separator="\n")
    (newline,) = encode(tok, "\n")
    assert meta["separator_token_id"] == newline
    store = TokenStore(tmp_path / "tk")
    text = tok.decode(np.asarray(store.tokens[:, 1:]).reshape(-1).tolist())
    assert text == "\n".join(docs)[: len(text)]
    with pytest.raises(ValueError, match=r"separator '\\n\\n' is not a single token .* encodes to 2 tokens"):
        tokenize_dataset(dataset, tok, tmp_path / "tk2", context_size=16, separator="\n\n")


def test_no_packing_pads_and_truncates_one_document_per_row(tmp_path, tok, docs, dataset) -> None:
    meta = tokenize_dataset(dataset, tok, tmp_path / "tk", context_size=64, packing=False, batch_documents=16)
    store = TokenStore(tmp_path / "tk")
    ids = [encode(tok, d) for d in docs]
    assert store.n_sequences == len(docs)
    assert store.lengths.tolist() == [min(len(x) + 1, 64) for x in ids]
    assert meta["truncated_documents"] == sum(len(x) > 63 for x in ids) > 0
    for i, doc_ids in enumerate(ids):
        row = np.asarray(store.tokens[i])
        n = int(store.lengths[i])
        assert row[0] == tok.bos_token_id
        assert row[1:n].tolist() == doc_ids[: n - 1]
        assert (row[n:] == meta["pad_token_id"]).all()
    short = next(i for i, x in enumerate(ids) if len(x) <= 63)
    assert tok.decode(store.row(short)[1:].tolist()) == docs[short]
    assert meta["n_tokens"] == int(store.lengths.sum())


def test_empty_documents_are_counted_and_skipped(tmp_path, tok, docs) -> None:
    with_empty = [docs[0], "", docs[1], "", "", docs[2]] * 5
    dataset = make_dataset(tmp_path / "ds", with_empty)
    meta = tokenize_dataset(dataset, tok, tmp_path / "tk", context_size=8)
    assert meta["empty_documents"] == 15
    body = np.asarray(TokenStore(tmp_path / "tk").tokens[:, 1:]).reshape(-1).tolist()
    assert body == stream(tok, with_empty, tok.eos_token_id)[: len(body)]
    meta = tokenize_dataset(dataset, tok, tmp_path / "tk2", context_size=64, packing=False)
    assert meta["n_sequences"] == 15 and meta["empty_documents"] == 15


def test_a_dataset_shorter_than_a_row_gives_no_rows(tmp_path, tok) -> None:
    dataset = make_dataset(tmp_path / "ds", ["tiny"])
    ctx = LocalContext()
    meta = tokenize_dataset(dataset, tok, tmp_path / "tk", context_size=64, ctx=ctx)
    assert meta["n_sequences"] == 0 and meta["dropped_tail_tokens"] == len(encode(tok, "tiny"))
    assert len(TokenStore(tmp_path / "tk")) == 0
    assert any("no rows were written" in line for line in ctx.logs)


def test_max_tokens_with_packing(tmp_path, tok, docs, dataset) -> None:
    meta = tokenize_dataset(dataset, tok, tmp_path / "tk", context_size=16, max_tokens=250, batch_documents=5)
    assert meta["n_tokens"] == 240 and meta["n_sequences"] == 15
    assert meta["stopped_at_max_tokens"] is True
    segments = [len(encode(tok, d)) + (1 if i else 0) for i, d in enumerate(docs)]
    ends = np.cumsum(segments)
    last_doc = int(np.searchsorted(ends, 15 * 15, side="left"))  # the document of the last stored token
    assert meta["n_documents"] == last_doc + 1 < len(docs)
    assert np.fromfile(tmp_path / "tk" / DOC_LENGTHS_FILE, dtype=np.int32).size == meta["n_documents"]


def test_max_tokens_without_packing(tmp_path, tok, docs, dataset) -> None:
    meta = tokenize_dataset(
        dataset, tok, tmp_path / "tk", context_size=24, packing=False, max_tokens=300, batch_documents=4
    )
    store = TokenStore(tmp_path / "tk")
    assert meta["n_tokens"] == int(store.lengths.sum()) == 300
    assert meta["n_documents"] == store.n_sequences < len(docs)
    ids = [encode(tok, d) for d in docs[: store.n_sequences]]
    assert store.row(store.n_sequences - 1)[1:].tolist() == ids[-1][: int(store.lengths[-1]) - 1]


@pytest.mark.parametrize(
    ("packing", "context_size", "max_tokens", "cancel_after"),
    [
        (True, 16, None, 1),
        (True, 16, None, 3),
        (True, 128, None, 2),
        (False, 16, None, 2),
        (True, 16, 1500, 2),
        (False, 16, 500, 3),
    ],
)
def test_resume_equals_an_uninterrupted_run(
    tmp_path, tok, dataset, packing, context_size, max_tokens, cancel_after
) -> None:
    kwargs = {"context_size": context_size, "packing": packing, "max_tokens": max_tokens, "batch_documents": 6}
    reference = tokenize_dataset(dataset, tok, tmp_path / "ref", **kwargs)
    out = tmp_path / "tk"
    with pytest.raises(JobCancelled):
        tokenize_dataset(dataset, tok, out, ctx=LocalContext(cancel_after=cancel_after), **kwargs)
    position = json.loads((out / STATE_FILE).read_text())["position"]
    assert 0 < position["rows"] < reference["n_sequences"]
    if packing:  # the interruption left part of a row unstored: resuming must rebuild it
        assert position["next_doc"] < position["n_documents"] and position["skip_tokens"] > 0
    assert not (out / META_FILE).exists()
    meta = tokenize_dataset(dataset, tok, out, resume=True, **kwargs)
    for name in (TOKENS_FILE, LENGTHS_FILE, DOC_LENGTHS_FILE):
        assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
    assert comparable(meta) == comparable(reference)


def test_resume_drops_rows_written_after_the_checkpoint(tmp_path, tok, dataset) -> None:
    kwargs = {"context_size": 16, "batch_documents": 6}
    reference = tokenize_dataset(dataset, tok, tmp_path / "ref", **kwargs)
    out = tmp_path / "tk"
    with pytest.raises(JobCancelled):
        tokenize_dataset(dataset, tok, out, ctx=LocalContext(cancel_after=2), **kwargs)
    junk_row = np.full(16, 7, dtype=np.uint32).tobytes()
    with (out / TOKENS_FILE).open("ab") as f:  # a crash after more rows, one of them torn
        f.write(junk_row * 3 + junk_row[:10])
    with (out / LENGTHS_FILE).open("ab") as f:
        f.write(np.full(3, 16, dtype=np.int32).tobytes())
    with (out / DOC_LENGTHS_FILE).open("ab") as f:
        f.write(np.full(5, 9, dtype=np.int32).tobytes() + b"\x01")
    meta = tokenize_dataset(dataset, tok, out, resume=True, **kwargs)
    for name in (TOKENS_FILE, LENGTHS_FILE, DOC_LENGTHS_FILE):
        assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
    assert comparable(meta) == comparable(reference)


def test_resume_refuses_other_settings_and_returns_finished_meta(tmp_path, tok, dataset) -> None:
    out = tmp_path / "tk"
    with pytest.raises(JobCancelled):
        tokenize_dataset(dataset, tok, out, context_size=16, batch_documents=6, ctx=LocalContext(cancel_after=2))
    with pytest.raises(ValueError, match=r"context_size differs from the interrupted run \(16 then, 32 now\)"):
        tokenize_dataset(dataset, tok, out, context_size=32, batch_documents=6, resume=True)
    meta = tokenize_dataset(dataset, tok, out, context_size=16, batch_documents=6, resume=True)
    ctx = LocalContext()
    assert tokenize_dataset(dataset, tok, out, context_size=16, resume=True, ctx=ctx) == meta
    assert any("already complete" in line for line in ctx.logs)


def test_documents_are_streamed_one_batch_at_a_time(tmp_path, tok, docs, dataset, monkeypatch) -> None:
    pulled = 0
    calls: list[tuple[int, int]] = []
    real_iter, real_encode = tokenize_mod.iter_documents, tokenize_mod._encode

    def counting_documents(path, skip=0):
        nonlocal pulled
        for text in real_iter(path, skip):
            pulled += 1
            yield text

    def recording_encode(tokenizer, texts):
        calls.append((pulled, len(texts)))
        return real_encode(tokenizer, texts)

    monkeypatch.setattr(tokenize_mod, "iter_documents", counting_documents)
    monkeypatch.setattr(tokenize_mod, "_encode", recording_encode)
    tokenize_dataset(dataset, tok, tmp_path / "tk", context_size=16, batch_documents=8)
    encoded = 0
    for pulled_then, size in calls:
        assert size <= 8
        encoded += size
        assert pulled_then == encoded  # nothing read beyond the batch being tokenized
    assert encoded == len(docs) == pulled


def test_tokenizer_without_bos_uses_eos(tmp_path, tok, docs, dataset) -> None:
    eos_only = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token=EOT)
    assert eos_only.bos_token_id is None
    ctx = LocalContext()
    meta = tokenize_dataset(dataset, eos_only, tmp_path / "tk", context_size=16, ctx=ctx)
    store = TokenStore(tmp_path / "tk")
    assert (store.tokens[:, 0] == eos_only.eos_token_id).all()
    assert meta["bos_is_eos"] is True and meta["bos_token_id"] == eos_only.eos_token_id
    assert any("no BOS token" in line for line in ctx.logs)


def test_tokenizer_without_bos_or_eos(tmp_path, tok, dataset) -> None:
    bare = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer)
    with pytest.raises(ValueError, match=r"has no BOS, CLS or EOS token.*--no-bos"):
        tokenize_dataset(dataset, bare, tmp_path / "tk", context_size=16)
    with pytest.raises(ValueError, match=r"separator 'eos': tokenizer .* has no EOS or SEP token.*--separator none"):
        tokenize_dataset(dataset, bare, tmp_path / "tk", context_size=16, prepend_bos=False)
    meta = tokenize_dataset(dataset, bare, tmp_path / "tk", context_size=16, prepend_bos=False, separator="none")
    assert meta["n_sequences"] > 0


def test_tokenizer_by_path_matches_object(tmp_path, tok, dataset, tiny_lm_dir) -> None:
    tokenize_dataset(dataset, tok, tmp_path / "a", context_size=16)
    meta = tokenize_dataset(dataset, str(tiny_lm_dir), tmp_path / "b", context_size=16)
    assert (tmp_path / "a" / TOKENS_FILE).read_bytes() == (tmp_path / "b" / TOKENS_FILE).read_bytes()
    assert meta["tokenizer"] == str(tiny_lm_dir)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"context_size": 1}, ValueError, "context_size must be an integer >= 2 with prepend_bos, got 1"),
        ({"context_size": 16, "batch_documents": 0}, ValueError, "batch_documents must be a positive integer"),
        ({"context_size": 16, "max_tokens": 10}, ValueError, r"max_tokens \(10\) is less than one packed row"),
        ({"context_size": 16, "separator": ""}, ValueError, "separator must be 'eos', 'none' or a token string"),
    ],
)
def test_bad_arguments(tmp_path, tok, dataset, kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        tokenize_dataset(dataset, tok, tmp_path / "tk", **kwargs)


def test_bad_dataset_or_tokenizer(tmp_path, tok, dataset) -> None:
    with pytest.raises(FileNotFoundError, match=r"has no documents\.jsonl"):
        tokenize_dataset(tmp_path / "missing", tok, tmp_path / "tk", context_size=16)
    (dataset / "meta.json").unlink()
    with pytest.raises(FileNotFoundError, match="is incomplete"):
        tokenize_dataset(dataset, tok, tmp_path / "tk", context_size=16)
    make_dataset(dataset, ["hello"])
    with pytest.raises(ValueError, match=r"^cannot load tokenizer '.*no-such-tokenizer'"):
        tokenize_dataset(dataset, str(tmp_path / "no-such-tokenizer"), tmp_path / "tk", context_size=16)
    with pytest.raises(ValueError, match="tokenizer must be a transformers tokenizer or a path/hub name"):
        tokenize_dataset(dataset, 42, tmp_path / "tk", context_size=16)
