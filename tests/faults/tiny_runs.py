"""Small, fast building blocks for the fault tests: an imported activation set of random rows (no model, no
tokenizer), training runs on it, and the CLI run in a subprocess so signals reach real workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mistudio_tui.db.models import ActivationSet
from mistudio_tui.studio import Studio
from tests.home_chain import run_here

REPO_ROOT = Path(__file__).resolve().parents[2]
HOOK = "blocks.0.hook_resid_post"
D_IN = 16


def random_activations(studio: Studio, rows: int = 4096, name: str = "acts") -> ActivationSet:
    """An activation set of `rows` random rows of width D_IN, imported into the home in this process."""
    import torch
    from safetensors.torch import save_file

    from mistudio_tui.services import models as model_svc

    source = studio.paths.home.parent / f"{name}.safetensors"
    save_file({HOOK: torch.randn(rows, D_IN, generator=torch.Generator().manual_seed(0))}, str(source))
    spec = model_svc.import_activations(studio, str(source), key=HOOK, name=name)
    run_here(studio, spec)
    return ActivationSet.get_by_id(spec.resource.id)


def cli_env(home: Path) -> dict[str, str]:
    """The environment of a `mistudio` subprocess on `home` that imports this checkout."""
    env = dict(os.environ)
    env["MISTUDIO_HOME"] = str(home)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def cli_command(*argv: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from mistudio_tui.cli import main; sys.exit(main())", *argv]


def run_cli(home: Path, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `mistudio ARGV` on `home` in a subprocess and wait for it."""
    return subprocess.run(
        cli_command(*argv), env=cli_env(home), capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT
    )


def start_cli(home: Path, *argv: str) -> subprocess.Popen[str]:
    """Start `mistudio ARGV` on `home` in a subprocess (stdout and stderr piped)."""
    return subprocess.Popen(
        cli_command(*argv),
        env=cli_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
