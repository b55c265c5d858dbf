"""Snapshots of the sweeps screen and the template picker at 120x40 and 40x30."""

from __future__ import annotations

import pytest

from mistudio_tui.app import MiStudioApp
from mistudio_tui.db.models import ActivationSet
from mistudio_tui.ui.modals.templates import TemplatePicker
from mistudio_tui.ui.screens.sweeps import SweepsScreen
from tests.ui.populate import populate
from tests.ui.test_sweeps import add_sweep, add_templates

SIZES = {"wide": (120, 40), "narrow": (40, 30)}


@pytest.mark.parametrize("size", list(SIZES))
def test_sweeps_screen_snapshot(snap_compare, studio, size):
    populate(studio.paths.home)
    add_sweep(ActivationSet.get(name="tiny-L0-resid_post"))
    app = MiStudioApp(studio, offer_sample=False)

    async def open_sweeps(pilot) -> None:
        app.push_screen(SweepsScreen())
        await pilot.pause()

    assert snap_compare(app, run_before=open_sweeps, press=["_", "_"], terminal_size=SIZES[size])


@pytest.mark.parametrize("size", list(SIZES))
def test_template_picker_snapshot(snap_compare, studio, size):
    add_templates()
    app = MiStudioApp(studio, offer_sample=False)

    async def open_picker(pilot) -> None:  # over the sweeps screen, so other screens' changes do not show here
        app.push_screen(SweepsScreen())
        await pilot.pause()
        app.push_screen(TemplatePicker())
        await pilot.pause()

    assert snap_compare(app, run_before=open_picker, press=["_", "_"], terminal_size=SIZES[size])
