"""The offline sample: stdlib-docstring corpus, tiny GPT-2 training, and the atomic sample build."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from mistudio_tui.jobs import protocol as p
from mistudio_tui.jobs.context import JobCancelled, LocalContext
from mistudio_tui.ml.sample import corpus as corpus_module
from mistudio_tui.ml.sample.build import CORPUS_FILE, DATASET_NAME, MODEL_NAME, build_sample
from mistudio_tui.ml.sample.corpus import (
    build_corpus,
    clean_docstring,
    is_english_prose,
    list_source_files,
    read_corpus,
    stdlib_source_dir,
)
from mistudio_tui.ml.sample.tiny_lm import (
    TRAINING_STATS_FILE,
    VAL_FRACTION,
    evaluate,
    pack_documents,
    split_documents,
    tokenize_texts,
    train_tiny_lm,
)

CORPUS_CHARS = 400_000
TINY = {"vocab_size": 320, "context_size": 32, "d_model": 32, "n_layers": 2, "n_heads": 2, "batch_size": 8}
TINY_STEPS = 150
ENGLISH_WORDS = re.compile(r"\b(the|of|to|is|a|and|in|for)\b", re.IGNORECASE)

needs_stdlib_source = pytest.mark.skipif(
    not list_source_files(stdlib_source_dir()), reason="this interpreter ships no standard-library .py files"
)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def stdlib_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The real sample corpus built from this interpreter's standard library, capped at CORPUS_CHARS."""
    out = tmp_path_factory.mktemp("corpus") / "docs.jsonl"
    return out, build_corpus(out, max_chars=CORPUS_CHARS)


@pytest.fixture(scope="module")
def trained(stdlib_corpus: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory):
    """A tiny model trained for TINY_STEPS steps on the sample corpus, with its context and stats."""
    ctx = LocalContext()
    out = tmp_path_factory.mktemp("tiny-lm")
    stats = train_tiny_lm(stdlib_corpus[0], out, max_steps=TINY_STEPS, seed=0, ctx=ctx, **TINY)
    return out, stats, ctx


@pytest.fixture
def small_stdlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of a few real standard-library packages that `stdlib_source_dir` points at, for fast builds."""
    real = stdlib_source_dir()
    root = tmp_path / "stdlib"
    for name in ("json", "logging", "email", "argparse.py", "textwrap.py", "queue.py", "shutil.py"):
        source = real / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.is_file():
            _write(root / name, source.read_text(encoding="utf-8"))
    monkeypatch.setattr(corpus_module, "stdlib_source_dir", lambda: root)
    return root


# --- corpus -------------------------------------------------------------------------------------


@needs_stdlib_source
def test_corpus_is_sizeable_english_and_deduplicated(stdlib_corpus: tuple[Path, dict]) -> None:
    path, stats = stdlib_corpus
    texts = read_corpus(path)
    assert stats["source"] == "stdlib-source"
    assert stats["documents"] == len(texts) > 300
    assert stats["characters"] == sum(len(t) for t in texts)
    assert CORPUS_CHARS * 0.95 <= stats["characters"] <= CORPUS_CHARS
    assert stats["source_files"] > 100
    normalised = {" ".join(t.lower().split()) for t in texts}
    assert len(normalised) == len(texts)
    with_english = sum(len(ENGLISH_WORDS.findall(t)) >= 2 for t in texts)
    assert with_english / len(texts) > 0.8
    non_ascii = sum(not ch.isascii() for text in texts for ch in text)
    assert non_ascii / stats["characters"] < 0.002
    for text in texts:
        assert text == text.strip()
        assert ">>>" not in text, text
        assert not re.search(r":(func|meth|class|attr|mod|data|exc):`", text), text
        assert "``" not in text and ".. versionadded::" not in text


@needs_stdlib_source
def test_corpus_is_deterministic(stdlib_corpus: tuple[Path, dict], tmp_path: Path) -> None:
    again = tmp_path / "again.jsonl"
    build_corpus(again, max_chars=CORPUS_CHARS)
    assert again.read_bytes() == stdlib_corpus[0].read_bytes()


def test_corpus_reads_sources_without_importing_and_skips_tests(tmp_path: Path) -> None:
    root = tmp_path / "lib"
    module_doc = "Tools for parsing the configuration files that a service reads when it starts up."
    _write(
        root / "pkg" / "__init__.py",
        f'"""{module_doc}"""\n\nraise RuntimeError("importing this module is not allowed")\n\n'
        "class Reader:\n"
        '    """Read one section of a file and return the values that it holds, in order."""\n\n'
        "    def close(self):\n"
        '        """Close the underlying file; the reader cannot be used after this call."""\n',
    )
    _write(root / "zz_copy_of_pkg.py", f'"""{module_doc.upper()}"""\n')
    _write(root / "broken.py", '"""This file does not parse, so it is skipped when the corpus is built."""\ndef (:\n')
    hidden = '"""A docstring in a test suite that must never appear in the sample corpus at all."""\n'
    for skipped in ("test/test_x.py", "site-packages/lib/mod.py", "idlelib/idle_test/t.py", "pkg/test_pkg.py"):
        _write(root / skipped, hidden)

    out = tmp_path / "docs.jsonl"
    stats = build_corpus(out, source_dir=root)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    texts = {r["text"] for r in records}
    assert texts == {
        module_doc,
        "Read one section of a file and return the values that it holds, in order.",
        "Close the underlying file; the reader cannot be used after this call.",
    }
    assert {r["source"] for r in records} >= {"pkg", "pkg.Reader.close"}
    assert stats["source_files"] == 3
    assert stats["documents"] == 3


def test_clean_docstring_removes_markup_and_doctests() -> None:
    raw = """Join :func:`os.path.join` parts with :meth:`~pathlib.PurePath.joinpath` and ``sep``.

        .. versionadded:: 3.2

        See `the docs <https://example.org>`_ for **more**.  Example::

            >>> join("a", "b")
            'a/b'

        Returns the joined path.
        """
    text = clean_docstring(raw)
    assert text == (
        "Join os.path.join parts with joinpath and sep.\n\nSee the docs for more.  Example:\n\nReturns the joined path."
    )
    doctest_heavy = "Add.\n\n>>> add(1, 2)\n3\n>>> add(2, 2)\n4\n"
    assert clean_docstring(doctest_heavy) is None


def test_english_prose_filter() -> None:
    assert is_english_prose("Return the number of items that are waiting in the queue, or zero if it is empty.")
    assert not is_english_prose("Return self.")
    assert not is_english_prose("angle-addr = [CFWS] '<' addr-spec '>' [CFWS] / obs-angle-addr = [CFWS] '<'")
    assert not is_english_prose("Gibt die Anzahl der Elemente in der Warteschlange zurück, oder null, wenn leer.")
    assert not is_english_prose("返回队列中等待的项目数量，如果队列为空则返回零。这是一个很长的句子。")


def test_corpus_falls_back_to_module_docstrings(tmp_path: Path) -> None:
    out = tmp_path / "docs.jsonl"
    stats = build_corpus(out, max_chars=200_000, source_dir=tmp_path / "no-sources-here")
    texts = read_corpus(out)
    assert stats["source"] == "builtin-module-docs"
    assert stats["source_files"] == 0 and stats["source_modules"] > 50
    assert len(texts) == stats["documents"] > 100
    assert len({" ".join(t.lower().split()) for t in texts}) == len(texts)


@needs_stdlib_source
def test_corpus_build_can_be_cancelled(tmp_path: Path) -> None:
    ctx = LocalContext(cancel_after=1)
    with pytest.raises(JobCancelled):
        build_corpus(tmp_path / "docs.jsonl", ctx=ctx)
    assert not (tmp_path / "docs.jsonl").exists()


def test_read_corpus_reports_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.jsonl"):
        read_corpus(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text field"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2 .*'text'"):
        read_corpus(bad)


# --- tiny LM ------------------------------------------------------------------------------------


def test_tiny_lm_learns_beyond_unigram_baseline(trained) -> None:
    _, stats, ctx = trained
    losses = [row["loss"] for row in ctx.metric_rows if "loss" in row]
    assert len(losses) == TINY_STEPS == stats["steps"]
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.5
    assert stats["val_loss"] < stats["unigram_val_loss"]
    assert stats["stopped_by"] == "max_steps"
    tokens = [row["tokens"] for row in ctx.metric_rows if "tokens" in row]
    assert tokens == sorted(tokens) and tokens[-1] == stats["tokens_seen"]
    assert [row["step"] for row in ctx.metric_rows if "val_loss" in row][-1] == TINY_STEPS
    progress = [m for m in ctx.messages if isinstance(m, p.Progress) and m.unit == "steps"]
    assert progress[-1].done == progress[-1].total == TINY_STEPS
    # the log compares each validation loss with the unigram baseline (3 evaluations during the run, 1 at the end)
    compared = [line for line in ctx.logs if "validation loss" in line and "unigram baseline" in line]
    assert len(compared) == 4 and compared[-1].startswith(f"trained {TINY_STEPS} steps")


def test_tiny_lm_loads_like_a_hub_model_and_generates(trained, stdlib_corpus) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, stats, _ = trained
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.model_type == "gpt2"
    assert model.config.n_positions == tokenizer.model_max_length == TINY["context_size"]
    eos = tokenizer.eos_token_id
    assert model.config.eos_token_id == model.config.bos_token_id == model.config.pad_token_id == eos
    assert model.generation_config.eos_token_id == eos and model.generation_config.pad_token_id == eos
    assert json.loads((out / TRAINING_STATS_FILE).read_text())["val_loss"] == stats["val_loss"]

    text = "Return the number of items in the queue."
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text

    _, val_texts = split_documents(read_corpus(stdlib_corpus[0]), VAL_FRACTION, seed=0)
    val_blocks = pack_documents(tokenize_texts(tokenizer, val_texts), eos, eos, TINY["context_size"])
    reloaded_loss = evaluate(model, val_blocks[: stats["val_sequences"]], 8, torch.device("cpu"))
    assert reloaded_loss == pytest.approx(stats["val_loss"], abs=1e-4)

    prompt = tokenizer("Return the", return_tensors="pt")
    generated = model.generate(**prompt, do_sample=False, max_new_tokens=8)
    assert generated.shape[1] > prompt["input_ids"].shape[1]
    assert isinstance(tokenizer.decode(generated[0]), str)


def test_tiny_lm_is_deterministic_for_a_seed(stdlib_corpus, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    curves, weights = [], []
    for run, seed in enumerate((0, 0, 1)):
        ctx = LocalContext()
        out = tmp_path / f"run{run}"
        train_tiny_lm(stdlib_corpus[0], out, max_steps=20, seed=seed, ctx=ctx, device="cpu", **TINY)
        curves.append([row["loss"] for row in ctx.metric_rows if "loss" in row])
        weights.append(load_file(out / "model.safetensors"))
    assert curves[0] == curves[1]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert curves[0] != curves[2]
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_tiny_lm_cancel_leaves_no_model(stdlib_corpus, tmp_path: Path) -> None:
    ctx = LocalContext(cancel_after=3)
    with pytest.raises(JobCancelled):
        train_tiny_lm(stdlib_corpus[0], tmp_path / "model", max_steps=1000, ctx=ctx, **TINY)
    assert not (tmp_path / "model").exists()
    assert 0 < len([row for row in ctx.metric_rows if "loss" in row]) < 1000


def test_tiny_lm_time_budget_stops_on_time(stdlib_corpus, tmp_path: Path) -> None:
    ctx = LocalContext()
    stats = train_tiny_lm(stdlib_corpus[0], tmp_path / "model", time_budget_s=0.5, ctx=ctx, **TINY)
    assert stats["stopped_by"] == "time_budget" and stats["steps"] >= 1
    seconds = [m for m in ctx.messages if isinstance(m, p.Progress) and m.unit == "s"]
    assert seconds and all(m.total == 0.5 and m.done <= 0.5 for m in seconds)
    assert (tmp_path / "model" / "config.json").is_file()


def test_the_sample_trains_a_fixed_number_of_steps_unless_given_a_time_budget(studio) -> None:
    from mistudio_tui.services.sample import SAMPLE_LM_STEPS, sample_spec

    spec = sample_spec(studio)  # the same model on a loaded machine as on an idle one
    assert (spec.params.max_steps, spec.params.time_budget_s) == (SAMPLE_LM_STEPS, None)
    timed = sample_spec(studio, time_budget_s=30)
    assert (timed.params.max_steps, timed.params.time_budget_s) == (None, 30)
    with pytest.raises(ValueError, match="--max-steps must be at least 1"):
        sample_spec(studio, max_steps=0)
    with pytest.raises(ValueError, match="--time-budget must be positive"):
        sample_spec(studio, time_budget_s=0)


def test_tiny_lm_rejects_bad_settings_and_tiny_corpora(stdlib_corpus, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="d_model"):
        train_tiny_lm(stdlib_corpus[0], tmp_path / "m", **{**TINY, "d_model": 30, "n_heads": 4})
    with pytest.raises(ValueError, match="max_steps"):
        train_tiny_lm(stdlib_corpus[0], tmp_path / "m", max_steps=0, **TINY)
    with pytest.raises(ValueError, match="give max_steps, or a positive time_budget_s"):
        train_tiny_lm(stdlib_corpus[0], tmp_path / "m", **TINY)
    small = tmp_path / "small.jsonl"
    small.write_text(json.dumps({"text": "Only a few words."}) + "\n")
    with pytest.raises(ValueError, match=r"small\.jsonl is too small"):
        train_tiny_lm(small, tmp_path / "m", max_steps=2, **TINY)
    assert not (tmp_path / "m").exists()


# --- build --------------------------------------------------------------------------------------


def test_build_sample_writes_and_replaces_cleanly(small_stdlib: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    datasets_dir, models_dir = tmp_path / "datasets", tmp_path / "models"
    ctx = LocalContext()
    first = build_sample(datasets_dir, models_dir, ctx, max_steps=3, **TINY)
    assert first["dataset_name"] == DATASET_NAME and first["model_name"] == MODEL_NAME
    assert Path(first["corpus_path"]) == datasets_dir / DATASET_NAME / CORPUS_FILE
    assert Path(first["model_path"]) == models_dir / MODEL_NAME
    assert first["corpus"]["documents"] == len(read_corpus(Path(first["corpus_path"])))
    assert first["model"]["steps"] == 3 and first["model"]["corpus_file"] == first["corpus_path"]
    assert {a.kind for a in ctx.artifacts} == {"dataset", "model"}
    assert {a.path for a in ctx.artifacts} == {first["corpus_path"], first["model_path"]}

    (models_dir / MODEL_NAME / "stale-file.bin").write_bytes(b"old")
    second = build_sample(datasets_dir, models_dir, LocalContext(), max_steps=4, **TINY)
    assert not (models_dir / MODEL_NAME / "stale-file.bin").exists()
    assert json.loads((models_dir / MODEL_NAME / TRAINING_STATS_FILE).read_text())["steps"] == 4
    assert second["corpus_path"] == first["corpus_path"]
    assert sorted(q.name for q in datasets_dir.iterdir()) == [DATASET_NAME]
    assert sorted(q.name for q in models_dir.iterdir()) == [MODEL_NAME]
    assert sorted(q.name for q in (datasets_dir / DATASET_NAME).iterdir()) == [CORPUS_FILE]
    AutoModelForCausalLM.from_pretrained(second["model_path"])


def test_cancelled_build_keeps_previous_sample(small_stdlib: Path, tmp_path: Path) -> None:
    datasets_dir, models_dir = tmp_path / "datasets", tmp_path / "models"
    build_sample(datasets_dir, models_dir, LocalContext(), max_steps=2, **TINY)
    before = (models_dir / MODEL_NAME / "model.safetensors").read_bytes()
    leftover = models_dir / f".{MODEL_NAME}.staging-killed"
    leftover.mkdir()

    ctx = LocalContext()
    original_metric = ctx.metric

    def cancel_during_training(step: int, **values: object) -> None:
        original_metric(step, **values)
        if step >= 2:
            ctx.cancel()

    ctx.metric = cancel_during_training  # type: ignore[method-assign]
    with pytest.raises(JobCancelled):
        build_sample(datasets_dir, models_dir, ctx, max_steps=50, **TINY)
    assert (models_dir / MODEL_NAME / "model.safetensors").read_bytes() == before
    assert sorted(q.name for q in datasets_dir.iterdir()) == [DATASET_NAME]
    assert sorted(q.name for q in models_dir.iterdir()) == [MODEL_NAME]


def test_the_sample_model_writes_no_massive_activation(stdlib_corpus, tmp_path: Path) -> None:
    """The sample's model at its own size and learning rate: the first block's output stays on the scale of the
    embeddings. At the old 3e-3 it grew to ~90x them in 300 steps, a near-constant vector that left the residual
    stream (what the sample's SAE reads) almost one-dimensional and most of that SAE's latents dead."""
    from transformers import GPT2LMHeadModel

    out = tmp_path / "lm"
    train_tiny_lm(stdlib_corpus[0], out, max_steps=300, seed=0)
    model = GPT2LMHeadModel.from_pretrained(out).eval()
    ids = torch.randint(10, model.config.vocab_size, (8, 128), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        embedded, after_block0 = model(ids, output_hidden_states=True).hidden_states[:2]
    ratio = float(after_block0.norm(dim=-1).mean() / embedded.norm(dim=-1).mean())
    assert ratio < 15, f"block 0 writes {ratio:.0f}x the embedding norm"
