"""Statistics: dataset lengths, words and histogram; tokenization counts, padding, top tokens, doc lengths."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from transformers import AutoTokenizer

from mistudio_tui.jobs.context import LocalContext
from mistudio_tui.ml.data.cleaning import CleaningOptions
from mistudio_tui.ml.data.ingest import ingest_dataset
from mistudio_tui.ml.data.stats import (
    LengthTally,
    dataset_stats,
    decode_top_tokens,
    tokenization_stats,
)
from mistudio_tui.ml.data.token_store import TokenStore
from mistudio_tui.ml.data.tokenize import DOC_LENGTHS_FILE, tokenize_dataset


@pytest.fixture(scope="module")
def tok(tiny_lm_dir: Path):
    return AutoTokenizer.from_pretrained(tiny_lm_dir)


def make_docs(tiny_corpus: list[str]) -> list[str]:
    rng = np.random.default_rng(0)
    return [" ".join(tiny_corpus[j] for j in rng.integers(0, 8, size=int(rng.integers(1, 6)))) for _ in range(90)]


@pytest.fixture
def docs(tiny_corpus: list[str]) -> list[str]:
    return make_docs(tiny_corpus)


@pytest.fixture
def dataset(tmp_path: Path, docs: list[str]) -> Path:
    ingest_dataset(({"text": d} for d in docs), tmp_path / "ds", cleaning=CleaningOptions())
    return tmp_path / "ds"


def bin_of(value: int, edges: list[float]) -> int:
    return next(i for i in range(len(edges) - 1) if edges[i] <= value < edges[i + 1])


def test_dataset_stats(dataset: Path, docs: list[str]) -> None:
    stats = dataset_stats(dataset, sample_rows=3, sample_chars=20, ctx=LocalContext())
    json.dumps(stats)
    lengths = [len(d) for d in docs]
    assert stats["documents"] == len(docs)
    assert stats["characters"] == sum(lengths)
    assert stats["words"] == sum(len(d.split()) for d in docs)
    assert stats["length_chars"]["min"] == min(lengths)
    assert stats["length_chars"]["max"] == max(lengths)
    assert stats["length_chars"]["median"] == float(np.median(lengths))
    assert stats["length_chars"]["mean"] == pytest.approx(np.mean(lengths))
    assert stats["samples"] == [d[:20] for d in docs[:3]]
    hist = stats["length_histogram"]
    assert hist["unit"] == "characters"
    assert len(hist["edges"]) == len(hist["counts"]) + 1
    ratios = np.diff(np.log2(hist["edges"]))
    assert np.allclose(ratios, ratios[0], atol=1e-3)
    expected = Counter(bin_of(n, hist["edges"]) for n in lengths)
    assert hist["counts"] == [expected.get(i, 0) for i in range(len(hist["counts"]))]
    assert hist["counts"][0] > 0 and hist["counts"][-1] > 0


def test_dataset_stats_of_an_empty_dataset(tmp_path: Path) -> None:
    ingest_dataset(iter([]), tmp_path / "empty")
    stats = dataset_stats(tmp_path / "empty")
    assert stats["documents"] == stats["characters"] == stats["words"] == 0
    assert stats["length_chars"]["median"] is None
    assert stats["length_histogram"]["counts"] == []


@pytest.mark.parametrize("size", [1, 2, 7, 1000])
def test_length_tally_matches_numpy(size: int) -> None:
    values = np.random.default_rng(size).integers(0, 5000, size=size)
    tally = LengthTally()
    for chunk in np.array_split(values, 3):
        tally.add(chunk)
    summary = tally.summary()
    assert summary["median"] == float(np.median(values))
    assert (summary["min"], summary["max"], summary["total"]) == (values.min(), values.max(), values.sum())
    hist = tally.histogram()
    assert sum(hist["counts"]) == size
    if 0 in values:
        assert hist["edges"][0] == 0.0


def test_tokenization_stats_packed(tmp_path: Path, tok, dataset: Path, docs: list[str]) -> None:
    tokenize_dataset(dataset, tok, tmp_path / "tk", context_size=32)
    store = TokenStore(tmp_path / "tk")
    stats = tokenization_stats(store, top_n=10, ctx=LocalContext())
    json.dumps(stats)
    all_tokens = np.asarray(store.tokens).reshape(-1)
    assert stats["sequences"] == store.n_sequences
    assert stats["tokens"] == store.n_tokens == all_tokens.size
    assert stats["padding_fraction"] == 0.0
    brute = Counter(all_tokens.tolist())
    assert [(t["id"], t["count"]) for t in stats["top_tokens"]] == sorted(
        brute.items(), key=lambda kv: (-kv[1], kv[0])
    )[:10]
    assert stats["distinct_tokens"] == len(brute)
    flags = {t["id"]: t["special"] for t in stats["top_tokens"]}
    assert flags[tok.bos_token_id] is True
    assert not any(flags[i] for i in flags if i not in tok.all_special_ids)
    doc_lengths = [len(tok(d, add_special_tokens=False)["input_ids"]) for d in docs]
    lengths = stats["document_lengths"]
    assert lengths["source"] == "documents"
    assert (lengths["count"], lengths["min"], lengths["max"]) == (len(docs), min(doc_lengths), max(doc_lengths))
    assert lengths["median"] == float(np.median(doc_lengths))
    assert sum(lengths["histogram"]["counts"]) == len(docs)


def test_tokenization_stats_unpacked_padding(tmp_path: Path, tok, dataset: Path) -> None:
    tokenize_dataset(dataset, tok, tmp_path / "tk", context_size=48, packing=False)
    store = TokenStore(tmp_path / "tk")
    stats = tokenization_stats(store)
    lengths = np.asarray(store.lengths)
    assert stats["tokens"] == int(lengths.sum())
    assert stats["padding_fraction"] == pytest.approx(1 - lengths.sum() / (store.n_sequences * 48))
    assert 0 < stats["padding_fraction"] < 1
    valid = np.concatenate([store.row(i) for i in range(store.n_sequences)])
    assert stats["top_tokens"][0]["count"] == Counter(valid.tolist()).most_common(1)[0][1]
    (tmp_path / "tk" / DOC_LENGTHS_FILE).unlink()
    fallback = tokenization_stats(store)["document_lengths"]
    assert fallback["source"].startswith("rows")
    assert fallback["max"] == int(lengths.max()) - 1


def test_decode_top_tokens(tmp_path: Path, tok, dataset: Path) -> None:
    tokenize_dataset(dataset, tok, tmp_path / "tk", context_size=32)
    stats = tokenization_stats(TokenStore(tmp_path / "tk"), top_n=5)
    decoded = decode_top_tokens(stats, tok)
    assert [d["id"] for d in decoded] == [t["id"] for t in stats["top_tokens"]]
    for entry in decoded:
        assert entry["text"] == tok.decode([entry["id"]])
        assert entry["token"] == tok.convert_ids_to_tokens(entry["id"])
