"""The SAE benchmark scripts run end to end on tiny synthetic inputs and print their BENCH lines."""

from __future__ import annotations

import math
import re

import pytest
import torch

from tests.benchmarks.scripts import load_script

BENCH_LINE = re.compile(r"^BENCH (\S+) (\S+) (\S+) goal (>=|<=) (\S+) (ok|short)$")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def bench_lines(text: str) -> dict[str, tuple[float, str]]:
    found = {}
    for line in text.splitlines():
        if match := BENCH_LINE.match(line):
            found[match.group(1)] = (float(match.group(2)), match.group(6))
    return found


def test_sae_quality_scores_ours_against_ground_truth_and_names_the_best_anchor() -> None:
    """The harness's own pieces (no anchor library needed): our trainer, the scoring and the BENCH verdicts."""
    module = load_script("sae_quality")
    gen = torch.Generator().manual_seed(0)
    true = torch.randn(24, 16, generator=gen)
    true /= true.norm(dim=1, keepdim=True)
    data = ((torch.rand(20_000, 24, generator=gen) < 0.08) * (0.5 + torch.rand(20_000, 24, generator=gen))) @ true
    trained = module.TRAINERS["ours-topk"](module.Job(data[:16_000], d_sae=24, k=2, tokens=40_960, seed=0))
    score = module.score(trained, data[16_000:], true, seconds=1.0)
    assert score.mcc is not None and score.mcc > 0.8 and score.ev > 0.7 and 0 < score.l0 <= 2.0
    row = module.Row("w")
    row.scores["ours-topk"] = [score]
    row.scores["sparsify"] = [module.Score(ev=score.ev + 0.1, l0=2.0, dead=0.2, seconds=1.0, mcc=0.1, recovered=0.0)]
    lines = bench_lines("\n".join(module.bench_lines([row])))
    assert lines["quality_w_ours-topk_mcc"][1] == "ok" and lines["quality_w_ours-topk_ev"][1] == "short"
    assert lines["quality_w_ours-topk_dead"] == (
        pytest.approx(score.dead, abs=1e-4),
        "ok" if score.dead <= 0.03 else "short",
    )
    with pytest.raises(SystemExit):
        module.main(["--worlds", "nowhere"])


def test_sae_quality_keeps_a_sampled_world_for_the_next_run(tmp_path) -> None:
    module = load_script("sae_quality")

    class World:  # sae_lens's SyntheticModel, as far as sampling goes
        calls = 0

        def sample_with_features(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
            World.calls += 1
            return torch.randn(n, 4), (torch.rand(n, 8) < 0.25).float()

    world = module.WORLDS["quick"]
    rows, l0 = module.cached_rows(World(), world, 100, 1, tmp_path)
    again, l0_again = module.cached_rows(World(), world, 100, 1, tmp_path)
    assert World.calls == 1 and torch.equal(rows, again) and l0 == l0_again
    module.cached_rows(World(), world, 100, 2, tmp_path)  # another seed is other rows
    assert World.calls == 2 and len(list(tmp_path.glob("quick-100-*.pt"))) == 2


def test_train_benchmark_prints_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    module = load_script("train")
    args = ["--quick", "--d-in", "16", "--expansion", "4", "--batch-size", "64", "--k", "4", "--device", "cpu"]
    assert module.main(args) == 0
    lines = bench_lines(capsys.readouterr().out)
    for architecture in ("topk", "batchtopk", "standard", "jumprelu"):
        assert lines[f"train_{architecture}_vs_ref"][0] > 0
        assert lines[f"train_{architecture}_of_matmul_peak"][0] > 0
    assert "train_topk_vs_relu" in lines


def test_step_work_counts_one_launch_per_kernel_and_compares_both_steps(capsys: pytest.CaptureFixture[str]) -> None:
    module = load_script("step_work")
    a, b = torch.randn(64, 32), torch.randn(32, 16)
    half = torch.randn(64, 32, dtype=torch.bfloat16)
    cases = {
        "a view": (lambda: a.view(-1), 0),
        "a matmul": (lambda: a @ b, 1),
        "a sum (its CPU output fill is no kernel)": (lambda: a.sum(), 1),
        "a product with a Python scalar": (lambda: a * 2.0, 1),
        "a real dtype conversion": (lambda: half.float(), 1),
        "a multi-tensor op": (lambda: torch._foreach_add_([a, b], 1.0), 1),
        "three element-wise ops": (lambda: (a + 1).relu().exp(), 3),
    }
    for name, (fn, expected) in cases.items():
        launches, _, _, _ = module.step_work(fn, big=10**9)
        assert launches == expected, name
    _, passes, megabytes, _ = module.step_work(lambda: a + 1, big=64 * 32 * 4)
    assert passes == 1 and megabytes == pytest.approx(64 * 32 * 4 / 1e6)

    assert module.main(["--d-in", "16", "--expansion", "4", "--batch-size", "64", "--k", "4"]) == 0
    lines = bench_lines(capsys.readouterr().out)
    for architecture in ("topk", "batchtopk", "standard", "jumprelu"):
        assert f"step_{architecture}_fp32_launches_vs_ref" in lines
        assert f"step_{architecture}_fp32_big_mb_vs_ref" in lines


def test_step_work_counts_the_extraction_against_forward_and_encode(capsys: pytest.CaptureFixture[str]) -> None:
    module = load_script("step_work")
    lines = bench_lines("\n".join(module.extraction_work(512, d_model=32, layers=2, expansion=4, batch=2)))
    out = capsys.readouterr().out
    assert "forward + encode:" in out and "4,096-token updates" in out
    assert set(lines) == {"extract_launches_ref_over_ours_4096", "extract_launches_ref_over_ours_32768"}
    # the larger updates can only launch fewer kernels per token
    assert lines["extract_launches_ref_over_ours_32768"][0] >= lines["extract_launches_ref_over_ours_4096"][0]


def test_matryoshka_benchmark_scores_absorption(capsys: pytest.CaptureFixture[str]) -> None:
    module = load_script("matryoshka")
    world = module.World.random(d_in=32, parents=4, children=2, parent_rate=0.2, seed=0)
    held_out = world.sample(2000, seed=1)
    parents, children = world.directions[:4], world.directions[4:]
    # the true dictionary scores perfectly; a dictionary that absorbed every parent into its children has no parent
    perfect = module.score(world, world.directions, held_out, held_out, 0.0)
    assert perfect.mcc == pytest.approx(1.0) and perfect.parents_recovered == 1.0 and perfect.absorbed_children == 0
    absorbed = torch.cat([children + parents.repeat_interleave(2, dim=0), torch.randn(4, 32)])
    scores = module.score(world, absorbed, held_out, held_out, 0.0)
    assert scores.parents_recovered == 0.0 and scores.absorbed_children == 1.0 and scores.mcc < 0.9
    assert module.main(["--seeds", "1", "--tokens", "20000", "--d-in", "16", "--parents", "4", "--children", "2",
                        "--parent-rate", "0.2"]) == 0  # fmt: skip
    lines = bench_lines(capsys.readouterr().out)
    assert set(lines) == {f"matryoshka_hier_{name}" for name in
                          ("mcc", "parents_recovered", "absorbed_children", "explained_variance")}  # fmt: skip
    assert all(0.0 <= value <= 1.0 for value, _ in lines.values())


@pytest.mark.parametrize(
    "curve",
    [
        lambda c: 90.0 * c**-0.6,  # a power law
        lambda c: 2.0 + 60.0 / (1.0 + c**2),  # saturating: L0 flattens out at both ends
        lambda c: 4.0 * math.exp(-3.0 * math.log10(c)),  # steep: k sits at the default coefficient's L0
    ],
)
def test_sae_quality_calibrates_the_sparsity_coefficient_to_k(monkeypatch: pytest.MonkeyPatch, curve) -> None:
    """ReLU / JumpReLU are compared with TopK at equal L0: the coefficient search lands within 10% of k."""
    module = load_script("sae_quality")

    def fake_ours(architecture: str):
        def run(job):
            return module.Trained(lambda x: x, lambda c: c, torch.eye(2), coefficient=job.coefficient)

        return run

    monkeypatch.setattr(module, "_ours", fake_ours)
    monkeypatch.setattr(module, "mean_l0", lambda trained, rows: curve(trained.coefficient))
    found = module.TRAINERS["ours-jumprelu"](module.Job(torch.zeros(8, 2), d_sae=2, k=4, tokens=1, seed=0))
    assert abs(curve(found.coefficient) / 4 - 1) <= module.L0_TOLERANCE
    assert found.runs <= module.CALIBRATION_RUNS

    row = module.Row("w")
    row.scores["ours-topk"] = [module.Score(ev=0.80, l0=4.0, dead=0.0, seconds=1.0)]
    row.scores["ours-jumprelu"] = [module.Score(ev=0.79, l0=4.1, dead=0.0, seconds=1.0)]
    row.scores["ours-relu"] = [module.Score(ev=0.75, l0=3.9, dead=0.0, seconds=1.0)]
    lines = bench_lines("\n".join(module.bench_lines([row])))
    assert lines["quality_w_ours-jumprelu_ev_minus_topk"] == (pytest.approx(-0.01), "ok")
    assert lines["quality_w_ours-relu_ev_minus_topk"] == (pytest.approx(-0.05), "short")
