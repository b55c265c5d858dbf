"""How a token is shown, everywhere tokens are shown (tables, contexts, the logit lens, test text, exports).

Torch-free. A token that is part of a multi-byte character (byte-level BPE splits 'é' or '—' into bytes) decodes
alone to U+FFFD '�'; it is shown as its bytes instead, `<0xE2>`, the way SentencePiece names its byte tokens.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from functools import cache
from typing import Any

REPLACEMENT = "\ufffd"
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def _hex_bytes(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)  # registered for decoding only
    return "".join(f"<0x{b:02X}>" for b in error.object[error.start : error.end]), error.end


codecs.register_error("mistudio_hex_bytes", _hex_bytes)


@cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, inverted: the printable character standing for each byte -> the byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def bytes_text(data: bytes) -> str:
    """UTF-8 text, with bytes that are not (part of) a whole character shown as <0xNN>."""
    return data.decode("utf-8", errors="mistudio_hex_bytes")


def token_strings(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """The display text of each token id: its decoded text, or its bytes where it is a partial character."""
    ids = [int(i) for i in ids]
    texts = tokenizer.batch_decode([[i] for i in ids], clean_up_tokenization_spaces=False)
    out = []
    for token_id, text in zip(ids, texts, strict=True):
        if REPLACEMENT in text:
            text = _raw_token_text(tokenizer, token_id, text)
        out.append(text)
    return out


def _raw_token_text(tokenizer: Any, token_id: int, decoded: str) -> str:
    piece = tokenizer.convert_ids_to_tokens(token_id)
    if not isinstance(piece, str):
        return decoded
    if _BYTE_TOKEN.fullmatch(piece):  # SentencePiece byte fallback already names the byte
        return piece.upper().replace("0X", "0x")
    table = _byte_decoder()
    if all(ch in table for ch in piece):  # byte-level BPE: each character stands for one byte
        return bytes_text(bytes(table[ch] for ch in piece))
    return decoded


def token_text(vocab: Sequence[str], token_id: int) -> str:
    """The stored display string of a token id ('<id>' when the vocabulary does not have it)."""
    return vocab[token_id] if 0 <= token_id < len(vocab) else f"<{token_id}>"
