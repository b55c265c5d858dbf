"""Worker side of dataset jobs: ingest a source (local files or a hub dataset), tokenize a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mistudio_tui.jobs.context import JobContext
from mistudio_tui.jobs.kinds.datasets import IngestParams, TokenizeParams


def ingest(params: IngestParams, ctx: JobContext) -> dict[str, Any]:
    """Read, clean and store the documents; compute the statistics the Datasets screen shows."""
    from mistudio_tui.ml.data.ingest import ingest_dataset
    from mistudio_tui.ml.data.readers import RowSource
    from mistudio_tui.ml.data.stats import dataset_stats

    out_dir = params.out_dir
    if params.source_type == "hub":
        from mistudio_tui.ml.hub import iter_hub_dataset

        split = params.hub_split or "train"
        ctx.log(f"streaming hub dataset {params.source} ({params.hub_config or 'default'}/{split})")
        rows = iter_hub_dataset(params.source, config=params.hub_config, split=split, streaming=params.streaming)
        source: Any = RowSource(rows, total=params.limit, name=params.source)
    else:
        source = Path(params.source)
    meta = ingest_dataset(
        source,
        out_dir,
        text_field=params.text_field,
        cleaning=params.cleaning,
        limit=params.limit,
        skip_bad_rows=params.skip_bad_rows,
        ctx=ctx,
        resume=params.resume,
        whole_file=params.txt_mode == "file",
    )
    if meta["documents"] == 0:
        raise ValueError(f"no documents left in {params.source} after cleaning ({meta.get('dropped')})")
    if meta.get("bad_rows"):
        ctx.log(f"skipped {meta['bad_rows']} bad rows, e.g. {meta['bad_row_examples'][:1]}")
    stats = dataset_stats(out_dir, ctx=ctx)
    stats["dropped"] = meta.get("dropped")
    stats["bad_rows"] = meta.get("bad_rows")
    return {
        "resource": {
            "n_documents": meta["documents"],
            "n_chars": meta["characters"],
            "text_field": meta.get("text_field"),
            "cleaning": meta.get("cleaning"),
            "stats": stats,
        }
    }


def tokenize(params: TokenizeParams, ctx: JobContext) -> dict[str, Any]:
    """Tokenize a dataset into fixed-width rows; keep a copy of the tokenizer beside the tokens."""
    from mistudio_tui.ml.data.stats import decode_top_tokens, tokenization_stats
    from mistudio_tui.ml.data.token_store import TokenStore
    from mistudio_tui.ml.data.tokenize import load_tokenizer, tokenize_dataset

    out_dir = params.out_dir
    tokenizer = load_tokenizer(params.tokenizer)
    meta = tokenize_dataset(
        params.dataset_dir,
        tokenizer,
        out_dir,
        context_size=params.context_size,
        prepend_bos=params.prepend_bos,
        packing=params.packing,
        separator=params.separator or "eos",
        max_tokens=params.max_tokens,
        ctx=ctx,
        resume=params.resume,
    )
    tokenizer.save_pretrained(out_dir / "tokenizer")
    stats = tokenization_stats(TokenStore(out_dir), ctx=ctx)
    stats["top_tokens"] = decode_top_tokens(stats, tokenizer)
    stats["truncated_documents"] = meta.get("truncated_documents")
    stats["start_token"] = meta.get("start_token")  # which special tokens were used, for the CLI and the TUI
    stats["separator_token"] = meta.get("separator_token")
    return {"resource": {"n_tokens": meta["n_tokens"], "n_sequences": meta["n_sequences"], "stats": stats}}
