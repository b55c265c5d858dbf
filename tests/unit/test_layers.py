"""Imports point down the layers only: every import of every module (function-level ones too) is checked here.

Layers, top to bottom (docs/ARCHITECTURE.md):
    cli/ ui/ app.py -> services/ studio.py -> jobs/ -> labeling/ monitor/ inference/ -> ml/ -> db/
    -> config.py units.py reporting.py process_io.py supervisor.py display.py
A layer may import itself and anything below it, except the few extra edges and exceptions listed below.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import mistudio_tui
from mistudio_tui.jobs.interface import Runner
from mistudio_tui.jobs.runner import JobRunner

PACKAGE = Path(mistudio_tui.__file__).parent

# Which layer each top-level module or subpackage of mistudio_tui belongs to (the package root is "base").
LAYER_OF = {
    "cli": "front",
    "ui": "front",
    "app": "front",
    "services": "services",
    "studio": "services",  # the home, database and runner every service works on
    "jobs": "jobs",
    "labeling": "side",
    "monitor": "side",
    "inference": "side",
    "ml": "ml",
    "db": "db",
    "config": "base",
    "units": "base",
    "reporting": "base",  # JobContext: how compute code reports progress, metrics, logs and checks for cancel
    "process_io": "base",  # standard streams of spawned processes (runner and inference session)
    "supervisor": "base",  # spawn, wait on, stop and describe child processes (runner, ranks, inference worker)
    "display": "base",  # text made safe to print (control characters of stored labels stripped)
    "": "base",  # mistudio_tui/__init__.py: the version
}
ORDER = ["front", "services", "jobs", "side", "ml", "db", "base"]

# The allowed dependencies: each layer, the layers it may import. `side` packages do not import each other.
ALLOWED = {layer: set(ORDER[i + 1 :]) for i, layer in enumerate(ORDER)}
SAME_LAYER_OK = {"front", "services", "base"}  # cli starts the UI (app, monitor_app); services share helpers

# Narrower than the table: services reach the runner through its interface only (JobEvent, the Runner protocol),
# build each kind's typed parameters (jobs/params.py, the classes in jobs/kinds/) and plan sweeps with the planner the
# sweep job uses.
SERVICES_MAY_IMPORT_FROM_JOBS = {
    "mistudio_tui.jobs.interface",
    "mistudio_tui.jobs.params",
    "mistudio_tui.jobs.kinds",
    "mistudio_tui.jobs.sweep_planner",
}

# Edges that break the order and cannot be fixed here, each with the reason. Keep this list short (empty today: the
# sweep job, which once queued its trials through the services, now uses the planner and the train kind's run rows
# below it).
EXCEPTIONS: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")
    return LAYER_OF[parts[1] if len(parts) > 1 else ""]


def imports_of(path: Path) -> list[tuple[int, str]]:
    return imported_modules(path.read_text(), module_name(path), path.name == "__init__.py")


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """Every mistudio_tui module `source` imports, at any depth: import statements and import_module("...")."""
    found = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import sub` may name a submodule: check the submodule when it is one
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                is_module = (PACKAGE.parent / Path(*sub.split("."))).with_suffix(".py").is_file() or (
                    PACKAGE.parent / Path(*sub.split("."))
                ).is_dir()
                found.append((node.lineno, sub if is_module else base))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    ours = [(line, name) for line, name in found if name == "mistudio_tui" or name.startswith("mistudio_tui.")]
    return list(dict.fromkeys(ours))


def violations() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        mine = layer(module)
        for line, target in imports_of(path):
            theirs = layer(target)
            if (module, target) in EXCEPTIONS:
                continue
            ok = theirs in ALLOWED[mine] or (theirs == mine and (mine in SAME_LAYER_OK or same_package(module, target)))
            if ok and mine == "services" and theirs == "jobs" and module.startswith("mistudio_tui.services"):
                ok = target in SERVICES_MAY_IMPORT_FROM_JOBS or target.startswith("mistudio_tui.jobs.kinds.")
            if not ok:
                out.append(f"{module}:{line} ({mine}) imports {target} ({theirs})")
    return out


def same_package(a: str, b: str) -> bool:
    return a.split(".")[:2] == b.split(".")[:2]


def test_every_import_points_down_the_layers():
    assert violations() == []


def test_every_module_has_a_layer():
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if p.suffix == ".py" or p.is_dir()}
    tops = {t for t in tops if t not in ("__pycache__", "__init__")}
    assert tops <= set(LAYER_OF), f"add {sorted(tops - set(LAYER_OF))} to LAYER_OF"


def test_the_exceptions_are_still_needed():
    edges = set()
    for path in PACKAGE.rglob("*.py"):
        edges |= {(module_name(path), target) for _, target in imports_of(path)}
    assert sorted(EXCEPTIONS - edges) == []


def test_the_checker_sees_function_level_relative_and_dynamic_imports():
    source = (
        "import importlib\n"
        "def f():\n"
        "    from mistudio_tui.jobs.runner import JobRunner\n"
        "    from . import trainer\n"
        "    importlib.import_module('mistudio_tui.services.sae_io')\n"
    )
    names = [name for _, name in imported_modules(source, "mistudio_tui.ml.sae.example")]
    assert names == ["mistudio_tui.jobs.runner", "mistudio_tui.ml.sae.trainer", "mistudio_tui.services.sae_io"]
    assert layer("mistudio_tui.jobs.runner") not in ALLOWED[layer("mistudio_tui.ml.sae.example")]


def test_the_job_runner_implements_the_runner_protocol():
    members = [name for name in vars(Runner) if not name.startswith("_")]
    assert {"submit", "cancel", "wait", "add_listener", "remove_listener"} <= set(members)
    for name in members:
        expected = [(p.name, p.default) for p in inspect.signature(getattr(Runner, name)).parameters.values()]
        actual = [(p.name, p.default) for p in inspect.signature(getattr(JobRunner, name)).parameters.values()]
        assert actual == expected, name
