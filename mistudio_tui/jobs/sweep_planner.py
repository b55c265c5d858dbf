"""What a sweep searches and how it picks trials: dimensions, the trial planner (grid, random, Optuna TPE), scores.

Used both by the services that create and show sweeps and by the sweep job that runs the trials (jobs/tasks/sweep.py),
so it sits in the jobs layer and reads only rows below it.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
from dataclasses import dataclass
from typing import Any

from mistudio_tui.db.models import Sweep, Training
from mistudio_tui.ml.sae.config import architecture_id, shown_architecture

METHODS = ("grid", "random", "tpe")
OBJECTIVES = {
    "ev": "explained variance (higher is better)",
    "ce": "CE loss recovered (higher is better; needs a causal LM)",
    "ev-l0": "explained variance minus l0_weight × L0 (trades fidelity against sparsity)",
}
DEFAULT_GRID_POINTS = 3  # a grid over a range without ':N' visits its ends and middle


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


# --- objectives, trials and their configs -------------------------------------------------------


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


def trial_config(base: dict[str, Any], dims: list[Dimension], params: dict[str, Any]) -> dict[str, Any]:
    """The template config of one trial: the base with the searched values set, each in its dimension's section."""
    config = copy.deepcopy(base)
    section = {d.name: d.section for d in dims}
    for name, value in params.items():
        config.setdefault(section[name], {})[name] = value
    return config
