"""Hyperparameter sweeps: parsing a search space, creating, resuming and cancelling sweeps, summarising trials.

The planner itself (dimensions, grid / random / TPE, objectives) is `jobs/sweep_planner.py`, shared with the job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mistudio_tui.db.lookup import new_name, resolve
from mistudio_tui.db.models import ActivationSet, Job, Sweep, database
from mistudio_tui.db.states import JobState, RunState
from mistudio_tui.jobs.kinds.sweep import SweepParams
from mistudio_tui.jobs.sweep_planner import (
    METHODS,
    OBJECTIVES,
    Dimension,
    TrialPlanner,
    objective_value,
    trial_params,
    trials_of,
)
from mistudio_tui.services.pareto import pareto_front
from mistudio_tui.services.spec import JobSpec
from mistudio_tui.services.templates import (
    SAE_FIELDS,
    TRAIN_FIELDS,
    FieldRule,
    check_field,
    check_value,
    validate_config,
)

ALIASES = {"l1": "l1_coefficient", "l0": "l0_coefficient", "arch": "architecture", "tokens": "total_tokens"}


def _field_rule(name: str) -> tuple[str, FieldRule]:
    if name in SAE_FIELDS:
        return "sae", SAE_FIELDS[name]
    if name in TRAIN_FIELDS:
        return "train", TRAIN_FIELDS[name]
    known = ", ".join(sorted(set(SAE_FIELDS) | set(TRAIN_FIELDS)))
    raise ValueError(f"space: unknown field {name!r}; searchable fields: {known}")


def _scalar(text: str, name: str, rule: FieldRule) -> Any:
    where = f"space: {name}"
    if rule.kind == "bool":
        lowered = text.lower()
        if lowered not in ("true", "false", "yes", "no", "1", "0"):
            raise ValueError(f"{where}: {text!r} is not true or false")
        return check_value(where, rule, lowered in ("true", "yes", "1"))
    if rule.kind in ("int", "number"):
        try:
            value: Any = float(text)
        except ValueError:
            raise ValueError(f"{where}: {text!r} is not a number") from None
        if rule.kind == "int":
            if value != int(value):
                raise ValueError(f"{where}: {text!r} is not a whole number")
            value = int(value)
        return check_value(where, rule, value)
    if rule.kind in ("str", "choice"):
        return check_field(where, name, rule, text)
    raise ValueError(f"{where}: this field cannot be searched")


def parse_dimension(item: str) -> Dimension:
    """'k=8,16,32' | 'lr=1e-4..1e-3:log' | 'lr=1e-4..1e-3:log:4' | 'expansion=4..16:3'."""
    name, sep, spec = item.partition("=")
    name = ALIASES.get(name.strip(), name.strip())
    if not sep or not name or not spec.strip():
        raise ValueError(f"space: {item!r} should look like name=1,2,3 or name=low..high[:log][:points]")
    section, rule = _field_rule(name)
    spec = spec.strip()
    if ".." not in spec:
        values = [_scalar(part.strip(), name, rule) for part in spec.split(",") if part.strip()]
        if not values:
            raise ValueError(f"space: {name} lists no values")
        return Dimension(name, section, choices=tuple(dict.fromkeys(values)))
    if rule.kind not in ("int", "number"):
        raise ValueError(f"space: {name} is not numeric; list its values instead (e.g. {name}=a,b)")
    bounds, *options = spec.split(":")
    low_text, _, high_text = bounds.partition("..")
    low, high = _scalar(low_text.strip(), name, rule), _scalar(high_text.strip(), name, rule)
    if low is None or high is None or not low < high:
        raise ValueError(f"space: the range of {name} must go from low to high, got {bounds!r}")
    log, count = False, None
    for option in options:
        option = option.strip().lower()
        if option == "log":
            log = True
        elif option.isdigit() and int(option) > 0:
            count = int(option)
        else:
            raise ValueError(f"space: {name} option {option!r} is neither 'log' nor a number of grid points")
    if log and low <= 0:
        raise ValueError(f"space: a log range of {name} must start above 0")
    return Dimension(name, section, low=low, high=high, log=log, count=count, integer=rule.kind == "int")


def parse_space(text: str) -> list[Dimension]:
    """Parse 'k=8,16,32 lr=1e-4..1e-3:log' (space-separated; a field may appear once)."""
    dims = [parse_dimension(item) for item in text.split()]
    if not dims:
        raise ValueError("space: give at least one field, e.g. 'k=8,16,32 lr=1e-4..1e-3:log'")
    names = [d.name for d in dims]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"space: {name} is given twice")
    return dims


# --- objectives and trial summaries ----------------------------------------------------------------


def trial_rows(sweep: Sweep) -> list[dict[str, Any]]:
    """One summary per trial: params, state, L0, EV, CE recovered, score, and whether it is on the front."""
    settings = sweep.base_config or {}
    objective, weight = settings.get("objective", "ev"), float(settings.get("l0_weight", 0.0))
    rows = []
    for number, training in enumerate(trials_of(sweep)):
        finished = training.status in RunState.USABLE
        ce = (training.evaluation or {}).get("ce_loss_recovered")
        rows.append(
            {
                "trial": number,
                "training_id": training.id,
                "name": training.name,
                "status": training.status,
                "params": trial_params(sweep, training),
                "l0": training.l0,
                "explained_variance": training.explained_variance,
                "ce_loss_recovered": None if ce is None or math.isnan(ce) else ce,
                "score": objective_value(objective, training, weight) if finished else None,
            }
        )
    done: list[dict[str, Any]] = [r if r["status"] in RunState.USABLE else {"l0": None} for r in rows]
    on_ev = set(pareto_front([(r["l0"], r.get("explained_variance")) for r in done]))
    on_ce = set(pareto_front([(r["l0"], r.get("ce_loss_recovered")) for r in done]))
    for i, row in enumerate(rows):
        row["pareto_ev"] = i in on_ev
        row["pareto_ce"] = i in on_ce
    return rows


def best_trial(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    scored = [r for r in rows if r["score"] is not None]
    return max(scored, key=lambda r: r["score"]) if scored else None


def sweep_job(sweep: Sweep) -> Job | None:
    """The latest job that ran this sweep."""
    job: Job | None = (
        Job.select()
        .where((Job.resource_type == "sweep") & (Job.resource_id == sweep.id))
        .order_by(Job.id.desc())
        .first()
    )
    return job


# --- creating, resuming and cancelling sweeps ------------------------------------------------------


@dataclass
class SweepRequest:
    """What `new_sweep` needs: where to train, what to search, how to score."""

    activations: str | int
    space: str
    method: str = "grid"
    trials: int | None = None
    objective: str = "ev"
    l0_weight: float = 0.001
    parallel: int = 1
    seed: int = 0
    template: str | int | None = None
    name: str | None = None
    hook: str | None = None
    fixed: dict[str, Any] = field(default_factory=dict)


def new_sweep(request: SweepRequest) -> JobSpec[SweepParams]:
    """Validate the request, create the Sweep row and describe its orchestrating job."""
    from mistudio_tui.services.templates import config_from_values, template_config

    if request.method not in METHODS:
        raise ValueError(f"method {request.method!r} is not one of {', '.join(METHODS)}")
    if request.objective not in OBJECTIVES:
        raise ValueError(f"objective {request.objective!r} is not one of {', '.join(OBJECTIVES)}")
    if request.trials is not None and request.trials <= 0:
        raise ValueError("trials must be a positive number")
    if request.parallel <= 0:
        raise ValueError("parallel must be a positive number")
    if request.method in ("random", "tpe") and not request.trials:
        raise ValueError(f"method {request.method} needs --trials N")
    dims = parse_space(request.space)
    planner = TrialPlanner(request.method, dims, request.trials, request.seed)
    aset = resolve(ActivationSet, request.activations)
    if aset.status != "ready":
        raise ValueError(f"activation set '{aset.name}' is {aset.status}; it must be ready")
    base = template_config(request.template) if request.template is not None else {"sae": {}, "train": {}}
    fixed = config_from_values(**{k: v for k, v in request.fixed.items() if v is not None})
    for section in ("sae", "train"):
        base.setdefault(section, {}).update(fixed[section])
    base = validate_config(base, "sweep base config")
    settings = {
        "activation_set": aset.id,
        "hook": request.hook,
        "config": base,
        "objective": request.objective,
        "l0_weight": request.l0_weight,
        "trials": planner.n_trials,
        "parallel": request.parallel,
        "seed": request.seed,
        "template": request.template,
    }
    space = {"text": " ".join(d.describe() for d in dims), "dimensions": [d.to_dict() for d in dims]}
    default = f"sweep-{request.method}-{aset.name}"
    with database.atomic():
        sweep = Sweep.create(
            name=new_name(Sweep, request.name, default),
            method=request.method,
            space=space,
            base_config=settings,
            status="pending",
        )
    return sweep_spec(sweep)


def sweep_spec(sweep: Sweep, resume: bool = False) -> JobSpec[SweepParams]:
    """The orchestrating job of `sweep`."""
    verb = "Resume sweep" if resume else "Sweep"
    return JobSpec("sweep", SweepParams(sweep_id=sweep.id, resume=resume), f"{verb} {sweep.name}", sweep)


def resume_sweep(ref: str | int) -> JobSpec[SweepParams]:
    """Run a stopped sweep's remaining trials (unfinished trials resume from their checkpoints)."""
    sweep = resolve(Sweep, ref)
    job = sweep_job(sweep)
    if job is not None and job.status in JobState.ACTIVE:
        raise ValueError(f"sweep '{sweep.name}' is already running")
    if sweep.status == "completed":
        raise ValueError(f"sweep '{sweep.name}' has finished all its trials")
    return sweep_spec(sweep, resume=True)


def cancel_sweep(studio: Any, ref: str | int) -> Job:
    """Ask the sweep's running job to stop (its current trials checkpoint and stop too)."""
    sweep = resolve(Sweep, ref)
    job = sweep_job(sweep)
    if job is None or job.status not in JobState.ACTIVE:
        raise ValueError(f"sweep '{sweep.name}' is not running")
    studio.runner.cancel(job.id)
    return job
