"""Train a tiny GPT-2-style causal LM and its BPE tokenizer on a JSONL corpus; save with `save_pretrained`."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from mistudio_tui.ml.device import pick_device, seed_everything
from mistudio_tui.ml.sample.corpus import read_corpus
from mistudio_tui.ml.sample.tokenizer import train_bpe_tokenizer
from mistudio_tui.reporting import JobContext, LocalContext

TRAINING_STATS_FILE = "training_stats.json"
VAL_FRACTION = 0.05
MAX_VAL_BLOCKS = 64
WARMUP_FRACTION = 0.05
MIN_LR_RATIO = 0.1
EVALS_PER_RUN = 4
# At 3e-3 the first block learned to write one huge, nearly constant vector (norm ~70 against embeddings of ~0.6),
# so the residual stream an SAE reads had ~99.9% of its variance in 5 directions and the sample's SAE ended with
# most latents dead; 1e-3 reaches the same validation loss without it (benchmarks/RESULTS.md, "The sample").
SAMPLE_LR = 1e-3


def train_tiny_lm(
    corpus_file: Path,
    out_dir: Path,
    vocab_size: int = 4096,
    context_size: int = 128,
    d_model: int = 128,
    n_layers: int = 2,
    n_heads: int = 4,
    time_budget_s: float | None = None,
    max_steps: int | None = None,
    batch_size: int = 8,
    seed: int = 0,
    ctx: JobContext | None = None,
    learning_rate: float = SAMPLE_LR,
    device: str | None = None,
) -> dict[str, Any]:
    """Train a tokenizer and model on `corpus_file` for `max_steps` (else `time_budget_s`); save to `out_dir`.

    A step count gives every machine the same model; a time budget gives a loaded machine a worse one.
    """
    ctx = ctx if ctx is not None else LocalContext()
    _check_sizes(vocab_size, context_size, d_model, n_layers, n_heads, batch_size, time_budget_s, max_steps)
    seed_everything(seed)
    torch_device = pick_device(device)
    ctx.started(str(torch_device))

    texts = read_corpus(corpus_file)
    train_texts, val_texts = split_documents(texts, VAL_FRACTION, seed)
    ctx.progress(0, None, text=f"training a {vocab_size}-token BPE tokenizer on {len(train_texts)} documents")
    tokenizer = train_bpe_tokenizer(train_texts, vocab_size=vocab_size)
    tokenizer.model_max_length = context_size
    ctx.check_cancelled()

    ctx.progress(0, None, text="tokenizing and packing")
    special = (tokenizer.bos_token_id, tokenizer.eos_token_id, context_size)
    train_blocks = pack_documents(tokenize_texts(tokenizer, train_texts), *special)
    val_blocks = pack_documents(tokenize_texts(tokenizer, val_texts), *special)[:MAX_VAL_BLOCKS]
    if len(train_blocks) == 0 or len(val_blocks) == 0:
        raise ValueError(
            f"corpus file {corpus_file} is too small: it packs into {len(train_blocks)} training and "
            f"{len(val_blocks)} validation sequences of {context_size} tokens; expected at least one of each"
        )
    unigram_entropy, unigram_val_loss = unigram_baseline(train_blocks, val_blocks, len(tokenizer))
    ctx.log(
        f"{len(train_blocks)} training and {len(val_blocks)} validation sequences of {context_size} tokens; "
        f"unigram baseline {unigram_val_loss:.3f} nats"
    )
    ctx.check_cancelled()

    config = build_config(tokenizer, context_size, d_model, n_layers, n_heads)
    model = GPT2LMHeadModel(config).to(torch_device)  # type: ignore[arg-type]  # transformers' decorated .to()
    optimizer = build_optimizer(model, learning_rate)
    n_params = sum(p.numel() for p in model.parameters())
    ctx.log(f"model: {n_params:,} parameters on {torch_device}")

    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train_blocks), generator=generator)
    cursor = step = tokens_seen = 0
    smoothed_loss = math.nan
    next_eval = 1.0 / EVALS_PER_RUN
    budget_s = float(time_budget_s or 0.0)  # read only without max_steps, and then checked positive
    start = time.monotonic()

    def fraction_done() -> float:
        if max_steps is not None:
            return step / max_steps
        return (time.monotonic() - start) / budget_s

    model.train()
    while (fraction := fraction_done()) < 1.0:
        ctx.check_cancelled()
        if cursor + batch_size > len(order):
            order = torch.randperm(len(train_blocks), generator=generator)
            cursor = 0
        batch = train_blocks[order[cursor : cursor + batch_size]].to(torch_device)
        cursor += batch_size
        lr = learning_rate * lr_factor(fraction)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = model(input_ids=batch, attention_mask=torch.ones_like(batch), labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

        step += 1
        tokens_seen += batch.numel()
        loss_value = float(loss.detach())
        smoothed_loss = loss_value if step == 1 else 0.95 * smoothed_loss + 0.05 * loss_value
        ctx.metric(step, loss=loss_value, tokens=tokens_seen, lr=lr)
        fraction = fraction_done()
        if next_eval <= fraction < 1.0:
            val_loss = evaluate(model, val_blocks, batch_size, torch_device)
            ctx.metric(step, val_loss=val_loss)
            ctx.log(f"step {step}: validation loss {val_loss:.3f} nats (unigram baseline {unigram_val_loss:.3f})")
            next_eval += 1.0 / EVALS_PER_RUN
        if max_steps is not None:
            ctx.progress(step, max_steps, text=f"step {step} · loss {smoothed_loss:.3f}", unit="steps")
        else:
            done_s = min(fraction, 1.0) * budget_s
            ctx.progress(done_s, budget_s, text=f"step {step} · loss {smoothed_loss:.3f}", unit="s")
    train_seconds = time.monotonic() - start

    ctx.progress(1, 1, text="evaluating and saving")
    val_loss = evaluate(model, val_blocks, batch_size, torch_device)
    ctx.metric(step, val_loss=val_loss)
    stats: dict[str, Any] = {
        "steps": step,
        "stopped_by": "max_steps" if max_steps is not None else "time_budget",
        "tokens_seen": tokens_seen,
        "train_seconds": round(train_seconds, 2),
        "tokens_per_second": round(tokens_seen / train_seconds, 1) if train_seconds > 0 else None,
        "final_train_loss": smoothed_loss,
        "val_loss": val_loss,
        "unigram_entropy": unigram_entropy,
        "unigram_val_loss": unigram_val_loss,
        "n_params": n_params,
        "vocab_size": len(tokenizer),
        "context_size": context_size,
        "d_model": d_model,
        "n_layers": n_layers,
        "n_heads": n_heads,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "seed": seed,
        "device": str(torch_device),
        "train_sequences": len(train_blocks),
        "val_sequences": len(val_blocks),
    }
    save_model(model, tokenizer, Path(out_dir), stats)
    ctx.log(
        f"trained {step} steps in {train_seconds:.1f} s: validation loss {val_loss:.3f} nats "
        f"vs unigram baseline {unigram_val_loss:.3f}"
    )
    return {"path": str(out_dir), "corpus_file": str(corpus_file), **stats}


def _check_sizes(
    vocab_size: int,
    context_size: int,
    d_model: int,
    n_layers: int,
    n_heads: int,
    batch_size: int,
    time_budget_s: float | None,
    max_steps: int | None,
) -> None:
    """Raise ValueError naming the first size that cannot build or train a model."""
    for name, value, low in (
        ("vocab_size", vocab_size, 260),
        ("context_size", context_size, 8),
        ("d_model", d_model, 8),
        ("n_layers", n_layers, 1),
        ("n_heads", n_heads, 1),
        ("batch_size", batch_size, 1),
    ):
        if value < low:
            raise ValueError(f"{name} must be at least {low}, got {value}")
    if d_model % n_heads:
        raise ValueError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
    if max_steps is None and not (time_budget_s is not None and time_budget_s > 0):
        raise ValueError(f"give max_steps, or a positive time_budget_s (got {time_budget_s})")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")


def split_documents(texts: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded split of whole documents into (train, validation), validation at least one document."""
    indices = list(range(len(texts)))
    random.Random(seed).shuffle(indices)
    n_val = max(1, round(len(texts) * val_fraction)) if len(texts) > 1 else 0
    val = sorted(indices[:n_val])
    train = sorted(indices[n_val:])
    return [texts[i] for i in train], [texts[i] for i in val]


def tokenize_texts(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens and without a length limit."""
    return [enc.ids for enc in tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)]


def pack_documents(token_lists: list[list[int]], bos_id: int, eos_id: int, context_size: int) -> torch.Tensor:
    """Rows of `context_size` ids: BOS, then the next piece of the stream `doc EOS doc EOS ...`."""
    stream = [token for tokens in token_lists for token in (*tokens, eos_id)]
    body = context_size - 1
    n_rows = len(stream) // body
    rows = torch.tensor(stream[: n_rows * body], dtype=torch.long).view(n_rows, body)
    return torch.cat([torch.full((n_rows, 1), bos_id, dtype=torch.long), rows], dim=1)


def unigram_baseline(train_blocks: torch.Tensor, val_blocks: torch.Tensor, vocab_size: int) -> tuple[float, float]:
    """(entropy of the training unigram distribution, its cross-entropy on validation targets), in nats."""
    counts = torch.bincount(train_blocks[:, 1:].reshape(-1), minlength=vocab_size).double() + 1.0
    probs = counts / counts.sum()
    entropy = float(-(probs * probs.log()).sum())
    val_cross_entropy = float(-probs.log()[val_blocks[:, 1:].reshape(-1)].mean())
    return entropy, val_cross_entropy


def build_config(
    tokenizer: PreTrainedTokenizerFast, context_size: int, d_model: int, n_layers: int, n_heads: int
) -> GPT2Config:
    """A GPT-2 config sized for the sample, with special-token ids and no dropout (the run is short)."""
    return GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=context_size,
        n_embd=d_model,
        n_layer=n_layers,
        n_head=n_heads,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_optimizer(model: torch.nn.Module, learning_rate: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases, layer norms)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=learning_rate,
        betas=(0.9, 0.95),
    )


def lr_factor(fraction: float) -> float:
    """Linear warmup over the first WARMUP_FRACTION of the run, then cosine decay to MIN_LR_RATIO."""
    if fraction < WARMUP_FRACTION:
        return (fraction + 1e-3) / (WARMUP_FRACTION + 1e-3)
    progress = min(1.0, (fraction - WARMUP_FRACTION) / (1.0 - WARMUP_FRACTION))
    return MIN_LR_RATIO + (1.0 - MIN_LR_RATIO) * 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def evaluate(model: GPT2LMHeadModel, blocks: torch.Tensor, batch_size: int, device: torch.device) -> float:
    """Mean next-token cross-entropy (nats) over every target position of `blocks`."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(blocks), batch_size):
        batch = blocks[start : start + batch_size].to(device)
        loss = model(input_ids=batch, attention_mask=torch.ones_like(batch), labels=batch).loss
        n_targets = batch.shape[0] * (batch.shape[1] - 1)
        total += float(loss) * n_targets
        count += n_targets
    model.train(was_training)
    return total / count


def save_model(
    model: GPT2LMHeadModel, tokenizer: PreTrainedTokenizerFast, out_dir: Path, stats: dict[str, Any]
) -> None:
    """Write model, tokenizer, a sampling generation config and the training stats into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
        temperature=0.8,
        top_k=50,
        max_new_tokens=64,
    )
    model.cpu().save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / TRAINING_STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
