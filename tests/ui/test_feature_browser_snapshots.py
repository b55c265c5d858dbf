"""Snapshots of the feature browser at 120x40 and 40x30, and of the labeling form.

Regenerate after an intended change with `pytest tests/ui/test_feature_browser_snapshots.py --snapshot-update` and
look at the SVGs before committing them.
"""

from __future__ import annotations

import pytest

from mistudio_tui.app import MiStudioApp
from tests.ui.populate import populate

SIZES = {"wide": (120, 40), "narrow": (40, 30)}


@pytest.mark.parametrize("size", list(SIZES))
def test_browser_filtered_and_sorted_snapshot(snap_compare, studio, size):
    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    keys = ["4", "_", "s", "f", *"alive", "enter", "_", "j", "b", "_"]
    assert snap_compare(app, press=keys, terminal_size=SIZES[size])


@pytest.mark.parametrize("size", list(SIZES))
def test_labeling_form_snapshot(snap_compare, studio, size):
    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    assert snap_compare(app, press=["4", "_", "L", "_"], terminal_size=SIZES[size])
