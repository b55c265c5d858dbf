"""Snapshots of the Trainings workspace at 120x40 and 40x30: the runs list, a failed run's detail, a comparison.

Regenerate after an intended change with `pytest tests/ui/test_trainings_snapshots.py --snapshot-update` and look at
the SVGs before committing them.
"""

from __future__ import annotations

import pytest

from mistudio_tui.app import MiStudioApp
from tests.ui.populate import populate_runs

SIZES = {"wide": (120, 40), "narrow": (40, 30)}
VIEWS = {
    "list": ["3", "_", "_"],
    "failed_in_list": ["3", "down", "down", "down", "_", "_"],
    "failed_detail": ["3", "down", "down", "down", "enter", "_", "_"],
    "compare": ["3", "down", "space", "space", "v", "_", "_"],
}


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("view", list(VIEWS))
def test_trainings_snapshot(snap_compare, studio, view, size):
    populate_runs(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    assert snap_compare(app, press=VIEWS[view], terminal_size=SIZES[size])
