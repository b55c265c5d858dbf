"""README.md's key table lists every key each screen's footer shows (and each key a screen binds)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
SCREENS = {
    "Datasets": ("datasets", "DatasetsScreen"),
    "Models": ("models", "ModelsScreen"),
    "Trainings": ("trainings", "TrainingsScreen"),
    "Training run": ("training_detail", "TrainingDetailScreen"),
    "Comparison": ("training_compare", "TrainingCompareScreen"),
    "Sweeps": ("sweeps", "SweepsScreen"),
    "Features": ("features", "FeaturesScreen"),
    "Steering": ("steering", "SteeringScreen"),
    "Jobs": ("jobs", "JobsScreen"),
}
SHOWN_AS = {"slash": "/", "escape": "esc", "number_sign": "#", "question_mark": "?"}


def readme_row(screen: str) -> tuple[list[str], list[str]]:
    """The (footer keys, other keys) of the README row describing `screen`."""
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 2 and cells[1].startswith((f"{screen}:", f"{screen} (")):
            footer, _, other = cells[0].partition("·")
            return re.findall(r"`([^`]+)`", footer), re.findall(r"`([^`]+)`", other)
    raise AssertionError(f"README.md has no key row for {screen}")


@pytest.mark.parametrize("screen", list(SCREENS))
def test_readme_key_table_matches_the_footers(screen):
    import importlib

    module, name = SCREENS[screen]
    cls = getattr(importlib.import_module(f"mistudio_tui.ui.screens.{module}"), name)
    footer, other = readme_row(screen)
    for binding in cls.BINDINGS:
        key = SHOWN_AS.get(binding.key.split(",")[0], binding.key.split(",")[0])
        if binding.action == "pause" and binding.key == "c":  # a second key of Pause
            continue
        where = footer if binding.show else footer + other
        kind = "footer keys" if binding.show else "keys"
        assert key in where, f"{screen}: README lacks {key} ({binding.description}) in its {kind}"
    shown = {SHOWN_AS.get(b.key.split(",")[0], b.key.split(",")[0]) for b in cls.BINDINGS if b.show}
    assert set(footer) <= shown | {"1 … 6"}, f"{screen}: README lists {set(footer) - shown} as footer keys"
