"""`mistudio label …` (LLM auto-labeling runs) and `mistudio labels …` (show / set labels by hand)."""

from __future__ import annotations

import argparse
from typing import Any

from mistudio_tui.cli.common import run_spec
from mistudio_tui.cli.output import CliError, emit, format_table, row_dict
from mistudio_tui.db import features as fq
from mistudio_tui.db.lookup import resolve
from mistudio_tui.db.models import FeatureSet, LabelingJob
from mistudio_tui.services import labeling as svc
from mistudio_tui.studio import Studio

RUN_COLUMNS = [
    ("id", "ID"),
    ("feature_set", "FEATURE SET"),
    ("model", "MODEL"),
    ("status", "STATUS"),
    ("features_done", "DONE"),
    ("features_failed", "FAILED"),
    ("features_total", "TOTAL"),
    ("cost", "COST"),
]


def run_summary(run: LabelingJob) -> dict[str, Any]:
    data = row_dict(
        run,
        [
            "id",
            "endpoint",
            "model",
            "status",
            "features_total",
            "features_done",
            "features_failed",
            "prompt_tokens",
            "completion_tokens",
            "cost",
            "error",
        ],
    )
    data["feature_set"] = run.feature_set.name
    return data


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("label", help="auto-label features with an OpenAI-compatible chat API", parents=[common])
    p.add_argument("featureset", nargs="?", help="feature set id or name")
    p.add_argument("--endpoint", help="base URL, e.g. https://api.openai.com/v1 or http://localhost:8000/v1")
    p.add_argument("--model", help="model name at the endpoint")
    p.add_argument(
        "--features",
        default="alive",
        help="all | alive (default) | unlabeled (no semantic label) | a list like 1,2,10-20",
    )
    p.add_argument("--search", default="", help="only features whose labels/top tokens match")
    p.add_argument("--limit", type=int, help="at most this many features (densest first)")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key")
    p.add_argument("--concurrency", type=int)
    p.add_argument("--rpm", dest="requests_per_minute", type=float, help="requests per minute limit")
    p.add_argument("--examples", dest="examples_per_feature", type=int)
    p.add_argument("--template", help="built-in template name or a .toml file")
    p.add_argument("--no-logits", action="store_true", help="do not show logit-lens tokens to the explainer")
    p.add_argument("--score", action="store_true", help="detection-score each explanation")
    p.add_argument("--price-in", dest="price_prompt_per_million", type=float, help="price per million prompt tokens")
    p.add_argument(
        "--price-out", dest="price_completion_per_million", type=float, help="price per million completion tokens"
    )
    p.add_argument("--timeout", dest="timeout_s", type=float)
    p.add_argument("--resume", type=int, metavar="RUN", help="continue a stopped labeling run")
    p.set_defaults(func=cmd_label)

    lb = sub.add_parser("labels", help="feature labels", parents=[common])
    verbs = lb.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = verbs.add_parser("show", help="every label of one feature", parents=[common])
    p.add_argument("featureset")
    p.add_argument("index", type=int)
    p.set_defaults(func=cmd_show)
    p = verbs.add_parser("set", help="set a manual label (it becomes current)", parents=[common])
    p.add_argument("featureset")
    p.add_argument("index", type=int)
    p.add_argument("--technical", default="")
    p.add_argument("--semantic", default="")
    p.set_defaults(func=cmd_set)
    p = verbs.add_parser("runs", help="labeling runs", parents=[common])
    p.set_defaults(func=cmd_runs)


def cmd_label(args: argparse.Namespace, studio: Studio) -> None:
    if args.resume is not None:
        run_spec(args, studio, svc.resume_labeling(args.resume), run_summary)
        return
    if not (args.featureset and args.endpoint and args.model):
        raise CliError("label: give FEATURESET, --endpoint and --model (or --resume RUN)", code=2)
    features: Any = args.features
    if features not in svc.SELECTIONS:
        features = svc.parse_feature_list(features)
    spec = svc.start_labeling(
        studio,
        args.featureset,
        args.endpoint,
        args.model,
        features=features,
        limit=args.limit,
        search=args.search,
        api_key_env=args.api_key_env,
        concurrency=args.concurrency,
        requests_per_minute=args.requests_per_minute,
        examples_per_feature=args.examples_per_feature,
        template=args.template,
        include_logits=False if args.no_logits else None,
        score=args.score or None,
        price_prompt_per_million=args.price_prompt_per_million,
        price_completion_per_million=args.price_completion_per_million,
        timeout_s=args.timeout_s,
    )
    run_spec(args, studio, spec, run_summary)


def label_dict(label: Any) -> dict[str, Any]:
    return row_dict(
        label,
        [
            "id",
            "technical",
            "semantic",
            "method",
            "model",
            "prompt_version",
            "score",
            "is_current",
            "author",
            "created_at",
        ],
    )


def cmd_show(args: argparse.Namespace, studio: Studio) -> None:
    fset = resolve(FeatureSet, args.featureset)
    rows = [label_dict(lb) for lb in fq.labels_of(fset.training_id, args.index)]
    columns = [
        ("id", "ID"),
        ("is_current", "CURRENT"),
        ("method", "METHOD"),
        ("technical", "TECHNICAL"),
        ("semantic", "SEMANTIC"),
        ("score", "SCORE"),
        ("model", "BY"),
    ]
    emit(args.json, rows, lambda: format_table(rows, columns))


def cmd_set(args: argparse.Namespace, studio: Studio) -> None:
    fset = resolve(FeatureSet, args.featureset)
    if not 0 <= args.index < fset.d_sae:
        raise CliError(f"feature index {args.index} is out of range (0..{fset.d_sae - 1})")
    if not (args.technical or args.semantic):
        raise CliError("labels set: give --technical and/or --semantic", code=2)
    label = fq.add_label(
        fset.training_id, args.index, technical=args.technical, semantic=args.semantic, method="manual", author="cli"
    )
    emit(args.json, label_dict(label), f"label {label.id} set on feature {args.index}")


def cmd_runs(args: argparse.Namespace, studio: Studio) -> None:
    rows = [run_summary(r) for r in LabelingJob.select().order_by(LabelingJob.id)]
    emit(args.json, rows, lambda: format_table(rows, RUN_COLUMNS))
