"""`mistudio templates …`: saved training configurations."""

from __future__ import annotations

import argparse
import json
from typing import Any

from mistudio_tui.cli.common import count_arg
from mistudio_tui.cli.template_verbs import TemplateCli
from mistudio_tui.db.models import TrainingTemplate
from mistudio_tui.services import templates as svc
from mistudio_tui.services.trainings import ARCHITECTURES
from mistudio_tui.studio import Studio

COLUMNS = [("id", "ID"), ("star", "★"), ("name", "NAME"), ("summary", "CONFIG"), ("description", "NOTE")]
VALUE_FLAGS = (
    "architecture",
    "expansion",
    "k",
    "l1_coefficient",
    "lr",
    "batch_size",
    "total_tokens",
    "dtype",
    "device",
    "seed",
)


def template_summary(tpl: TrainingTemplate) -> dict[str, Any]:
    """A template as the CLI prints it."""
    return {
        "id": tpl.id,
        "name": tpl.name,
        "favourite": bool(tpl.favourite),
        "summary": svc.describe_config(tpl.config),
        "description": tpl.description,
        "config": tpl.config,
        "updated_at": tpl.updated_at,
    }


def _human(tpl: TrainingTemplate) -> str:
    head = f"{tpl.name} (#{tpl.id}){'  ★ favourite' if tpl.favourite else ''}\n{svc.describe_config(tpl.config)}"
    note = f"\n{tpl.description}" if tpl.description else ""
    return f"{head}{note}\n{json.dumps(tpl.config, indent=2)}"


CLI = TemplateCli(svc.STORE, COLUMNS, template_summary, template_summary, _human)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    tp = sub.add_parser("templates", help="training templates (saved configurations)", parents=[common])
    verbs = tp.add_subparsers(dest="verb", required=True, metavar="VERB")

    def add_save(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        p = verbs.add_parser(
            "save", help="save a run's configuration, or explicit values, as a template", parents=[common]
        )
        p.add_argument("name")
        p.add_argument("--from-training", metavar="RUN", help="copy the configuration of this training run")
        p.add_argument("--description", default="")
        p.add_argument("--overwrite", action="store_true", help="replace a template of the same name")
        p.add_argument("--arch", dest="architecture", choices=list(ARCHITECTURES))
        p.add_argument("--expansion", type=float, help="SAE width as a multiple of d_in")
        p.add_argument("--k", type=int)
        p.add_argument("--l1", dest="l1_coefficient", type=float)
        p.add_argument("--lr", type=float)
        p.add_argument("--batch-size", type=int)
        p.add_argument("--tokens", dest="total_tokens", type=count_arg("--tokens"))
        p.add_argument("--dtype", choices=["fp32", "bf16"])
        p.add_argument("--device")
        p.add_argument("--seed", type=int)
        p.set_defaults(func=cmd_save)

    CLI.add_verbs(verbs, common, add_save)


def cmd_save(args: argparse.Namespace, studio: Studio) -> None:
    values = {k: getattr(args, k) for k in VALUE_FLAGS}
    if args.from_training:
        tpl = svc.save_from_training(args.from_training, args.name, args.description, overwrite=args.overwrite)
        if any(v is not None for v in values.values()):
            config = svc.config_from_values(**values)
            merged = {s: {**tpl.config.get(s, {}), **config[s]} for s in ("sae", "train")}
            tpl = svc.save_template(tpl.name, merged, tpl.description, overwrite=True)
    else:
        config = svc.config_from_values(**values)
        tpl = svc.save_template(args.name, config, args.description, overwrite=args.overwrite)
    CLI.show_saved(args, tpl, "saved")
