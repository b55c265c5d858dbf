"""The SAE benchmark scripts run end to end on tiny synthetic inputs and print their BENCH lines."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
from safetensors.torch import save_file

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
BENCH_LINE = re.compile(r"^BENCH (\S+) (\S+) (\S+) goal (>=|<=) (\S+) (ok|short)$")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
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


def test_train_benchmark_prints_every_figure(capsys: pytest.CaptureFixture[str]) -> None:
    module = load_script("train")
    args = ["--quick", "--d-in", "16", "--expansion", "4", "--batch-size", "64", "--k", "4", "--device", "cpu"]
    assert module.main(args) == 0
    lines = bench_lines(capsys.readouterr().out)
    for architecture in ("topk", "batchtopk", "standard", "jumprelu"):
        assert lines[f"train_{architecture}_vs_ref"][0] > 0
        assert lines[f"train_{architecture}_of_matmul_peak"][0] > 0
    assert "train_topk_vs_relu" in lines
