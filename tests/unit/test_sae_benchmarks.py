"""The SAE benchmark scripts run end to end on tiny synthetic inputs and print their BENCH lines."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from safetensors.torch import save_file

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
BENCH_LINE = re.compile(r"^BENCH (\S+) (\S+) (\S+) goal (>=|<=) (\S+) (ok|short)$")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def bench_lines(text: str) -> dict[str, tuple[float, str]]:
    found = {}
    for line in text.splitlines():
        if match := BENCH_LINE.match(line):
            found[match.group(1)] = (float(match.group(2)), match.group(6))
    return found


def test_sae_quality_compares_three_recipes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen = torch.Generator().manual_seed(0)
    dictionary = torch.randn(48, 16, generator=gen)
    dictionary /= dictionary.norm(dim=1, keepdim=True)
    active = torch.rand(6000, 48, generator=gen) < 0.06
    data = (torch.rand(6000, 48, generator=gen) + 0.5) * active @ dictionary + 2.0
    path = tmp_path / "acts.safetensors"
    save_file({"blocks.0.hook_resid_post": data, "other": torch.zeros(3)}, str(path))
    module = load_script("sae_quality")
    with pytest.raises(ValueError, match="choose one with --key"):
        module.main(["--activations", str(path)])
    assert module.main(["--activations", str(path), "--key", "blocks.0.hook_resid_post", "--k", "4",
                        "--expansion", "4", "--tokens", "20000", "--batch-size", "256"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    lines = bench_lines(out)
    assert set(lines) == {"quality_ev_ours", "quality_dead_ours", "quality_ev_naive"}
    for recipe in ("ours", "sparsify", "naive"):
        assert re.search(rf"^{recipe}\s+-?\d", out, flags=re.MULTILINE)
    assert 0.0 < lines["quality_ev_ours"][0] <= 1.0


def test_sae_quality_reads_an_activation_set_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mistudio_tui.ml.activations.importing import import_activations

    data = torch.randn(3000, 16, generator=torch.Generator().manual_seed(1)) + 1.0
    save_file({"acts": data}, str(tmp_path / "acts.safetensors"))
    import_activations(tmp_path / "acts.safetensors", tmp_path / "set", hook_name="blocks.0.hook_resid_post")
    module = load_script("sae_quality")
    torch.testing.assert_close(module.load_activations(tmp_path / "set", None), data)
    with pytest.raises(ValueError, match="unknown recipe"):
        module.main(["--activations", str(tmp_path / "set"), "--recipes", "ours,mine"])
    args = ["--activations", str(tmp_path / "set"), "--quick", "--recipes", "ours,naive", "--k", "4"]
    assert module.main([*args, "--expansion", "2", "--batch-size", "256"]) == 0
    out = capsys.readouterr().out
    assert "budget 2,700 tokens" in out and set(bench_lines(out)) == {"quality_ev_naive"}


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
