"""Snapshots of the Steering screen after a (fake) sweep at 120x40 and 40x30, and of its Analysis tab.

Regenerate after an intended change with `pytest tests/ui/test_steering_snapshots.py --snapshot-update` and look
at the SVGs before committing them.
"""

from __future__ import annotations

import pytest

from mistudio_tui.app import MiStudioApp
from tests.ui.populate import populate
from tests.ui.steering_fake import FakeSession

SIZES = {"wide": (120, 40), "narrow": (40, 30)}


async def _run_sweep(pilot) -> None:
    await pilot.press("5")
    await pilot.pause()
    screen = pilot.app.screen
    screen._session = FakeSession()
    screen.query_one("#steer-features").value = "3"
    screen.query_one("#steer-strengths").value = "0, 4"
    screen.query_one("#steer-prompt").value = "Once"
    screen.action_run()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    screen.set_focus(None)
    await pilot.pause()


@pytest.mark.parametrize("size", list(SIZES))
def test_steering_sweep_snapshot(snap_compare, studio, size):
    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    assert snap_compare(app, run_before=_run_sweep, terminal_size=SIZES[size])


def test_steering_analysis_snapshot(snap_compare, studio):
    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)

    async def analyse(pilot) -> None:
        await _run_sweep(pilot)
        screen = pilot.app.screen
        screen.query_one("#steer-features").value = "3, 5"
        screen.query_one("#steer-tabs").active = "tab-analysis"
        await pilot.pause()
        for button in ("#an-cooccurrence", "#an-map"):
            await pilot.click(button)
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
        screen.set_focus(None)
        await pilot.pause()

    assert snap_compare(app, run_before=analyse, terminal_size=SIZES["wide"])
