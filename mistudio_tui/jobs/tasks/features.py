"""Worker side of feature extraction: model + SAE over a tokenization → per-feature statistics and examples.

Besides the feature store it writes, for torch-free readers (the UI, the labeling worker):
    vocab.json      token id -> display string
    table.jsonl     one row per feature for the database (density, max, top tokens, a technical label)
    pool.safetensors  random windows with the features active at each token (non-activating examples for scoring)
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Generator
from pathlib import Path
from typing import Any

from mistudio_tui.jobs.context import JobContext
from mistudio_tui.jobs.kinds.features import FeaturesParams
from mistudio_tui.ml.token_display import token_text

POOL_SEQUENCES = 256
POOL_ACTIVE_PER_TOKEN = 64


def extract(params: FeaturesParams, ctx: JobContext) -> dict[str, Any]:
    """Scan `n_tokens` of the tokenization; write the feature store and the torch-free side files."""
    from mistudio_tui.ml.data.token_store import TokenStore
    from mistudio_tui.ml.features.extract import ExtractionOptions, extract_feature_stats
    from mistudio_tui.ml.features.logit_lens import logit_lens
    from mistudio_tui.ml.features.similarity import similar_by_decoder
    from mistudio_tui.ml.features.store import FeatureSetReader, FeatureSetWriter
    from mistudio_tui.ml.models.loading import load_model
    from mistudio_tui.ml.sae.formats import load_any

    out_dir = params.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    loaded = load_model(params.model_path, dtype=params.model_dtype, device=params.device)
    ctx.started(str(loaded.device))
    sae = load_any(params.sae_dir, device=loaded.device).sae.eval()
    hook = params.hook
    if not hook:
        raise ValueError(f"the SAE in {params.sae_dir} does not say which hook point it reads")
    tokens = TokenStore(params.tokenization_dir)
    tokenizer = load_tokenizer_for(tokens, loaded)
    special = special_ids(tokens, exclude_bos=params.exclude_bos, exclude_special=params.exclude_special)
    options = ExtractionOptions(
        n_tokens=params.n_tokens,
        context=(params.context_before, params.context_after),
        top_k=params.top_k,
        n_quantiles=params.n_quantiles,
        per_quantile=params.per_quantile,
        dead_density=params.dead_density,
        special_ids=tuple(special),
        pad_id=int(tokens.meta.get("pad_token_id") or 0),
    )
    batches = sequence_batches(loaded, tokens, hook, params.batch_size, special)
    try:
        stats = extract_feature_stats(batches, sae.encode, int(sae.W_dec.shape[0]), options, ctx)
    finally:
        batches.close()  # removes the capture hooks even when the token budget ended the scan early
    ctx.progress(0, None, text="logit lens and similar features")
    W_dec = sae.W_dec.detach().float()
    lens = None
    if params.is_causal_lm:
        embeddings = getattr(loaded.model, "get_output_embeddings", None)  # a transformers model's output head
        head = embeddings() if embeddings is not None else None
        if head is not None:
            lens = logit_lens(W_dec, head.weight.detach().float(), top=10, norm_weight=final_norm_weight(loaded.model))
    similar = similar_by_decoder(W_dec, top=10)
    extra = {
        "hook": hook,
        "model": params.model_path,
        "sae": str(params.sae_dir),
        "tokenization": str(params.tokenization_dir),
        "n_tokens": int(stats.tokens_seen),
    }
    FeatureSetWriter(out_dir).write(stats, extra, logit_lens=lens, similar=similar)
    vocab = write_vocab(out_dir, tokenizer)
    with FeatureSetReader(out_dir) as reader:
        n_alive = write_table(out_dir, reader, vocab)
    ctx.progress(0, None, text="sampling windows for scoring")
    write_pool(out_dir, loaded, sae, tokens, hook, special, seed=0)
    return {"resource": {"n_tokens": int(stats.tokens_seen), "n_alive": n_alive, "d_sae": int(W_dec.shape[0])}}


def load_tokenizer_for(tokens: Any, loaded: Any) -> Any:
    """The tokenizer saved with the tokenization, else the model's."""
    from transformers import AutoTokenizer

    folder = tokens.folder / "tokenizer"
    if folder.exists():
        return AutoTokenizer.from_pretrained(folder)
    if loaded.tokenizer is None:
        raise ValueError(f"no tokenizer found for {tokens.folder}: cannot show example text")
    return loaded.tokenizer


def special_ids(tokens: Any, exclude_bos: bool = True, exclude_special: bool = True) -> list[int]:
    """Token ids never counted: BOS and every other special token, each unless asked to keep them.

    Keeping BOS wins over excluding special tokens (BOS is usually one of them, e.g. GPT-2's <|endoftext|>).
    """
    meta = tokens.meta
    ids: set[int] = set()
    if exclude_special:
        ids.update(int(i) for i in meta.get("special_token_ids") or [])
    bos = meta.get("bos_token_id")
    if bos is not None:
        if exclude_bos:
            ids.add(int(bos))
        else:
            ids.discard(int(bos))
    return sorted(ids)


def sequence_batches(
    loaded: Any, tokens: Any, hook: str, batch_size: int, special: list[int]
) -> Generator[Any, None, None]:
    """SequenceBatch per `batch_size` rows of the tokenization, activations captured at `hook`."""
    import torch

    from mistudio_tui.ml.features.extract import SequenceBatch, valid_token_mask
    from mistudio_tui.ml.models.hooks import capture

    device = loaded.device
    with capture(loaded.model, [hook]) as cap:
        for lo, rows, lengths in tokens.iter_batches(batch_size):
            ids = torch.as_tensor(rows, dtype=torch.long)
            length = torch.tensor(lengths, dtype=torch.long)
            attention = (torch.arange(ids.shape[1])[None, :] < length[:, None]).long()
            with torch.no_grad():
                cap.run(input_ids=ids.to(device), attention_mask=attention.to(device))
            acts = cap[hook].float()
            yield SequenceBatch(  # ids and masks stay on the CPU, where the extraction reads them
                token_ids=ids,
                sequence_index=torch.arange(lo, lo + ids.shape[0]),
                valid_mask=valid_token_mask(ids, special, length),
                activations=acts,
            )


def final_norm_weight(model: Any) -> Any:
    """The scale of the final norm before the unembedding (GPT-2 ln_f, Llama norm, NeoX final_layer_norm)."""
    base = getattr(model, getattr(model, "base_model_prefix", ""), model)
    for name in ("ln_f", "norm", "final_layer_norm", "final_norm"):
        module = getattr(base, name, None)
        weight = getattr(module, "weight", None)
        if weight is not None:
            return weight.detach().float()
    return None


def write_vocab(out_dir: Path, tokenizer: Any) -> list[str]:
    """Display strings of every token id (what the UI and labeling show)."""
    from mistudio_tui.ml.token_display import token_strings

    vocab = token_strings(tokenizer, range(len(tokenizer)))
    (out_dir / "vocab.json").write_text(json.dumps(vocab))
    return vocab


def token_label(token: str) -> str:
    """' the' -> 'tok:" the"' (quotes show leading spaces)."""
    return "tok:" + json.dumps(token, ensure_ascii=False)


def write_table(out_dir: Path, reader: Any, vocab: list[str]) -> int:
    """One JSON line per feature: what the browser sorts, filters and searches on."""
    alive = 0
    with open(out_dir / "table.jsonl", "w") as fh:
        for row in reader.summary_table():
            counts = Counter(row["top_token_ids"])
            top = [token_text(vocab, t) for t, _ in counts.most_common(5)]
            technical = ""
            if counts:
                token, n = counts.most_common(1)[0]
                if n >= 0.6 * sum(counts.values()) and 0 <= token < len(vocab):
                    technical = token_label(token_text(vocab, token))
            alive += not row["dead"]
            record = {
                "index": row["index"],
                "density": row["density"],
                "mean_activation": row["mean"],
                "max_activation": row["max"],
                "top_tokens": " | ".join(json.dumps(t, ensure_ascii=False)[1:-1] for t in top),
                "technical_label": technical,
                "dead": row["dead"],
            }
            fh.write(json.dumps(record) + "\n")
    return alive


def write_pool(out_dir: Path, loaded: Any, sae: Any, tokens: Any, hook: str, special: list[int], seed: int) -> None:
    """Random whole sequences with, per token, the ids of the features active there (-1 padded)."""
    import numpy as np
    import torch
    from safetensors.numpy import save_file

    from mistudio_tui.ml.features.extract import valid_token_mask
    from mistudio_tui.ml.models.hooks import capture

    rng = np.random.default_rng(seed)
    n = min(POOL_SEQUENCES, len(tokens))
    rows = np.sort(rng.choice(len(tokens), size=n, replace=False)) if n else np.zeros(0, np.int64)
    ids_all, valid_all, active_all = [], [], []
    keep = min(POOL_ACTIVE_PER_TOKEN, int(sae.W_dec.shape[0]))
    with capture(loaded.model, [hook]) as cap, torch.no_grad():
        for lo in range(0, n, 16):
            chosen = rows[lo : lo + 16]
            ids = torch.as_tensor(np.asarray(tokens.tokens[chosen], dtype=np.int64))
            length = torch.as_tensor(np.asarray(tokens.lengths[chosen], dtype=np.int64))
            attention = (torch.arange(ids.shape[1])[None, :] < length[:, None]).long()
            cap.run(input_ids=ids.to(loaded.device), attention_mask=attention.to(loaded.device))
            codes = sae.encode(cap[hook].float())
            values, index = codes.topk(keep, dim=-1)
            index = torch.where(values > 0, index, torch.full_like(index, -1))
            ids_all.append(ids.numpy().astype(np.int32))
            valid_all.append(valid_token_mask(ids, special, length).numpy())
            active_all.append(index.cpu().numpy().astype(np.int32))
    if not ids_all:
        return
    active = np.concatenate(active_all)
    widest = int((active >= 0).sum(axis=-1).max()) if active.size else 0
    save_file(
        {
            "token_ids": np.concatenate(ids_all),
            "valid": np.concatenate(valid_all).astype(np.uint8),
            "active": np.ascontiguousarray(active[..., : max(widest, 1)]),
            "sequence": rows.astype(np.int64),
        },
        str(out_dir / "pool.safetensors"),
    )
