"""`mistudio train …` and `mistudio trainings …`."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from mistudio_tui.cli.common import add_list_show_delete, basic, count_arg, run_spec
from mistudio_tui.cli.jobrun import run_job
from mistudio_tui.cli.output import CliError, emit
from mistudio_tui.db.models import Training
from mistudio_tui.ml.sae.config import OPTIMIZERS
from mistudio_tui.services import multi_training as multi_svc
from mistudio_tui.services import tracking
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
    data = basic(
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
    data["architecture"] = svc.shown_architecture(t.architecture)  # the name --arch takes
    return data


def training_detail(t: Training) -> dict[str, Any]:
    data = training_summary(t)
    data.update(
        config=t.config,
        evaluation=t.evaluation,
        tags=t.tags,
        activation_set=t.activation_set.name if t.activation_set else None,
    )
    return data


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
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
    p.add_argument(
        "--optimizer",
        choices=list(OPTIMIZERS),
        help="auto (default): schedule-free sign descent, Adam for matryoshka",
    )
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
    p.add_argument(
        "--wandb", metavar="PROJECT", help="also log the metrics to this Weights & Biases project (needs wandb)"
    )
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
    ev.add_argument(
        "--ground-truth",
        metavar="FILE",
        help="safetensors with the true features as 'gt' [features, d_in]: adds MCC and the fraction recovered "
        "(default: the ground_truth.safetensors of a synthetic activation set)",
    )
    ev.set_defaults(func=cmd_eval)


# flag -> argument name of what a resume cannot change (the checkpoint holds that run's SAE and optimiser)
FIXED_ON_RESUME = {
    "--arch": "architecture",
    "--k": "k",
    "--l1": "l1_coefficient",
    "--expansion": "expansion",
    "--d-sae": "d_sae",
    "--lr": "lr",
    "--optimizer": "optimizer",
    "--batch-size": "batch_size",
    "--device": "device",
    "--dtype": "dtype",
    "--checkpoint-every": "checkpoint_every",
    "--seed": "seed",
    "--hook": "hook",
    "--template": "template",
    "--name": "name",
    "--tags": "tags",
}


def cmd_train(args: argparse.Namespace, studio: Studio) -> None:
    if args.nproc is not None and args.nproc < 1:  # before any row is made
        raise CliError("--nproc must be at least 1", code=2)
    args.wandb_module = tracking.load_wandb(args.wandb) if args.wandb is not None else None  # before any row
    if args.hooks or args.model or args.tokenization or args.variants:
        if args.transcode or args.skip:
            raise CliError("--transcode trains one transcoder; it cannot be combined with --hooks or --model", code=2)
        return cmd_train_group(args, studio)
    group = args.resume and Training.get_or_none(Training.group_name == args.resume) is not None
    if args.resume:
        _refuse_fixed_on_resume(args, group)
    if group:
        group_spec = multi_svc.resume_group(args.resume)
        return run_spec(args, studio, group_spec, group_summary, _tracker(args, studio, group_spec))
    if args.resume:
        if args.activations:
            raise CliError("give either --resume RUN or --activations, not both", code=2)
        spec = svc.resume_training(args.resume, total_tokens=args.total_tokens)
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
        if args.nproc > 1 and spec.params.source.hook_out:  # checked before a new row is made too
            raise CliError("transcoders train in one process; leave out --nproc", code=2)
        spec.params = dataclasses.replace(spec.params, nproc=args.nproc)
    run_spec(args, studio, spec, training_summary, _tracker(args, studio, spec))


def _tracker(args: argparse.Namespace, studio: Studio, spec: Any) -> tracking.WandbTracker | None:
    """The wandb run of `train --wandb PROJECT`, named after the training and holding its config."""
    if args.wandb_module is None:
        return None
    training = spec.resource
    config = {"training_id": training.id, **(training.config or {})}
    folder = str(studio.paths.dir("logs"))
    name = training.group_name or training.name  # a multi-SAE job logs every run under its group
    return tracking.WandbTracker.start(args.wandb_module, args.wandb, name, config, folder)


def _refuse_fixed_on_resume(args: argparse.Namespace, group: bool) -> None:
    """Name the flags a resume would otherwise ignore (a group's budget cannot change either)."""
    fixed = [flag for flag, name in FIXED_ON_RESUME.items() if getattr(args, name) not in (None, "")]
    if group and args.total_tokens is not None:
        fixed.append("--tokens")
    if fixed:
        extend = "" if group else " (only --tokens can, to change the budget)"
        raise CliError(
            f"a resumed run keeps its configuration: {', '.join(fixed)} cannot change on --resume{extend}; "
            "clone the run to train a different one",
            code=2,
        )


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
    run_spec(args, studio, spec, group_summary, _tracker(args, studio, spec))


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
            "optimizer",
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
    spec = svc.evaluate_training(
        args.ref,
        tokens=args.tokens,
        device=args.device,
        tokenization=args.tokenization,
        ground_truth=args.ground_truth,
    )
    job = run_job(studio, spec.kind, spec.params, title=spec.title)
    training = Training.get_by_id(spec.params.training_id)
    data = {"id": training.id, "name": training.name, "evaluation": training.evaluation, "job": job.id}
    emit(args.json, data, lambda: _evaluation_text(data))


def _evaluation_text(data: dict[str, Any]) -> str:
    lines = [f"evaluation of {data['name']} (job {data['job']})"]
    for key, value in (data["evaluation"] or {}).items():
        if key == "ground_truth":
            shown = svc.ground_truth_line(data["evaluation"]) or str(value)
        else:
            shown = f"{value:.6g}" if isinstance(value, float) else str(value)
        lines.append(f"{key:>22}: {shown}")
    return "\n".join(lines)
