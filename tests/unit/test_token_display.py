"""Tokens that are part of a multi-byte character are shown as their bytes (<0xE2>), never as '�'."""

from __future__ import annotations

import json
from pathlib import Path

from mistudio_tui.ml.sample.tokenizer import train_bpe_tokenizer
from mistudio_tui.ml.token_display import bytes_text, token_strings, token_text

TEXTS = ["café — naïve résumé", "plain ascii words here", "emoji 🙂 and dash —"] * 4


def test_partial_byte_tokens_show_their_bytes_and_whole_tokens_their_text() -> None:
    tok = train_bpe_tokenizer(TEXTS, vocab_size=270)
    ids = list(range(len(tok)))
    plain = tok.batch_decode([[i] for i in ids])
    broken = [i for i, text in enumerate(plain) if "\ufffd" in text]
    assert broken, "the tiny tokenizer should have byte tokens"
    shown = token_strings(tok, ids)
    assert not any("\ufffd" in text for text in shown)
    e2 = tok.convert_tokens_to_ids("â")  # GPT-2's stand-in for the byte 0xE2
    assert shown[e2] == "<0xE2>"
    whole = [i for i in ids if i not in broken]
    assert [shown[i] for i in whole] == [plain[i] for i in whole]


def test_bytes_text_keeps_whole_characters() -> None:
    assert bytes_text(" é".encode()) == " é"
    assert bytes_text(b" \xe2\x80") == " <0xE2><0x80>"


def test_the_feature_vocabulary_and_every_view_use_the_byte_names(tmp_path: Path) -> None:
    from mistudio_tui.jobs.tasks.features import write_vocab
    from mistudio_tui.ui.widgets.feature_view import _tok

    tok = train_bpe_tokenizer(TEXTS, vocab_size=270)
    vocab = write_vocab(tmp_path, tok)
    assert json.loads((tmp_path / "vocab.json").read_text()) == vocab
    e2 = tok.convert_tokens_to_ids("â")
    assert vocab[e2] == "<0xE2>" and _tok(vocab, e2) == "<0xE2>"
    assert token_text(vocab, len(vocab) + 3) == f"<{len(vocab) + 3}>"
