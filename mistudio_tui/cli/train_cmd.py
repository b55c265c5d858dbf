"""`mistudio train …` and `mistudio trainings …`."""

from __future__ import annotations

import argparse
from typing import Any

from mistudio_tui.cli.common import add_list_show_delete, basic, count_arg, run_spec
from mistudio_tui.cli.jobrun import run_job
from mistudio_tui.cli.output import CliError, emit
from mistudio_tui.db.models import Training
from mistudio_tui.services import multi_training as multi_svc
from mistudio_tui.services import trainings as svc
from mistudio_tui.studio import Studio
from mistudio_tui.units import parse_count

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


def widths_arg(text: str) -> list[int]:
    """An argparse type for comma-separated counts like 512,2k,8k."""
    try:
        return [parse_count(part.strip(), "--matryoshka-widths") for part in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--matryoshka-widths: ")) from None


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
    p.add_argument(
        "--matryoshka-widths",
        type=widths_arg,
        metavar="W1,W2,...",
        help="nested prefix widths of --arch matryoshka, e.g. 512,2048,8192 (default: doubling up to the width)",
    )
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
    p.add_argument(
        "--transcode",
        metavar="IN_HOOK:OUT_HOOK",
        help="train a transcoder: encode IN_HOOK, decode to OUT_HOOK (both hooks of the activation set)",
    )
    p.add_argument("--skip", action="store_true", help="with --transcode: add a linear skip connection (W_skip)")
    p.add_argument("--hooks", help="several hooks, comma-separated: one SAE each, trained from the same batches")
    p.add_argument("--variants", help="several SAEs per hook, e.g. 'k=16;k=64,expansion=16' (with --hooks)")
    p.add_argument("--model", help="stream activations from this model (with --tokenization and --hooks)")
    p.add_argument("--tokenization", help="tokenization to stream through --model")
    p.add_argument("--nproc", type=int, default=None, help="data-parallel processes (torch.distributed) for one SAE")
    p.add_argument("--template", help="training template id or name")
    p.add_argument("--name")
    p.add_argument("--tags", default="")
    p.set_defaults(func=cmd_train)

    tr = sub.add_parser("trainings", help="SAE training runs", parents=[common])
    verbs = tr.add_subparsers(dest="verb", required=True, metavar="VERB")
    add_list_show_delete(verbs, common, Training, "training", TRAINING_COLUMNS, training_summary, training_detail)
    ev = verbs.add_parser(
        "eval",
        help="evaluate a finished SAE: held-out reconstruction and, for causal LMs, CE loss recovered",
        parents=[common],
    )
    ev.add_argument("ref", metavar="RUN", help="training id or name")
    ev.add_argument("--tokens", type=count_arg("--tokens"), help="held-out tokens to use (default 65536)")
    ev.add_argument("--tokenization", help="tokenization for the CE loss (default: the run's own)")
    ev.add_argument("--device")
    ev.set_defaults(func=cmd_eval)


def cmd_train(args: argparse.Namespace, studio: Studio) -> None:
    if args.hooks or args.model or args.tokenization or args.variants:
        if args.transcode or args.skip:
            raise CliError("--transcode trains one transcoder; it cannot be combined with --hooks or --model", code=2)
        return cmd_train_group(args, studio)
    if args.resume and Training.get_or_none(Training.group_name == args.resume) is not None:
        return run_spec(args, studio, multi_svc.resume_group(args.resume), group_summary)
    if args.resume:
        if args.activations:
            raise CliError("give either --resume RUN or --activations, not both", code=2)
        spec = svc.resume_training(args.resume)
    else:
        if not args.activations:
            raise CliError("train: --activations is required (or --resume RUN)", code=2)
        if args.transcode and (args.nproc or 1) > 1:
            raise CliError("transcoders train in one process; leave out --nproc", code=2)
        spec = svc.new_training(
            studio,
            args.activations,
            name=args.name,
            hook=args.hook,
            transcode=args.transcode,
            skip=args.skip,
            **run_options(args),
        )
    if args.nproc is not None:
        if args.nproc < 1:
            raise CliError("--nproc must be at least 1", code=2)
        if args.nproc > 1 and spec.params["source"].get("hook_out"):  # checked before a new row is made too
            raise CliError("transcoders train in one process; leave out --nproc", code=2)
        spec.params["nproc"] = args.nproc
    run_spec(args, studio, spec, training_summary)


def cmd_train_group(args: argparse.Namespace, studio: Studio) -> None:
    """`mistudio train --hooks a,b (--activations A | --model M --tokenization T)`: one SAE per hook, one job."""
    if not args.hooks:
        raise CliError("train: --model/--tokenization stream several hooks; give them with --hooks", code=2)
    if args.resume or args.hook:
        raise CliError("--hooks cannot be combined with --resume or --hook", code=2)
    if args.nproc not in (None, 1):
        raise CliError("--nproc trains one SAE; it cannot be combined with --hooks", code=2)
    spec = multi_svc.new_multi_training(
        studio,
        multi_svc.parse_hooks(args.hooks),
        activations_ref=args.activations,
        model_ref=args.model,
        tokenization_ref=args.tokenization,
        configs=multi_svc.parse_variants(args.variants) if args.variants else None,
        name=args.name,
        **run_options(args),
    )
    run_spec(args, studio, spec, group_summary)


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The template, tags and SAE/training options that `train` and `train --hooks` both pass on."""
    return {
        name: getattr(args, name)
        for name in (
            "template",
            "tags",
            "architecture",
            "k",
            "matryoshka_widths",
            "l1_coefficient",
            "expansion",
            "d_sae",
            "lr",
            "batch_size",
            "total_tokens",
            "device",
            "dtype",
            "checkpoint_every",
            "seed",
        )
    }


def group_summary(first: Training) -> dict[str, Any]:
    """Every run of `first`'s group: one line each for people, full summaries for --json."""
    runs = list(Training.select().where(Training.group_name == first.group_name).order_by(Training.id))
    data: dict[str, Any] = {"group_name": first.group_name}
    for t in runs:
        data[t.name] = f"{t.status} steps={t.steps} loss={t.loss} l0={t.l0} ev={t.explained_variance}"
    data["trainings"] = [training_summary(t) for t in runs]
    return data


def cmd_eval(args: argparse.Namespace, studio: Studio) -> None:
    spec = svc.evaluate_training(args.ref, tokens=args.tokens, device=args.device, tokenization=args.tokenization)
    job = run_job(studio, spec.kind, spec.params, title=spec.title)
    training = Training.get_by_id(spec.params["training_id"])
    data = {"id": training.id, "name": training.name, "evaluation": training.evaluation, "job": job.id}
    emit(args.json, data, lambda: _evaluation_text(data))


def _evaluation_text(data: dict[str, Any]) -> str:
    lines = [f"evaluation of {data['name']} (job {data['job']})"]
    for key, value in (data["evaluation"] or {}).items():
        shown = f"{value:.6g}" if isinstance(value, float) else str(value)
        lines.append(f"{key:>22}: {shown}")
    return "\n".join(lines)
