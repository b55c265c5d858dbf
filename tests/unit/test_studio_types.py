"""The UI reaches the job runner through the `Runner` protocol that `Studio.runner` is typed as, and nothing more."""

from __future__ import annotations

import re
from pathlib import Path

import mistudio_tui
from mistudio_tui.jobs.interface import Runner
from mistudio_tui.studio import Studio
from mistudio_tui.ui.screens.base import StudioScreen

PACKAGE = Path(mistudio_tui.__file__).parent
RUNNER_USE = re.compile(r"\brunner\.(\w+)")


def test_studio_runner_and_screen_studio_are_annotated_with_their_types():
    assert Studio.runner.fget.__annotations__["return"] == "Runner"
    assert StudioScreen.studio.fget.__annotations__["return"] == "Studio"


def runner_members() -> set[str]:
    return {name for name in vars(Runner) if not name.startswith("_")} | set(Runner.__annotations__)


def test_the_ui_uses_only_what_the_runner_protocol_declares():
    sources = [PACKAGE / "app.py", *sorted((PACKAGE / "ui").rglob("*.py"))]
    used = {
        (path.relative_to(PACKAGE).as_posix(), name)
        for path in sources
        for name in RUNNER_USE.findall(path.read_text())
    }
    assert {name for _, name in used} >= {"add_listener", "cancel", "running_ids"}  # the check sees the real uses
    assert not [(path, name) for path, name in used if name not in runner_members()]
