"""Snapshots of the main screens at 120x40 (full screen) and 40x30 (a narrow tmux pane).

Regenerate after an intended change with `pytest tests/ui/test_snapshots.py --snapshot-update` and look at the
SVGs before committing them.
"""

from __future__ import annotations

import pytest

from mistudio_tui.app import MiStudioApp
from tests.ui.populate import populate

SIZES = {"wide": (120, 40), "narrow": (40, 30)}
SCREENS = {"datasets": "1", "models": "2", "trainings": "3", "features": "4", "steering": "5", "jobs": "j"}


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen_snapshot(snap_compare, studio, screen, size):
    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    assert snap_compare(app, press=[SCREENS[screen], "_", "_"], terminal_size=SIZES[size])
