"""Tiny random models and tokenizations the benchmarks build in a temp folder, and a device sync for timing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mistudio_tui.ml.data.token_store import TokenStore, TokenStoreWriter

BOS = 0


def build_model(folder: Path, d_model: int, layers: int, context: int, vocab: int) -> Path:
    """A random GPT-2 saved with save_pretrained."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=vocab,
        n_positions=context,
        n_embd=d_model,
        n_layer=layers,
        n_head=max(1, d_model // 64),
        bos_token_id=BOS,
        eos_token_id=BOS,
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def build_tokens(folder: Path, n_rows: int, context: int, vocab: int) -> TokenStore:
    """Packed random rows, each starting with BOS."""
    rng = np.random.default_rng(0)
    rows = rng.integers(1, vocab, size=(n_rows, context), dtype=np.int64)
    rows[:, 0] = BOS
    writer = TokenStoreWriter(folder, context)
    writer.append(rows, np.full(n_rows, context))
    writer.close({"bos_token_id": BOS, "eos_token_id": BOS, "vocab_size": vocab})
    return TokenStore(folder)


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work so a timer reads the real end."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
