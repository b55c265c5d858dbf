"""Footers at 40 columns (a tmux side pane): every key a screen shows fits, wrapping onto more lines, and the keys
its hints mention are among them; esc (leave the field) shows on the screens with text fields."""

from __future__ import annotations

import pytest
from textual.widgets._footer import FooterKey

from mistudio_tui.app import MiStudioApp
from mistudio_tui.ui.widgets.key_footer import KeyFooter
from tests.ui.populate import populate, populate_runs

NARROW = (40, 30)
# keys pressed to reach a screen, and keys its footer must show there
SCREENS = {
    "datasets": (["1"], {"a", "t", "x", "v", "s", "1", "question_mark", "q"}),
    "models": (["2"], {"a", "e", "x", "question_mark", "q"}),
    "trainings": (["3"], {"n", "v", "slash", "p", "r", "f", "x", "question_mark", "q"}),
    "training detail": (["3", "enter"], {"escape", "p", "r", "c", "k", "x", "question_mark", "q"}),
    "compare": (["3", "down", "space", "space", "v"], {"escape", "question_mark", "q"}),
    "features": (["4"], {"slash", "f", "s", "e", "L", "w", "question_mark", "q"}),
    "steering": (["5"], {"ctrl+r", "ctrl+t", "question_mark", "q"}),
    "monitor": (["6"], {"1", "question_mark", "q"}),
    "jobs": (["j"], {"c", "r", "question_mark", "q"}),
    "trainings filter": (["3", "slash"], {"escape"}),
    "features search": (["4", "slash"], {"escape"}),
    "steering prompt": (["5", "tab", "tab"], {"escape"}),
}


def footer_keys(app: MiStudioApp) -> tuple[KeyFooter, list[FooterKey]]:
    footer = app.screen.query_one(KeyFooter)
    # a key the footer leaves out (display off, or not placed for want of room) has no area
    return footer, [key for key in footer.query(FooterKey) if key.display and key.parent.display and key.region.area]


@pytest.mark.parametrize("screen", list(SCREENS))
async def test_every_footer_key_fits_at_40_columns(studio, screen):
    populate_runs(studio.paths.home)
    presses, wanted = SCREENS[screen]
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=NARROW) as pilot:
        for key in presses:
            await pilot.press(key)
            await pilot.pause()
        await pilot.pause()
        footer, keys = footer_keys(app)
        for key in keys:
            assert footer.region.contains_region(key.region), f"{key.key} {key.description!r} is cut off"
        shown = {key.key for key in keys}
        assert wanted <= shown, f"missing {sorted(wanted - shown)}"


async def test_the_empty_datasets_screen_shows_the_sample_key_its_hint_mentions(studio):
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=NARROW) as pilot:
        await pilot.pause()
        assert "s: build the offline sample" in str(app.screen.query_one("#dataset-detail").render())
        footer, keys = footer_keys(app)
        assert "s" in {key.key for key in keys}
        assert all(footer.region.contains_region(key.region) for key in keys)


async def test_esc_gives_the_keys_back_from_a_text_field(studio):
    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4", "slash")
        await pilot.pause()
        assert "escape" in {key.key for key in footer_keys(app)[1]}  # shown while the box takes the letters
        await pilot.press("escape")
        await pilot.pause()
        assert app.focused is app.screen.query_one("#features-table")


async def test_a_long_footer_wraps_at_120_columns_too(studio):
    populate_runs(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3", "enter")
        await pilot.pause()
        footer, keys = footer_keys(app)
        assert {"question_mark", "q", "x", "s"} <= {key.key for key in keys}
        assert all(footer.region.contains_region(key.region) for key in keys)


# with tests/ui/test_snapshots.py (every mode at 40x30), test_trainings_snapshots.py (a run's page, a comparison)
# and test_sweeps_snapshots.py, these make the 40-column set of every screen's footer
FOOTER_VIEWS = {
    "empty-datasets": (False, ["_"]),
    "trainings-filter": (True, ["3", "slash"]),
    "features-search": (True, ["4", "slash"]),
}


@pytest.mark.parametrize("view", list(FOOTER_VIEWS))
def test_narrow_footer_snapshot(snap_compare, studio, view):
    populated, presses = FOOTER_VIEWS[view]
    if populated:
        populate_runs(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    assert snap_compare(app, press=presses, terminal_size=NARROW)
