"""Worker side of dataset jobs: ingest a source (local files or a hub dataset), tokenize a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mistudio_tui.jobs.context import JobContext


def ingest(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Read, clean and store the documents; compute the statistics the Datasets screen shows."""
    from mistudio_tui.ml.data.cleaning import CleaningOptions
    from mistudio_tui.ml.data.ingest import ingest_dataset
    from mistudio_tui.ml.data.readers import RowSource
    from mistudio_tui.ml.data.stats import dataset_stats

    out_dir = Path(params["out_dir"])
    if params["source_type"] == "hub":
        from mistudio_tui.ml.hub import iter_hub_dataset

        ctx.log(
            f"streaming hub dataset {params['source']} ({params.get('hub_config') or 'default'}/"
            f"{params.get('hub_split') or 'train'})"
        )
        rows = iter_hub_dataset(
            params["source"],
            config=params.get("hub_config"),
            split=params.get("hub_split") or "train",
            streaming=bool(params.get("streaming", True)),
        )
        source: Any = RowSource(rows, total=params.get("limit"), name=params["source"])
    else:
        source = Path(params["source"])
    meta = ingest_dataset(
        source,
        out_dir,
        text_field=params.get("text_field"),
        cleaning=CleaningOptions.from_dict(params.get("cleaning") or {}),
        limit=params.get("limit"),
        skip_bad_rows=bool(params.get("skip_bad_rows")),
        ctx=ctx,
        resume=bool(params.get("resume")),
        whole_file=params.get("txt_mode") == "file",
    )
    if meta["documents"] == 0:
        raise ValueError(f"no documents left in {params['source']} after cleaning ({meta.get('dropped')})")
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


def tokenize(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Tokenize a dataset into fixed-width rows; keep a copy of the tokenizer beside the tokens."""
    from mistudio_tui.ml.data.stats import decode_top_tokens, tokenization_stats
    from mistudio_tui.ml.data.token_store import TokenStore
    from mistudio_tui.ml.data.tokenize import load_tokenizer, tokenize_dataset

    out_dir = Path(params["out_dir"])
    tokenizer = load_tokenizer(params["tokenizer"])
    meta = tokenize_dataset(
        Path(params["dataset_dir"]),
        tokenizer,
        out_dir,
        context_size=int(params["context_size"]),
        prepend_bos=bool(params.get("prepend_bos", True)),
        packing=bool(params.get("packing", True)),
        separator=params.get("separator") or "eos",
        max_tokens=params.get("max_tokens"),
        ctx=ctx,
        resume=bool(params.get("resume")),
    )
    tokenizer.save_pretrained(out_dir / "tokenizer")
    stats = tokenization_stats(TokenStore(out_dir), ctx=ctx)
    stats["top_tokens"] = decode_top_tokens(stats, tokenizer)
    stats["truncated_documents"] = meta.get("truncated_documents")
    stats["start_token"] = meta.get("start_token")  # which special tokens were used, for the CLI and the TUI
    stats["separator_token"] = meta.get("separator_token")
    return {"resource": {"n_tokens": meta["n_tokens"], "n_sequences": meta["n_sequences"], "stats": stats}}
