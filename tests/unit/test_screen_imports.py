"""Screens share pieces through `ui/widgets/` and `ui/format.py`, never by importing helpers from a sibling screen."""

from __future__ import annotations

import ast
from pathlib import Path

import mistudio_tui.ui.screens as screens

SCREENS = Path(screens.__file__).parent
PREFIX = "mistudio_tui.ui.screens."


def sibling_imports(source: str) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of each `from mistudio_tui.ui.screens.X import …` other than the shared base class, at
    module level, or anywhere when a name is not a screen class (opening another screen, inside an action, is fine)."""
    tree = ast.parse(source)
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith(PREFIX):
            continue
        if node.module == PREFIX + "base":
            continue
        names = [alias.name for alias in node.names]
        if id(node) in top_level or not all(name.endswith("Screen") for name in names):
            found.append((node.lineno, node.module, names))
    return found


def test_the_check_tells_navigation_from_a_borrowed_helper():
    source = (
        "from mistudio_tui.ui.screens.base import StudioScreen\n"
        "from mistudio_tui.ui.screens.jobs import status_text\n"
        "def action_open(self):\n"
        "    from mistudio_tui.ui.screens.training_detail import TrainingDetailScreen\n"
        "    from mistudio_tui.ui.screens.trainings import pause_training\n"
    )
    found = [(line, names) for line, _, names in sibling_imports(source)]
    assert found == [(2, ["status_text"]), (5, ["pause_training"])]


def test_no_screen_imports_a_helper_from_a_sibling_screen():
    offenders = {
        path.name: found for path in sorted(SCREENS.glob("*.py")) if (found := sibling_imports(path.read_text()))
    }
    assert not offenders, offenders
