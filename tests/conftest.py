"""Shared fixtures: a temporary MISTUDIO_HOME per test and a tiny GPT-2-style model built offline."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_CORPUS = [
    "The cat sat on the mat. The dog sat on the log.",
    "Sparse autoencoders find interpretable features in language models.",
    "def add(a, b):\n    return a + b\n",
    "Paris is the capital of France. Berlin is the capital of Germany.",
    "One, two, three, four, five, six, seven, eight, nine, ten.",
    "The quick brown fox jumps over the lazy dog again and again.",
    "Numbers like 12, 345 and 6789 appear in text; so do dates like 2024-01-31.",
    "In the beginning the universe was created. This has made a lot of people very angry.",
] * 4


@pytest.fixture(autouse=True)
def mistudio_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty MISTUDIO_HOME (and config dir), never the user's."""
    home = tmp_path / "home"
    monkeypatch.setenv("MISTUDIO_HOME", str(home))
    monkeypatch.setenv("MISTUDIO_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    return home


@pytest.fixture(scope="session")
def tiny_corpus() -> list[str]:
    return list(TINY_CORPUS)


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer GPT-2 (d_model 32) with a BPE tokenizer, saved with save_pretrained."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from mistudio_tui.ml.sample.tokenizer import train_bpe_tokenizer

    out = tmp_path_factory.mktemp("tiny-gpt2")
    tok = train_bpe_tokenizer(TINY_CORPUS, vocab_size=300)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = GPT2LMHeadModel(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture
def studio(mistudio_home: Path):
    """A Studio (home, database, runner) in the test's temporary home; closed (jobs cancelled) afterwards."""
    from mistudio_tui.studio import Studio

    s = Studio(mistudio_home, max_parallel=3)
    yield s
    s.close()
