"""`mistudio train …` and `mistudio trainings …`."""

from __future__ import annotations

import argparse
from typing import Any

from mistudio_tui.cli.common import add_list_show_delete, basic, count_arg, run_spec
from mistudio_tui.cli.output import CliError
from mistudio_tui.db.models import Training
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
