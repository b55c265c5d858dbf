"""`mistudio features …` and `mistudio featuresets …`."""

from __future__ import annotations

import argparse
from typing import Any

from mistudio_tui.cli.common import add_list_show_delete, basic, count_arg, run_spec
from mistudio_tui.cli.output import emit, format_table
from mistudio_tui.db import features as fq
from mistudio_tui.db.lookup import resolve
from mistudio_tui.db.models import FeatureSet
from mistudio_tui.services import features as feature_svc
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


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    ft = sub.add_parser("features", help="feature extraction and browsing", parents=[common])
    verbs = ft.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = verbs.add_parser(
        "extract", help="top/quantile examples, density, logit lens of every feature", parents=[common]
    )
    p.add_argument("training", help="training (SAE) id or name")
    p.add_argument("--tokens", dest="n_tokens", type=count_arg("--tokens"))
    p.add_argument("--tokenization", help="tokenization to run on (default: the training's)")
    p.add_argument("--top-k", type=int)
    p.add_argument("--device")
    p.add_argument("--name")
    p.set_defaults(func=cmd_extract)
    p = verbs.add_parser("list", help="features of a feature set", parents=[common])
    p.add_argument("featureset", help="feature set id or name")
    p.add_argument("--sort", default="index", choices=list(fq.SORT_COLUMNS))
    p.add_argument("--asc", action="store_true", help="ascending (default: descending, except index)")
    p.add_argument("--search", default="")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--alive", action="store_true", help="hide dead features")
    p.set_defaults(func=cmd_features_list)

    fs = sub.add_parser("featuresets", help="extracted feature sets", parents=[common])
    verbs = fs.add_subparsers(dest="verb", required=True, metavar="VERB")
    add_list_show_delete(verbs, common, FeatureSet, "feature set", FEATURESET_COLUMNS, featureset_summary)


def cmd_extract(args: argparse.Namespace, studio: Studio) -> None:
    spec = feature_svc.extract_features(
        studio,
        args.training,
        tokenization_ref=args.tokenization,
        n_tokens=args.n_tokens,
        name=args.name,
        top_k=args.top_k,
        device=args.device,
    )
    run_spec(args, studio, spec, featureset_summary)


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
