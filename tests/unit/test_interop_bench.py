"""benchmarks/interop.py --quick, wherever the benchmark extra (sae-lens, eai-sparsify) is installed."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH_LINE = re.compile(r"^BENCH interop_(\S+) (\S+) abs goal <= 1e-05 (ok|short)$", re.MULTILINE)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("sae_lens") is None or importlib.util.find_spec("sparsify") is None,
    reason="the benchmark extra (sae-lens, eai-sparsify) is not installed",
)
def test_interop_quick_reproduces_every_layout(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MISTUDIO_HOME": str(tmp_path / "home")}
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "interop.py"), "--quick"],
        capture_output=True,
        text=True,
        env=env,
        timeout=280,
    )
    lines = BENCH_LINE.findall(run.stdout)
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    layouts = {name for name, _, verdict in lines if verdict == "ok"}
    expected = {"saelens_train_topk", "saelens_train_batchtopk", "sparsify", "gemma_scope", "llama_scope", "qwen_scope"}
    assert expected <= layouts
    assert len(lines) == len(layouts) >= 18
