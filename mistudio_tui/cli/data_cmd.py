"""`mistudio sample`, `mistudio datasets …`, `mistudio tokenizations …`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mistudio_tui.cli.common import add_list_show_delete, basic, count_arg, run_spec
from mistudio_tui.cli.output import emit
from mistudio_tui.db.models import Dataset, LanguageModel, Tokenization
from mistudio_tui.services import datasets as svc
from mistudio_tui.services.sample import SAMPLE_LM_STEPS, sample_spec
from mistudio_tui.studio import Studio

DATASET_COLUMNS = [
    ("id", "ID"),
    ("name", "NAME"),
    ("source_type", "SOURCE"),
    ("status", "STATUS"),
    ("n_documents", "DOCS"),
    ("n_chars", "CHARS"),
    ("tokenizations", "TOKENIZATIONS"),
]
TOKENIZATION_COLUMNS = [
    ("id", "ID"),
    ("name", "NAME"),
    ("dataset", "DATASET"),
    ("tokenizer", "TOKENIZER"),
    ("context_size", "CTX"),
    ("n_tokens", "TOKENS"),
    ("status", "STATUS"),
]


def dataset_summary(d: Dataset) -> dict[str, Any]:
    data = basic(d, ["id", "name", "source_type", "source", "status", "n_documents", "n_chars", "path", "error"])
    data["tokenizations"] = d.tokenizations.count()
    return data


def dataset_detail(d: Dataset) -> dict[str, Any]:
    data = dataset_summary(d)
    data.update(text_field=d.text_field, cleaning=d.cleaning, stats=d.stats, created_at=d.created_at)
    data["tokenization_list"] = [tokenization_summary(t) for t in d.tokenizations]
    return data


def tokenization_summary(t: Tokenization) -> dict[str, Any]:
    data = basic(
        t,
        [
            "id",
            "name",
            "context_size",
            "prepend_bos",
            "packing",
            "separator",
            "n_tokens",
            "n_sequences",
            "status",
            "path",
            "error",
        ],
    )
    data["dataset"] = t.dataset.name
    data["tokenizer"] = t.model.name if t.model else t.tokenizer
    stats = t.stats or {}
    data["start_token"] = stats.get("start_token")  # the tokenizer's own: BOS for causal LMs, CLS for encoders
    data["separator_token"] = stats.get("separator_token")
    return data


def tokenization_detail(t: Tokenization) -> dict[str, Any]:
    data = tokenization_summary(t)
    data["stats"] = t.stats
    return data


def model_summary(m: LanguageModel) -> dict[str, Any]:
    return basic(m, ["id", "name", "source", "status", "model_type", "d_model", "n_layers", "n_params", "path"])


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "sample", help="build the offline sample: corpus + tiny GPT-2 (about a minute)", parents=[common]
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument(
        "--max-steps", type=int, default=None, help=f"LM training steps (default {SAMPLE_LM_STEPS}, about a minute)"
    )
    length.add_argument("--time-budget", type=float, default=None, help="train the LM for this many seconds instead")
    p.add_argument(
        "--pipeline",
        action="store_true",
        help="then tokenize, extract activations, train a TopK SAE and extract its features (about 4 minutes)",
    )
    p.set_defaults(func=cmd_sample)

    ds = sub.add_parser("datasets", help="text corpora", parents=[common])
    verbs = ds.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = verbs.add_parser(
        "add", help="ingest a local file/folder (txt, jsonl, csv, parquet) or a hub dataset", parents=[common]
    )
    p.add_argument("source", help="a file, a folder, or a hub dataset id")
    p.add_argument("--name")
    p.add_argument("--hub", action="store_true", default=None, help="treat SOURCE as a hub dataset id")
    p.add_argument("--text-field", help="the column holding the text (default: 'text' or the only text column)")
    p.add_argument(
        "--txt-mode",
        choices=["lines", "file"],
        default="lines",
        help="txt files: one document per line (default) or per file",
    )
    p.add_argument("--config", dest="hub_config", help="hub dataset config")
    p.add_argument("--split", dest="hub_split", default="train", help="hub dataset split (default train)")
    p.add_argument("--limit", type=count_arg("--limit"), help="stop after this many rows")
    p.add_argument(
        "--no-streaming", action="store_true", help="hub: download the whole split first instead of streaming rows"
    )
    p.add_argument("--min-chars", type=int, default=0, help="drop documents shorter than this")
    p.add_argument("--strip-html", action="store_true")
    p.add_argument("--dedupe", action="store_true", help="drop exact duplicate documents")
    p.add_argument("--unicode", choices=["NFC", "NFKC", "none"], default="NFC", help="unicode normalisation")
    p.add_argument("--normalize-whitespace", action="store_true", help="collapse runs of whitespace")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip malformed rows instead of failing")
    p.set_defaults(func=cmd_add)
    p = verbs.add_parser("tokenize", help="tokenize a dataset (several tokenizations per dataset)", parents=[common])
    p.add_argument("dataset", help="dataset id or name")
    p.add_argument("--model", help="use this registered model's tokenizer")
    p.add_argument("--tokenizer", help="or a tokenizer folder / hub name")
    p.add_argument("--context-size", type=int, default=128)
    p.add_argument(
        "--no-bos", action="store_true", help="no start token on each row (default: BOS, or CLS for encoders)"
    )
    p.add_argument("--no-packing", action="store_true", help="one document per row (truncated, padded)")
    p.add_argument(
        "--separator",
        default="eos",
        help="between packed documents: eos (the tokenizer's end token: EOS, or SEP for encoders), none, or a token",
    )
    p.add_argument("--max-tokens", type=count_arg("--max-tokens"))
    p.add_argument("--name")
    p.set_defaults(func=cmd_tokenize)
    p = verbs.add_parser(
        "fields", help="the fields of a file, folder or hub dataset, to choose --text-field", parents=[common]
    )
    p.add_argument("source", help="a file, a folder, or a hub dataset id")
    p.add_argument("--hub", action="store_true", default=None, help="treat SOURCE as a hub dataset id")
    p.add_argument("--config", dest="hub_config", help="hub dataset config")
    p.add_argument("--txt-mode", choices=["lines", "file"], default="lines")
    p.set_defaults(func=cmd_fields)
    p = verbs.add_parser("resume", help="continue an interrupted ingest", parents=[common])
    p.add_argument("dataset")
    p.set_defaults(func=cmd_resume)
    add_list_show_delete(verbs, common, Dataset, "dataset", DATASET_COLUMNS, dataset_summary, dataset_detail)

    tk = sub.add_parser("tokenizations", help="tokenized datasets", parents=[common])
    verbs = tk.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = verbs.add_parser("resume", help="continue an interrupted tokenization", parents=[common])
    p.add_argument("tokenization")
    p.set_defaults(func=cmd_resume_tokenization)
    add_list_show_delete(
        verbs,
        common,
        Tokenization,
        "tokenization",
        TOKENIZATION_COLUMNS,
        tokenization_summary,
        tokenization_detail,
    )


def cmd_sample(args: argparse.Namespace, studio: Studio) -> None:
    from mistudio_tui.cli.jobrun import run_job

    spec = sample_spec(studio, time_budget_s=args.time_budget, max_steps=args.max_steps)
    job = run_job(studio, spec.kind, spec.params, title=spec.title)
    from mistudio_tui.services.sample import SAMPLE_DATASET, SAMPLE_MODEL

    dataset = Dataset.get(Dataset.name == SAMPLE_DATASET)
    model = LanguageModel.get(LanguageModel.name == SAMPLE_MODEL)
    data = {
        "job": job.id,
        "dataset": dataset_summary(dataset),
        "model": model_summary(model),
        "training": job.result.get("training", {}) if job.result else {},
    }
    if args.pipeline:
        from mistudio_tui.services.pipeline import sample_stages

        stages = {}
        for stage in sample_stages(studio):
            spec = stage()
            run_job(studio, spec.kind, spec.params, title=spec.title, resource=spec.resource)
            assert spec.resource is not None  # every sample stage fills a row
            stages[spec.kind] = spec.resource.id
        data["pipeline"] = stages
    emit(
        args.json,
        data,
        lambda: (
            f"sample ready: dataset '{dataset.name}' (id {dataset.id}, "
            f"{dataset.n_documents:,} documents), model '{model.name}' (id {model.id})"
        ),
    )


def cmd_add(args: argparse.Namespace, studio: Studio) -> None:
    cleaning = {
        "unicode_form": args.unicode,
        "normalize_whitespace": args.normalize_whitespace,
        "strip_html": args.strip_html,
        "min_chars": args.min_chars,
        "dedupe": args.dedupe,
    }
    spec = svc.add_dataset(
        studio,
        args.source,
        name=args.name,
        hub=args.hub,
        text_field=args.text_field,
        txt_mode=args.txt_mode,
        hub_config=args.hub_config,
        hub_split=args.hub_split,
        limit=args.limit,
        cleaning=cleaning,
        skip_bad_rows=args.skip_bad_rows,
        streaming=not args.no_streaming,
    )
    run_spec(args, studio, spec, dataset_summary)


def cmd_fields(args: argparse.Namespace, studio: Studio) -> None:
    path = Path(args.source).expanduser()
    if (args.hub if args.hub is not None else not path.exists()) and not args.source.startswith(("/", ".", "~")):
        from mistudio_tui.ml.hub import hub_dataset_info

        info = hub_dataset_info(args.source, config=args.hub_config)
        data: dict[str, Any] = {
            "source": args.source,
            "configs": list(info.configs),
            "config": info.config,
            "splits": list(info.splits),
            "fields": info.columns,
            "text_fields": info.text_columns,
            "types": info.features,
        }
    else:
        from mistudio_tui.ml.data.readers import peek_fields

        peek = peek_fields(path, n_samples=3, whole_file=args.txt_mode == "file", max_chars=120)
        data = {
            "source": str(path),
            "file": peek.file,
            "fields": peek.fields,
            "text_fields": peek.string_fields,
            "default_text_field": peek.default_field,
            "samples": peek.samples,
        }

    def human() -> str:
        lines = [f"{key:>18}: {', '.join(map(str, value)) if isinstance(value, list) else value}"
                 for key, value in data.items() if key not in ("samples", "types")]  # fmt: skip
        lines += [f"{'sample':>18}: {json.dumps(row, ensure_ascii=False)}" for row in data.get("samples", [])]
        return "\n".join(lines)

    emit(args.json, data, human)


def cmd_resume(args: argparse.Namespace, studio: Studio) -> None:
    run_spec(args, studio, svc.resume_ingest(studio, args.dataset), dataset_summary)


def cmd_resume_tokenization(args: argparse.Namespace, studio: Studio) -> None:
    run_spec(args, studio, svc.resume_tokenization(studio, args.tokenization), tokenization_summary)


def cmd_tokenize(args: argparse.Namespace, studio: Studio) -> None:
    spec = svc.tokenize_dataset(
        studio,
        args.dataset,
        model_ref=args.model,
        tokenizer=args.tokenizer,
        context_size=args.context_size,
        prepend_bos=not args.no_bos,
        packing=not args.no_packing,
        separator=args.separator,
        max_tokens=args.max_tokens,
        name=args.name,
    )
    run_spec(args, studio, spec, tokenization_summary)
