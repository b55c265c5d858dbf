"""What keeps the browser's keystrokes cheap: a footer rebuilt only when its keys change, no restyle of a screen
shown again, full garbage collections while the user pauses, a detail pane drawn after the cursor's frame, a query
applied at the first key after a pause."""

from __future__ import annotations

import gc
from typing import Any

from textual import events
from textual.widgets import Input
from textual.widgets._footer import FooterKey

from mistudio_tui.app import MiStudioApp
from mistudio_tui.ui import speedups
from mistudio_tui.ui.screens import features as features_screen
from mistudio_tui.ui.screens.features import FeaturesScreen
from mistudio_tui.ui.widgets.feature_table import FeatureTable
from mistudio_tui.ui.widgets.key_footer import KeyFooter
from tests.ui.populate import populate


def footer_keys(app: MiStudioApp) -> list[FooterKey]:
    """The footer's keys on show (a key the focused widget takes is hidden, or in a hidden group)."""
    return [key for key in app.screen.query_one(KeyFooter).query(FooterKey) if key.display and key.parent.display]


async def test_the_footer_is_rebuilt_only_when_the_keys_it_shows_change(studio, monkeypatch):
    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    restyled: list[Any] = []
    update_styles = app.update_styles

    def spy(node: Any, animate: bool = True) -> None:
        restyled.append(node)
        update_styles(node, animate=animate)

    monkeypatch.setattr(app, "update_styles", spy)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await pilot.pause()
        shown = footer_keys(app)
        assert "filter" in {key.action for key in shown}
        await pilot.press("1", "4")  # away and back: same keys, same widgets
        await pilot.pause()
        assert footer_keys(app) == shown
        await pilot.press("j", "k")  # the table's own keys are hidden ones: nothing to rebuild
        await pilot.pause()
        assert footer_keys(app) == shown
        await pilot.press("slash")  # the search box takes printable keys: the screen's letter keys leave the footer
        await pilot.pause()
        assert isinstance(app.screen.focused, Input)
        typing = footer_keys(app)
        assert len(typing) < len(shown) and "filter" not in {key.action for key in typing}
        restyled.clear()
        await pilot.press("escape")
        await pilot.pause()
        back = footer_keys(app)
        assert back == shown  # the hidden keys shown again: no widget mounted
        assert not [node for node in restyled if isinstance(node, FooterKey)]  # new keys mount styled as they stay


async def test_a_screen_shown_again_is_restyled_only_when_the_app_changed_meanwhile(studio, monkeypatch):
    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    resumes: list[bool] = []
    original = FeaturesScreen._on_screen_resume

    def spy(screen: Any, event: events.ScreenResume) -> None:
        resumes.append(event.refresh_styles)
        original(screen, event)

    monkeypatch.setattr(FeaturesScreen, "_on_screen_resume", spy)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await pilot.pause()
        features = app.screen
        await pilot.press("1", "4")
        await pilot.pause()
        assert resumes[-1] is False
        await pilot.press("1")
        await pilot.resize_terminal(100, 40)
        await pilot.press("4")
        await pilot.pause()
        assert resumes[-1] is True
        dark = features.styles.background
        await pilot.press("1")
        await pilot.pause()
        app.theme = "textual-light"  # while the browser is away
        await pilot.pause()
        light = app.screen.styles.background
        await pilot.press("4")
        await pilot.pause()
        assert app.screen is features and light != dark
        assert features.styles.background == light


async def test_full_collections_wait_for_a_pause_in_typing(studio):
    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    saved = gc.get_threshold()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        collector = app.idle_gc
        assert collector.active and gc.get_threshold()[2] > saved[2] and gc.get_freeze_count() > 0
        await pilot.press("4")
        before = collector.last_input
        await pilot.press("j")
        assert collector.last_input > before  # keys count as input
        ran = collector.collections  # the app's own timer may have run one while the screens loaded
        for _ in range(saved[2]):
            gc.collect(1)  # each counts towards the next full collection, as Python's own young collections do
        assert collector.due()
        collector.touch()  # as the key did: on a loaded machine Pilot can return more than IDLE_S after it
        collector.tick()
        assert collector.collections == ran  # a key arrived just now
        collector.last_input -= 10
        collector.tick()
        assert collector.collections == ran + 1 and not collector.due() and gc.get_freeze_count() > 0
        for _ in range(saved[2]):
            gc.collect(1)
        collector.touch()
        collector.tick()
        assert collector.collections == ran + 1  # typing, and the last full collection was just now
        collector.last_full -= speedups.MAX_WAIT_S
        collector.tick()
        assert collector.collections == ran + 2  # typing that never pauses still gets one
    assert gc.get_threshold() == saved and gc.get_freeze_count() == 0


async def test_the_detail_pane_is_drawn_after_the_next_frame_once_for_the_latest_feature(studio, monkeypatch):
    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, FeaturesScreen)
        first = screen.detail_index
        drawn: list[int | None] = []
        original = screen.show_feature

        def spy(index: int | None) -> None:
            drawn.append(index)
            original(index)

        monkeypatch.setattr(screen, "show_feature", spy)
        later = [i for i in range(12) if i != first][:2]
        screen.show_feature_soon(later[0])
        screen.show_feature_soon(later[1])  # the cursor moved on before the frame
        assert drawn == [] and screen.detail_index == first
        await pilot.pause()
        assert drawn == [later[1]] and screen.detail_index == later[1]
        assert f"feature {later[1]}" in str(screen.query_one("#feature-detail").render())


async def test_a_query_key_after_a_pause_applies_at_once_and_a_burst_when_it_stops(studio, monkeypatch):
    populate(studio.paths.home)
    monkeypatch.setattr(features_screen, "DEBOUNCE_S", 5.0)  # every key below comes within one debounce of the last
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await pilot.pause()
        screen = app.screen
        table = screen.query_one(FeatureTable)
        await pilot.press("slash", "c")  # the first key after a pause: no wait
        assert screen.search_text == "c" and table.filter.search == "c"
        await pilot.press("a", "t")  # a burst: shown when it stops, here when Enter cuts the wait short
        assert screen.search_text == "c"
        await pilot.press("enter")
        assert screen.search_text == "cat" and table.filter.search == "cat" and table.has_focus
