"""Sweeps without workers: space parsing, grid / random / TPE planning, objectives, the Pareto front, creation."""

from __future__ import annotations

import math
import random

import pytest

from mistudio_tui.db.models import ActivationSet, Sweep, Training
from mistudio_tui.jobs import sweep_planner as planner
from mistudio_tui.services import sweeps as svc
from mistudio_tui.services.pareto import is_on_front, pareto_front


def test_space_parses_lists_and_ranges_with_types():
    dims = svc.parse_space("k=8,16,32 lr=1e-4..1e-3:log arch=topk,relu expansion=4..16:3")
    k, lr, arch, expansion = dims
    assert (k.name, k.section, k.choices) == ("k", "sae", (8, 16, 32))
    assert all(isinstance(v, int) for v in k.choices)
    assert (lr.name, lr.section, lr.low, lr.high, lr.log, lr.count) == ("lr", "train", 1e-4, 1e-3, True, None)
    assert (arch.name, arch.choices) == ("architecture", ("topk", "standard"))  # stored by the internal name
    assert arch.describe() == "architecture=topk,relu"  # shown by the name people type
    assert (expansion.count, expansion.integer) == (3, False)
    assert planner.Dimension.from_dict(lr.to_dict()) == lr
    old_row = {"name": "architecture", "section": "sae", "choices": ["topk", "relu"]}  # as sweeps stored it before
    assert planner.Dimension.from_dict(old_row) == arch


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "give at least one field"),
        ("k", "should look like name=1,2,3"),
        ("width=8,16", "unknown field 'width'"),
        ("k=8,x", r"space: k: 'x' is not a number"),
        ("k=2.5", "not a whole number"),
        ("k=0,8", r"sae\.k|k must be > 0"),
        ("lr=1e-3..1e-4", "must go from low to high"),
        ("l1=0..1:log", "log range of l1_coefficient must start above 0"),
        ("lr=1e-4..1e-3:cubic", "option 'cubic'"),
        ("arch=topk..relu", "architecture is not numeric"),
        ("arch=gated", "expected one of relu, topk"),
        ("k=8 k=16", "k is given twice"),
    ],
)
def test_space_errors_name_the_field(text, message):
    with pytest.raises(ValueError, match=message):
        svc.parse_space(text)


def test_grid_enumerates_every_combination_and_spaces_range_points():
    dims = svc.parse_space("k=8,16 lr=1e-4..1e-2:log:3")
    trials = planner.grid_trials(dims)
    assert len(trials) == 6
    assert trials[0] == {"k": 8, "lr": 1e-4} and trials[-1] == {"k": 16, "lr": 1e-2}
    assert sorted({t["lr"] for t in trials}) == pytest.approx([1e-4, 1e-3, 1e-2])
    assert {(t["k"], t["lr"]) for t in trials} == {(k, lr) for k in (8, 16) for lr in {t["lr"] for t in trials}}
    assert [t["lr"] for t in planner.grid_trials(svc.parse_space("lr=1e-4..1e-2:log"))] == pytest.approx(
        [1e-4, 1e-3, 1e-2]
    )
    linear = planner.grid_trials(svc.parse_space("batch_size=256..1024:4"))
    assert [t["batch_size"] for t in linear] == [256, 512, 768, 1024]


def test_random_draws_stay_in_the_space_and_repeat_with_the_seed():
    dims = svc.parse_space("k=4..64:log lr=1e-5..1e-2:log arch=topk,batchtopk")
    trials = planner.random_trials(dims, 200, seed=7)
    assert trials == planner.random_trials(dims, 200, seed=7)
    assert trials != planner.random_trials(dims, 200, seed=8)
    assert all(isinstance(t["k"], int) and 4 <= t["k"] <= 64 for t in trials)
    assert all(1e-5 <= t["lr"] <= 1e-2 for t in trials)
    assert {t["architecture"] for t in trials} == {"topk", "batchtopk"}
    below = sum(t["lr"] < 10**-3.5 for t in trials) / len(trials)  # log-uniform: half below the geometric middle
    assert 0.35 < below < 0.65


def test_planner_grid_caps_trials_and_tpe_learns_from_told_scores():
    grid = planner.TrialPlanner("grid", svc.parse_space("k=1,2,3,4"), n_trials=3, seed=0)
    assert grid.n_trials == 3 and [grid.ask(i)["k"] for i in range(3)] == [1, 2, 3]

    dims = [planner.Dimension("lr", "train", low=0.0, high=1.0)]
    tpe = planner.TrialPlanner("tpe", dims, n_trials=30, seed=0)
    asked = []
    for number in range(30):
        value = tpe.ask(number)["lr"]
        asked.append(value)
        tpe.tell(number, -((value - 0.8) ** 2))  # best at 0.8
    late = sum(abs(v - 0.8) for v in asked[-10:]) / 10
    early = sum(abs(v - 0.8) for v in asked[:4]) / 4
    assert min(asked) >= 0 and max(asked) <= 1 and late < early
    tpe.tell(99, None)  # an unknown trial number is ignored


def test_pareto_front_keeps_only_undominated_points():
    points = [(8, 0.7), (16, 0.8), (12, 0.6), (32, 0.85), (16, 0.75), (None, 0.99), (4, math.nan), (32, 0.85)]
    assert pareto_front(points) == [0, 1, 3, 7]
    assert is_on_front(points) == [True, True, False, True, False, False, False, True]
    assert pareto_front([]) == []
    # CE-style: lower is better on both axes
    assert pareto_front([(1, 3.0), (2, 2.0), (3, 2.5)], maximize_y=False) == [0, 1]


def test_pareto_front_matches_a_brute_force_check():
    rng = random.Random(1)
    points = [(rng.randint(1, 20), round(rng.random(), 2)) for _ in range(60)]

    def dominated(i: int) -> bool:
        x, y = points[i]
        return any(ox <= x and oy >= y and (ox, oy) != (x, y) for ox, oy in points)

    assert sorted(pareto_front(points)) == [i for i in range(len(points)) if not dominated(i)]


@pytest.fixture
def aset(studio) -> ActivationSet:
    return ActivationSet.create(name="acts", hooks=["h"], d_in=16, status="ready", path="/x")


def test_new_sweep_validates_and_records_the_request(studio, aset):
    from mistudio_tui.services.templates import config_from_values, save_template

    save_template("base", config_from_values(architecture="topk", expansion=2, total_tokens=5000))
    spec = svc.new_sweep(
        svc.SweepRequest(activations="acts", space="k=2,4 lr=1e-3..1e-2:log:2", template="base", fixed={"seed": 3})
    )
    sweep = spec.resource
    assert spec.kind == "sweep" and spec.params.to_json() == {
        "sweep_id": sweep.id,
        "resume": False,
    }  # the row as before
    settings = sweep.base_config
    assert settings["trials"] == 4 and settings["activation_set"] == aset.id
    assert settings["config"]["sae"] == {"architecture": "topk", "expansion": 2}
    assert settings["config"]["train"] == {"total_tokens": 5000, "seed": 3}
    assert sweep.space["text"] == "k=2,4 lr=0.001..0.01:log:2"

    with pytest.raises(ValueError, match="method random needs --trials"):
        svc.new_sweep(svc.SweepRequest(activations="acts", space="k=2,4", method="random"))
    with pytest.raises(ValueError, match="objective 'mse'"):
        svc.new_sweep(svc.SweepRequest(activations="acts", space="k=2,4", objective="mse"))
    with pytest.raises(LookupError, match="no activation set"):
        svc.new_sweep(svc.SweepRequest(activations="nope", space="k=2,4"))
    assert Sweep.select().count() == 1


def test_trial_rows_score_only_finished_runs_and_mark_both_fronts(studio, aset):
    spec = svc.new_sweep(svc.SweepRequest(activations="acts", space="k=2,4,8", objective="ev-l0", l0_weight=0.01))
    sweep = spec.resource
    values = [
        ("completed", 2.0, 0.6, 0.5),
        ("completed", 4.0, 0.8, 0.4),
        ("paused", 8.0, 0.9, None),
    ]
    for i, (status, l0, ev, ce) in enumerate(values):
        Training.create(
            name=f"t{i}",
            activation_set=aset,
            sweep=sweep,
            status=status,
            l0=l0,
            explained_variance=ev,
            d_in=16,
            d_sae=32,
            config={"sae": {"k": [2, 4, 8][i]}, "train": {}},
            evaluation={"ce_loss_recovered": ce} if ce is not None else None,
        )
    rows = svc.trial_rows(sweep)
    assert [r["params"] for r in rows] == [{"k": 2}, {"k": 4}, {"k": 8}]
    assert rows[0]["score"] == pytest.approx(0.6 - 0.02) and rows[1]["score"] == pytest.approx(0.8 - 0.04)
    assert rows[2]["score"] is None
    assert [r["pareto_ev"] for r in rows] == [True, True, False]
    assert [r["pareto_ce"] for r in rows] == [True, False, False]
    assert svc.best_trial(rows)["name"] == "t1"


def test_trial_config_sets_searched_values_in_their_sections():
    base = {"sae": {"architecture": "topk"}, "train": {"total_tokens": 1000}}
    config = planner.trial_config(base, svc.parse_space("k=2,4 lr=1e-4..1e-2"), {"k": 4, "lr": 1e-3})
    assert config == {"sae": {"architecture": "topk", "k": 4}, "train": {"total_tokens": 1000, "lr": 1e-3}}
    assert base == {"sae": {"architecture": "topk"}, "train": {"total_tokens": 1000}}


def test_tpe_replay_teaches_a_fresh_study_finished_trials():
    dims = svc.parse_space("k=2,4,8 lr=1e-4..1e-2:log")
    tpe = planner.TrialPlanner("tpe", dims, n_trials=6, seed=0)
    tpe.replay({"k": 4, "lr": 1e-3}, 0.9)
    tpe.replay({"k": 3, "lr": 1e-3}, 0.5)  # outside the space: ignored
    tpe.replay({"k": 4}, 0.5)  # incomplete: ignored
    assert [t.params for t in tpe._study.trials] == [{"k": 4, "lr": 1e-3}]
    assert tpe.ask(1)["k"] in (2, 4, 8)
