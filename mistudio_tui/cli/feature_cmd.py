"""`mistudio features …` and `mistudio featuresets …`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mistudio_tui.cli.common import add_list_show_delete, basic, count_arg, int_arg, run_spec
from mistudio_tui.cli.output import emit, format_table
from mistudio_tui.db import features as fq
from mistudio_tui.db.lookup import resolve
from mistudio_tui.db.models import FeatureSet
from mistudio_tui.services import features as feature_svc
from mistudio_tui.services.feature_export import FORMATS, export_feature_set, parse_feature_indices
from mistudio_tui.studio import Studio

FEATURESET_COLUMNS = [
    ("id", "ID"),
    ("name", "NAME"),
    ("training", "TRAINING"),
    ("d_sae", "FEATURES"),
    ("n_alive", "ALIVE"),
    ("n_tokens", "TOKENS"),
    ("status", "STATUS"),
]
FEATURE_COLUMNS = [
    ("index", "INDEX"),
    ("density", "DENSITY"),
    ("max_activation", "MAX"),
    ("top_tokens", "TOP TOKENS"),
    ("technical_label", "TECHNICAL"),
    ("semantic_label", "SEMANTIC"),
]


def featureset_summary(f: FeatureSet) -> dict[str, Any]:
    data = basic(f, ["id", "name", "d_sae", "n_alive", "n_tokens", "status", "path", "error"])
    data["training"] = f.training.name
    return data


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    ft = sub.add_parser("features", help="feature extraction and browsing", parents=[common])
    verbs = ft.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = verbs.add_parser(
        "extract", help="top/quantile examples, density, logit lens of every feature", parents=[common]
    )
    p.add_argument("training", help="training (SAE) id or name")
    p.add_argument("--tokens", dest="n_tokens", type=count_arg("--tokens"))
    p.add_argument("--tokenization", help="tokenization to run on (default: the training's)")
    p.add_argument("--top-k", type=int, help="top activating examples kept per feature (default 20)")
    p.add_argument("--quantiles", dest="n_quantiles", type=int, help="activation bands sampled (default 5)")
    p.add_argument("--per-quantile", type=int, help="examples per band (default 4)")
    p.add_argument("--context", type=context_arg, help="tokens shown before,after each example's token (default 12,4)")
    p.add_argument("--include-bos", action="store_true", help="count the BOS token (excluded by default)")
    p.add_argument(
        "--include-special", action="store_true", help="count special tokens such as EOS (excluded by default)"
    )
    p.add_argument(
        "--dead-density", type=float, help="features firing on fewer than this fraction of tokens are dead (1e-6)"
    )
    p.add_argument("--batch-size", type=int, help="sequences per forward pass (default 8)")
    p.add_argument("--device")
    p.add_argument("--name")
    p.set_defaults(func=cmd_extract)
    p = verbs.add_parser("export", help="write a feature set as JSON, JSONL or Neuronpedia files", parents=[common])
    p.add_argument("featureset", help="feature set id or name")
    p.add_argument("path", help="output file (json, jsonl) or folder (neuronpedia)")
    p.add_argument("--format", dest="fmt", default="json", choices=list(FORMATS))
    p.add_argument("--features", help="indices and ranges to export, e.g. 0-99,512 (default: all)")
    dead = p.add_mutually_exclusive_group()
    dead.add_argument(
        "--include-dead",
        action="store_true",
        default=None,
        help="also write dead features (neuronpedia leaves them out by default)",
    )
    dead.add_argument(
        "--skip-dead", dest="include_dead", action="store_false", help="leave dead features out of json/jsonl too"
    )
    p.set_defaults(func=cmd_export)
    p = verbs.add_parser("list", help="features of a feature set", parents=[common])
    p.add_argument("featureset", help="feature set id or name")
    p.add_argument("--sort", default="index", choices=list(fq.SORT_COLUMNS))
    p.add_argument("--asc", action="store_true", help="ascending (default: descending, except index)")
    p.add_argument("--search", default="")
    p.add_argument("--limit", type=int_arg(1), default=50, help="features shown (default 50)")
    p.add_argument("--offset", type=int_arg(0), default=0)
    p.add_argument("--alive", action="store_true", help="hide dead features")
    p.set_defaults(func=cmd_features_list)

    fs = sub.add_parser("featuresets", help="extracted feature sets", parents=[common])
    verbs = fs.add_subparsers(dest="verb", required=True, metavar="VERB")
    add_list_show_delete(verbs, common, FeatureSet, "feature set", FEATURESET_COLUMNS, featureset_summary)


def context_arg(text: str) -> tuple[int, int]:
    """An argparse type for '--context BEFORE,AFTER' (one number means the same on both sides)."""
    parts = text.split(",")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < 0:
        raise argparse.ArgumentTypeError(f"--context {text!r}: expected BEFORE,AFTER token counts, e.g. 12,4")
    return values[0], values[1]


def extraction_options(args: argparse.Namespace) -> dict[str, Any]:
    """The extraction options given on the command line (None for those left to the defaults)."""
    before, after = args.context if args.context is not None else (None, None)
    return {
        "top_k": args.top_k,
        "n_quantiles": args.n_quantiles,
        "per_quantile": args.per_quantile,
        "context_before": before,
        "context_after": after,
        "exclude_bos": False if args.include_bos else None,
        "exclude_special": False if args.include_special else None,
        "dead_density": args.dead_density,
        "batch_size": args.batch_size,
        "device": args.device,
    }


def cmd_extract(args: argparse.Namespace, studio: Studio) -> None:
    spec = feature_svc.extract_features(
        studio,
        args.training,
        tokenization_ref=args.tokenization,
        n_tokens=args.n_tokens,
        name=args.name,
        **extraction_options(args),
    )
    run_spec(args, studio, spec, featureset_summary)


def cmd_export(args: argparse.Namespace, studio: Studio) -> None:
    fset = resolve(FeatureSet, args.featureset)
    indices = parse_feature_indices(args.features) if args.features else None
    result = export_feature_set(fset, Path(args.path), args.fmt, indices, args.include_dead)
    data = {
        "feature_set": fset.name,
        "format": result.format,
        "features": result.n_features,
        "dead_skipped": result.n_dead_skipped,
        "path": str(result.path),
    }
    skipped = f" ({result.n_dead_skipped} dead left out: --include-dead adds them)" if result.n_dead_skipped else ""
    emit(args.json, data, lambda: f"exported {result.n_features} features of {fset.name} to {result.path}{skipped}")


def feature_row(f: Any) -> dict[str, Any]:
    return {
        "index": f.index,
        "density": f.density,
        "max_activation": f.max_activation,
        "mean_activation": f.mean_activation,
        "top_tokens": f.top_tokens,
        "technical_label": f.technical_label,
        "semantic_label": f.semantic_label,
        "label_score": f.label_score,
        "dead": f.dead,
        "bookmarked": f.bookmarked,
    }


def cmd_features_list(args: argparse.Namespace, studio: Studio) -> None:
    fset = resolve(FeatureSet, args.featureset)
    descending = not args.asc and args.sort != "index"
    flt = fq.FeatureFilter(search=args.search, dead=False if args.alive else None)
    rows = [feature_row(f) for f in fq.feature_page(fset.id, args.sort, descending, flt, args.offset, args.limit)]
    emit(args.json, rows, lambda: format_table(rows, FEATURE_COLUMNS))
