"""`mistudio train …`, `mistudio trainings …`, `mistudio features …`, `mistudio featuresets …`."""

from __future__ import annotations

import argparse
from typing import Any

from mistudio_tui.cli.common import add_list_show_delete, basic, count_arg, run_spec
from mistudio_tui.cli.output import CliError, emit, format_table
from mistudio_tui.db import features as fq
from mistudio_tui.db.lookup import resolve
from mistudio_tui.db.models import FeatureSet, Training
from mistudio_tui.services import features as feature_svc
from mistudio_tui.services import trainings as svc
from mistudio_tui.studio import Studio

TRAINING_COLUMNS = [
    ("id", "ID"),
    ("name", "NAME"),
    ("status", "STATUS"),
    ("architecture", "ARCH"),
    ("d_sae", "WIDTH"),
    ("steps", "STEPS"),
    ("loss", "LOSS"),
    ("l0", "L0"),
    ("explained_variance", "EV"),
    ("device", "DEVICE"),
]
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


def training_summary(t: Training) -> dict[str, Any]:
    return basic(
        t,
        [
            "id",
            "name",
            "origin",
            "status",
            "architecture",
            "hook_name",
            "d_in",
            "d_sae",
            "steps",
            "tokens",
            "total_tokens",
            "loss",
            "l0",
            "explained_variance",
            "dead_fraction",
            "tokens_per_s",
            "device",
            "path",
            "error",
        ],
    )


def training_detail(t: Training) -> dict[str, Any]:
    data = training_summary(t)
    data.update(
        config=t.config,
        evaluation=t.evaluation,
        tags=t.tags,
        activation_set=t.activation_set.name if t.activation_set else None,
    )
    return data


def featureset_summary(f: FeatureSet) -> dict[str, Any]:
    data = basic(f, ["id", "name", "d_sae", "n_alive", "n_tokens", "status", "path", "error"])
    data["training"] = f.training.name
    return data


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("train", help="train an SAE on an activation set (or resume one)", parents=[common])
    p.add_argument("--activations", help="activation set id or name")
    p.add_argument("--resume", metavar="RUN", help="continue a paused/interrupted run from its checkpoint")
    p.add_argument("--arch", dest="architecture", choices=list(svc.ARCHITECTURES), default=None)
    p.add_argument("--k", type=int)
    p.add_argument("--l1", dest="l1_coefficient", type=float)
    width = p.add_mutually_exclusive_group()
    width.add_argument("--expansion", type=int)
    width.add_argument("--d-sae", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--tokens", dest="total_tokens", type=count_arg("--tokens"))
    p.add_argument("--device")
    p.add_argument("--dtype", choices=["fp32", "bf16"])
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--hook", help="which hook of a multi-hook activation set")
    p.add_argument("--template", help="training template id or name")
    p.add_argument("--name")
    p.add_argument("--tags", default="")
    p.set_defaults(func=cmd_train)

    tr = sub.add_parser("trainings", help="SAE training runs", parents=[common])
    verbs = tr.add_subparsers(dest="verb", required=True, metavar="VERB")
    add_list_show_delete(verbs, common, Training, "training", TRAINING_COLUMNS, training_summary, training_detail)

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


def cmd_train(args: argparse.Namespace, studio: Studio) -> None:
    if args.resume:
        if args.activations:
            raise CliError("give either --resume RUN or --activations, not both", code=2)
        spec = svc.resume_training(args.resume)
    else:
        if not args.activations:
            raise CliError("train: --activations is required (or --resume RUN)", code=2)
        spec = svc.new_training(
            studio,
            args.activations,
            name=args.name,
            hook=args.hook,
            template=args.template,
            tags=args.tags,
            architecture=args.architecture,
            k=args.k,
            l1_coefficient=args.l1_coefficient,
            expansion=args.expansion,
            d_sae=args.d_sae,
            lr=args.lr,
            batch_size=args.batch_size,
            total_tokens=args.total_tokens,
            device=args.device,
            dtype=args.dtype,
            checkpoint_every=args.checkpoint_every,
            seed=args.seed,
        )
    run_spec(args, studio, spec, training_summary)


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
