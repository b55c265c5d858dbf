"""Schedules, data-dependent initialisation and checkpoint files."""

from __future__ import annotations

import itertools
import math
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mistudio_tui.ml.sae.checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from mistudio_tui.ml.sae.config import SIGNUM_REFERENCE_STEPS, TrainConfig, default_lr, resolve_optimizer
from mistudio_tui.ml.sae.initialization import activation_scale, geometric_median, initial_b_dec
from mistudio_tui.ml.sae.schedule import LRSchedule, sparsity_coefficient_at, sparsity_warmup_steps


def test_warmup_then_constant() -> None:
    s = LRSchedule(peak_lr=1.0, total_steps=100, warmup_steps=10)
    assert [s.lr_at(i) for i in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert s.lr_at(50) == s.lr_at(99) == 1.0


def test_linear_decay_reaches_the_final_fraction_on_the_last_step() -> None:
    s = LRSchedule(peak_lr=2.0, total_steps=121, decay="linear", decay_start_step=20, final_fraction=0.1)
    assert s.lr_at(0) == s.lr_at(20) == 2.0
    assert s.lr_at(70) == pytest.approx(2.0 * (1 - 0.5 * 0.9))  # halfway through the 100 decay steps
    assert s.lr_at(120) == pytest.approx(0.2)


def test_cosine_decay_midpoint_and_end() -> None:
    s = LRSchedule(peak_lr=1.0, total_steps=201, decay="cosine", decay_start_step=0, final_fraction=0.0)
    assert s.lr_at(100) == pytest.approx(0.5)
    assert s.lr_at(200) == pytest.approx(0.0, abs=1e-12)
    values = [s.lr_at(i) for i in range(201)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_schedule_from_config_caps_warmup_and_places_decay() -> None:
    cfg = TrainConfig(total_tokens=1000 * 64, batch_size=64, lr_warmup_steps=500, lr_decay_start=0.8)
    s = LRSchedule.from_config(cfg, peak_lr=1e-3)
    assert s.total_steps == 1000 and s.warmup_steps == 100 and s.decay_start_step == 800
    assert s.lr_at(500) == pytest.approx(1e-3)
    assert s.lr_at(999) == pytest.approx(1e-4)


def test_sparsity_warmup() -> None:
    assert [sparsity_coefficient_at(i, 4.0, 4) for i in range(6)] == [1.0, 2.0, 3.0, 4.0, 4.0, 4.0]
    assert sparsity_coefficient_at(0, 4.0, 0) == 4.0
    assert sparsity_warmup_steps(TrainConfig(total_tokens=4000, batch_size=10)) == 20
    assert sparsity_warmup_steps(TrainConfig(sparsity_warmup_steps=7)) == 7


def test_default_lr_rule() -> None:
    assert default_lr(2**14) == pytest.approx(2e-4)
    assert default_lr(2**16) == pytest.approx(1e-4)
    # sign descent: the architecture's base, the same up to SIGNUM_REFERENCE_STEPS, then falling as 1/sqrt(steps)
    assert default_lr(2**14, "signum", 3e-3, total_steps=SIGNUM_REFERENCE_STEPS) == pytest.approx(3e-3)
    assert default_lr(2**14, "signum", 3e-3, total_steps=100) == pytest.approx(3e-3)
    assert default_lr(2**16, "signum", 3e-3, total_steps=4 * SIGNUM_REFERENCE_STEPS) == pytest.approx(3e-3 / 4)
    assert default_lr(2**14, "adam", total_steps=10**6) == pytest.approx(2e-4)  # Adam has its schedule


def test_auto_optimizer_is_sign_descent_for_relu_and_jumprelu_too() -> None:
    """Adam at the rule-of-thumb lr could not reach a chosen L0 in a short run with ReLU-L1 or JumpReLU
    (benchmarks/RESULTS.md, issue 16): "auto" trains them with schedule-free sign descent, like TopK."""
    for architecture in ("topk", "batchtopk", "standard", "jumprelu"):
        assert resolve_optimizer("auto", architecture) == "signum"
        assert LRSchedule.from_config(TrainConfig(), 1.0, resolve_optimizer("auto", architecture)).warmup_steps == 0
    assert resolve_optimizer("auto", "matryoshka") == "adam"
    assert resolve_optimizer("adam", "jumprelu") == "adam"


def test_geometric_median_resists_outliers_and_minimises_distance() -> None:
    torch.manual_seed(0)
    cluster = torch.randn(200, 4) * 0.1 + torch.tensor([1.0, 2.0, 3.0, 4.0])
    points = torch.cat([cluster, torch.full((20, 4), 100.0)])
    median = geometric_median(points)
    assert (median - torch.tensor([1.0, 2.0, 3.0, 4.0])).norm() < 0.1
    mean = points.mean(0)

    def cost(c: torch.Tensor) -> float:
        return float((points - c).norm(dim=1).sum())

    assert cost(median) < cost(mean)
    for _ in range(5):
        assert cost(median) <= cost(median + torch.randn(4) * 0.01) + 1e-3
    assert torch.equal(initial_b_dec(points, "zeros"), torch.zeros(4))
    torch.testing.assert_close(initial_b_dec(points, "mean"), mean)


def test_activation_scale_gives_norm_sqrt_d_in() -> None:
    x = torch.randn(500, 16) * 7.0 + 3.0
    scaled = x * activation_scale(x)
    assert float(scaled.norm(dim=1).mean()) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="mean norm is 0"):
        activation_scale(torch.zeros(3, 16))


def test_checkpoints_are_atomic_kept_and_loaded(tmp_path: Path) -> None:
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, step, {"step": step, "w": torch.full((3,), float(step))}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000000020.pt", "step-000000030.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000000020.pt", "step-000000030.pt"]
    latest = latest_checkpoint(tmp_path)
    assert latest is not None and torch.equal(load_checkpoint(latest)["w"], torch.full((3,), 30.0))
    latest.write_bytes(latest.read_bytes()[:20])
    with pytest.raises(ValueError, match=re.escape("step-000000030.pt cannot be read")):
        load_checkpoint(latest)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.pt")
    assert latest_checkpoint(tmp_path / "absent") is None


def test_rng_state_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(5)
    path = save_checkpoint(tmp_path, 1, {"step": 1, "rng": capture_rng_state()})
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    restore_rng_state(load_checkpoint(path)["rng"])
    got = (random.random(), float(np.random.rand()), float(torch.rand(())))
    assert got == expected and not math.isnan(got[0])
