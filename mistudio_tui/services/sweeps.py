"""Hyperparameter sweeps: a search space, a trial planner (grid, random, Optuna TPE), objectives, the sweep job."""

from __future__ import annotations

import copy
import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any

from mistudio_tui.db.lookup import new_name, resolve
from mistudio_tui.db.models import ActivationSet, Job, Sweep, Training, database
from mistudio_tui.db.states import JobState, RunState
from mistudio_tui.jobs.kinds.sweep import SweepParams
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
from mistudio_tui.services.trainings import architecture_id, shown_architecture

METHODS = ("grid", "random", "tpe")
OBJECTIVES = {
    "ev": "explained variance (higher is better)",
    "ce": "CE loss recovered (higher is better; needs a causal LM)",
    "ev-l0": "explained variance minus l0_weight × L0 (trades fidelity against sparsity)",
}
DEFAULT_GRID_POINTS = 3  # a grid over a range without ':N' visits its ends and middle
ALIASES = {"l1": "l1_coefficient", "l0": "l0_coefficient", "arch": "architecture", "tokens": "total_tokens"}


@dataclass(frozen=True)
class Dimension:
    """One searched field: a list of choices, or a numeric range (log-scaled, with `count` grid points)."""

    name: str
    section: str
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    count: int | None = None
    integer: bool = False

    @property
    def is_range(self) -> bool:
        return self.low is not None

    def bounds(self) -> tuple[float, float]:
        """(low, high) of a range dimension (parse_space sets both)."""
        assert self.low is not None and self.high is not None, f"{self.name} is not a range"
        return self.low, self.high

    def grid_points(self) -> list[Any]:
        """The values a grid search visits."""
        if not self.is_range:
            return list(self.choices)
        n = self.count or DEFAULT_GRID_POINTS
        low, high = self.bounds()
        if n == 1:
            return [self._cast(low)]
        if self.log:
            lo, hi = math.log(low), math.log(high)
            raw = [math.exp(lo + (hi - lo) * i / (n - 1)) for i in range(n)]
        else:
            raw = [low + (high - low) * i / (n - 1) for i in range(n)]
        return list(dict.fromkeys(self._cast(v) for v in raw))

    def sample(self, rng: random.Random) -> Any:
        """One value drawn uniformly (log-uniformly for log ranges)."""
        if not self.is_range:
            return rng.choice(self.choices)
        low, high = self.bounds()
        if self.log:
            value = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            value = rng.uniform(low, high)
        return self._cast(value)

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial suggests for this dimension."""
        if not self.is_range:
            return trial.suggest_categorical(self.name, list(self.choices))
        low, high = self.bounds()
        if self.integer:
            return trial.suggest_int(self.name, int(low), int(high), log=self.log)
        return trial.suggest_float(self.name, float(low), float(high), log=self.log)

    def _cast(self, value: float) -> Any:
        return round(value) if self.integer else float(f"{value:.6g}")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "section": self.section}
        if self.is_range:
            data.update(low=self.low, high=self.high, log=self.log, count=self.count, integer=self.integer)
        else:
            data["choices"] = list(self.choices)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Dimension:
        data = dict(data)
        data["choices"] = tuple(data.get("choices") or ())
        if data["name"] == "architecture":  # an older sweep may list an architecture by its shown name
            data["choices"] = tuple(architecture_id(c) for c in data["choices"])
        return cls(**data)

    def describe(self) -> str:
        if not self.is_range:
            shown = [shown_params({self.name: choice})[self.name] for choice in self.choices]
            return f"{self.name}={','.join(str(v) for v in shown)}"
        text = f"{self.name}={self.low:g}..{self.high:g}"
        return text + (":log" if self.log else "") + (f":{self.count}" if self.count else "")


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


def grid_trials(dims: list[Dimension]) -> list[dict[str, Any]]:
    """Every combination, the first dimension varying slowest."""
    points = [d.grid_points() for d in dims]
    return [dict(zip([d.name for d in dims], combo, strict=True)) for combo in itertools.product(*points)]


def random_trials(dims: list[Dimension], n: int, seed: int) -> list[dict[str, Any]]:
    """`n` independent draws from the space, reproducible from `seed`."""
    rng = random.Random(seed)
    return [{d.name: d.sample(rng) for d in dims} for _ in range(n)]


class TrialPlanner:
    """Hands out trial parameters (`ask`) and learns their scores (`tell`); grid and random plan ahead."""

    def __init__(self, method: str, dims: list[Dimension], n_trials: int | None, seed: int, maximize: bool = True):
        if method not in METHODS:
            raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
        self.method = method
        self.dims = dims
        self._plan: list[dict[str, Any]] | None = None
        self._study: Any = None
        self._pending: dict[int, Any] = {}
        if method == "grid":
            plan = grid_trials(dims)
            self._plan = plan[:n_trials] if n_trials else plan
        elif method == "random":
            self._plan = random_trials(dims, n_trials or 8, seed)
        else:
            self._study = _optuna_study(seed, maximize)
        self.n_trials = len(self._plan) if self._plan is not None else (n_trials or 8)

    def ask(self, number: int) -> dict[str, Any]:
        """The parameters of trial `number` (0-based)."""
        if self._plan is not None:
            return dict(self._plan[number])
        trial = self._study.ask()
        self._pending[number] = trial
        return {d.name: d.suggest(trial) for d in self.dims}

    def tell(self, number: int, value: float | None) -> None:
        """Report a finished trial's score (None: it failed or has no score)."""
        if self._study is None:
            return
        import optuna

        trial = self._pending.pop(number, None)
        if trial is None:
            return
        if value is None or math.isnan(value):
            self._study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            self._study.tell(trial, value)

    def replay(self, params: dict[str, Any], value: float | None) -> None:
        """Teach a fresh TPE study a trial finished before (resuming a sweep)."""
        if self._study is None or value is None or math.isnan(value):
            return
        import optuna

        dists = {d.name: _distribution(d) for d in self.dims}
        if set(params) != set(dists):
            return
        try:
            self._study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))
        except ValueError:  # a value outside today's space (the run was edited): TPE simply does not learn it
            return


def _optuna_study(seed: int, maximize: bool) -> Any:
    try:
        import optuna
    except ImportError:
        raise ValueError("method tpe needs Optuna: pip install optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=4)
    return optuna.create_study(direction="maximize" if maximize else "minimize", sampler=sampler)


def _distribution(dim: Dimension) -> Any:
    import optuna.distributions as od

    if not dim.is_range:
        return od.CategoricalDistribution(list(dim.choices))
    low, high = dim.bounds()
    if dim.integer:
        return od.IntDistribution(int(low), int(high), log=dim.log)
    return od.FloatDistribution(float(low), float(high), log=dim.log)


# --- objectives and trial summaries ----------------------------------------------------------------


def objective_value(objective: str, training: Training, l0_weight: float = 0.0) -> float | None:
    """The score of a finished trial (higher is better), or None when the run lacks the metric."""
    ev = training.explained_variance
    if objective == "ev":
        return ev
    if objective == "ce":
        value = (training.evaluation or {}).get("ce_loss_recovered")
        return None if value is None or math.isnan(value) else float(value)
    if objective == "ev-l0":
        if ev is None or training.l0 is None:
            return None
        return ev - l0_weight * training.l0
    raise ValueError(f"objective {objective!r} is not one of {', '.join(OBJECTIVES)}")


def trial_params(sweep: Sweep, training: Training) -> dict[str, Any]:
    """The searched values a trial ran with (read back from its config)."""
    config = training.config or {}
    out: dict[str, Any] = {}
    for dim in sweep.space.get("dimensions", []):
        section = config.get(dim["section"]) or {}
        if dim["name"] == "expansion" and training.d_in and training.d_sae:
            out["expansion"] = training.d_sae / training.d_in
        elif dim["name"] == "architecture":  # an older run may hold the shown name
            out["architecture"] = architecture_id(section.get("architecture", "topk"))
        else:
            out[dim["name"]] = section.get(dim["name"])
    return out


def shown_params(params: dict[str, Any]) -> dict[str, Any]:
    """A trial's searched values as people read them (an architecture by its shown name)."""
    return {k: shown_architecture(v) if k == "architecture" and isinstance(v, str) else v for k, v in params.items()}


def trials_of(sweep: Sweep) -> list[Training]:
    return list(Training.select().where(Training.sweep == sweep.id).order_by(Training.id))


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


def trial_config(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The template config of one trial: the base with the searched values set."""
    config = copy.deepcopy(base)
    for name, value in params.items():
        section, _ = _field_rule(name)
        config.setdefault(section, {})[name] = value
    return config
