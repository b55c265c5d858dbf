"""`mistudio sweep …`: hyperparameter sweeps whose trials are ordinary training runs."""

from __future__ import annotations

import argparse
from typing import Any

from mistudio_tui.cli.common import count_arg
from mistudio_tui.cli.jobrun import run_job
from mistudio_tui.cli.output import emit, format_cell, format_table
from mistudio_tui.db.lookup import resolve
from mistudio_tui.db.models import Sweep
from mistudio_tui.db.states import RunState
from mistudio_tui.jobs.sweep_planner import METHODS, OBJECTIVES, shown_params
from mistudio_tui.services import sweeps as svc
from mistudio_tui.services.trainings import ARCHITECTURES
from mistudio_tui.studio import Studio

SWEEP_COLUMNS = [
    ("id", "ID"),
    ("name", "NAME"),
    ("method", "METHOD"),
    ("status", "STATUS"),
    ("trials_done", "DONE"),
    ("trials", "TRIALS"),
    ("space", "SPACE"),
    ("best_score", "BEST"),
]
TRIAL_COLUMNS = [
    ("trial", "#"),
    ("name", "TRAINING"),
    ("status", "STATUS"),
    ("params_text", "PARAMS"),
    ("l0", "L0"),
    ("explained_variance", "EV"),
    ("ce_loss_recovered", "CE REC"),
    ("score", "SCORE"),
    ("front", "FRONT"),
]


def sweep_summary(sweep: Sweep) -> dict[str, Any]:
    rows = svc.trial_rows(sweep)
    best = svc.best_trial(rows)
    settings = sweep.base_config or {}
    job = svc.sweep_job(sweep)
    return {
        "id": sweep.id,
        "name": sweep.name,
        "method": sweep.method,
        "status": sweep.status,
        "space": (sweep.space or {}).get("text", ""),
        "objective": settings.get("objective"),
        "trials": settings.get("trials"),
        "trials_done": sum(r["status"] in RunState.FINISHED for r in rows),
        "parallel": settings.get("parallel"),
        "best_score": best["score"] if best else None,
        "best_training": best["name"] if best else None,
        "job": job.id if job else None,
        "created_at": sweep.created_at,
    }


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    sw = sub.add_parser("sweep", help="hyperparameter sweeps (grid, random, Optuna TPE)", parents=[common])
    verbs = sw.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("start", help="run a sweep of trainings and wait for it", parents=[common])
    p.add_argument("--activations", required=True, help="activation set id or name")
    p.add_argument(
        "--space",
        required=True,
        help="e.g. 'k=8,16,32 lr=1e-4..1e-3:log' (a grid visits ':N' points of a range, default 3)",
    )
    p.add_argument("--method", choices=list(METHODS), default="grid")
    p.add_argument("--trials", type=int, help="number of trials (grid: at most this many)")
    p.add_argument("--objective", choices=list(OBJECTIVES), default="ev")
    p.add_argument("--l0-weight", type=float, default=0.001, help="weight of L0 in the ev-l0 objective")
    p.add_argument("--parallel", type=int, default=1, help="trials at once (spread over GPUs when several)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random / TPE sampler")
    p.add_argument("--template", help="training template id or name for the fixed settings")
    p.add_argument("--name")
    p.add_argument("--hook", help="which hook of a multi-hook activation set")
    p.add_argument("--arch", dest="architecture", choices=list(ARCHITECTURES))
    p.add_argument("--expansion", type=float)
    p.add_argument("--k", type=int)
    p.add_argument("--tokens", dest="total_tokens", type=count_arg("--tokens"))
    p.add_argument("--batch-size", type=int)
    p.add_argument("--device")
    p.set_defaults(func=cmd_start)

    p = verbs.add_parser("resume", help="run the remaining trials of a stopped sweep", parents=[common])
    p.add_argument("ref", metavar="SWEEP", help="id or name")
    p.set_defaults(func=cmd_resume)

    p = verbs.add_parser("list", help="list sweeps", parents=[common])
    p.set_defaults(func=cmd_list)

    p = verbs.add_parser("show", help="a sweep's trials and its Pareto front", parents=[common])
    p.add_argument("ref", metavar="SWEEP", help="id or name")
    p.set_defaults(func=cmd_show)

    p = verbs.add_parser("cancel", help="stop a running sweep (its current trials checkpoint)", parents=[common])
    p.add_argument("ref", metavar="SWEEP", help="id or name")
    p.set_defaults(func=cmd_cancel)


def cmd_start(args: argparse.Namespace, studio: Studio) -> None:
    fixed = {
        k: getattr(args, k)
        for k in ("architecture", "expansion", "k", "total_tokens", "batch_size", "device")
        if getattr(args, k) is not None
    }
    spec = svc.new_sweep(
        svc.SweepRequest(
            activations=args.activations,
            space=args.space,
            method=args.method,
            trials=args.trials,
            objective=args.objective,
            l0_weight=args.l0_weight,
            parallel=args.parallel,
            seed=args.seed,
            template=args.template,
            name=args.name,
            hook=args.hook,
            fixed=fixed,
        )
    )
    _run(args, studio, spec)


def cmd_resume(args: argparse.Namespace, studio: Studio) -> None:
    _run(args, studio, svc.resume_sweep(args.ref))


def _run(args: argparse.Namespace, studio: Studio, spec: Any) -> None:
    run_job(studio, spec.kind, spec.params, title=spec.title, resource=spec.resource)
    _show(args, Sweep.get_by_id(spec.resource.id))


def cmd_list(args: argparse.Namespace, studio: Studio) -> None:
    rows = [sweep_summary(s) for s in Sweep.select().order_by(Sweep.id)]
    emit(args.json, rows, lambda: format_table(rows, SWEEP_COLUMNS))


def cmd_show(args: argparse.Namespace, studio: Studio) -> None:
    _show(args, resolve(Sweep, args.ref))


def _show(args: argparse.Namespace, sweep: Sweep) -> None:
    data = sweep_summary(sweep)
    trials = svc.trial_rows(sweep)
    data["trials_detail"] = trials
    data["pareto_ev"] = [t["name"] for t in sorted(trials, key=_l0) if t["pareto_ev"]]
    data["pareto_ce"] = [t["name"] for t in sorted(trials, key=_l0) if t["pareto_ce"]]
    emit(args.json, data, lambda: _human(data, trials))


def _l0(row: dict[str, Any]) -> float:
    return row["l0"] if row["l0"] is not None else float("inf")


def _human(data: dict[str, Any], trials: list[dict[str, Any]]) -> str:
    head = [
        f"sweep {data['name']} (#{data['id']}): {data['method']}, {data['status']}, "
        f"{data['trials_done']}/{data['trials']} trials, objective {data['objective']}",
        f"space: {data['space']}",
    ]
    for row in trials:
        row["params_text"] = " ".join(f"{k}={format_cell(v)}" for k, v in shown_params(row["params"]).items())
        row["front"] = "EV" * row["pareto_ev"] + ("+CE" if row["pareto_ce"] else "")
    lines = [*head, "", format_table(trials, TRIAL_COLUMNS), ""]
    lines.append("Pareto front, L0 vs explained variance: " + (" → ".join(data["pareto_ev"]) or "(no finished trials)"))
    if data["pareto_ce"]:
        lines.append("Pareto front, L0 vs CE loss recovered: " + " → ".join(data["pareto_ce"]))
    if data["best_training"]:
        lines.append(f"best by {data['objective']}: {data['best_training']} ({format_cell(data['best_score'])})")
    return "\n".join(lines)


def cmd_cancel(args: argparse.Namespace, studio: Studio) -> None:
    job = svc.cancel_sweep(studio, args.ref)
    sweep = resolve(Sweep, args.ref)
    emit(args.json, {"id": sweep.id, "name": sweep.name, "job": job.id, "cancelling": True}, "cancelling…")
