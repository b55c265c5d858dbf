"""The UI process never imports torch; worker code never imports textual (checked in fresh interpreters)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import mistudio_tui

START_APP = """
import asyncio, sys
from mistudio_tui.app import MiStudioApp

async def main():
    app = MiStudioApp(offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        for key in "123456j":
            await pilot.press(key)
        await pilot.pause()

asyncio.run(main())
heavy = [m for m in ("torch", "transformers", "datasets", "safetensors.torch") if m in sys.modules]
print("HEAVY", heavy)
"""


def run(code: str, tmp_path) -> str:
    env = {"MISTUDIO_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_starting_the_app_and_visiting_every_mode_imports_no_torch(tmp_path):
    out = run(START_APP, tmp_path)
    assert "HEAVY []" in out


def worker_modules() -> list[str]:
    names = ["mistudio_tui.jobs.worker"]
    for package in ("mistudio_tui.jobs.tasks", "mistudio_tui.ml", "mistudio_tui.labeling"):
        module = __import__(package, fromlist=["__path__"])
        names += [m.name for m in pkgutil.walk_packages(module.__path__, package + ".")]
    return names


def test_worker_code_imports_no_textual(tmp_path):
    modules = worker_modules()
    assert "mistudio_tui.jobs.tasks.diagnostics" in modules
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += "print('TEXTUAL', [m for m in sys.modules if m == 'textual' or m.startswith('textual.')])\n"
    assert "TEXTUAL []" in run(code, tmp_path)


def test_package_has_a_version():
    assert mistudio_tui.__version__
