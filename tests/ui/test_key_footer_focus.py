"""The key footer when focus moves into and out of a text box: the keys a stock Footer shows, without a rebuild."""

from __future__ import annotations

from typing import Any

import pytest
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Input, Static
from textual.widgets._footer import FooterKey, FooterLabel

from mistudio_tui.app import MiStudioApp
from mistudio_tui.ui.widgets.feature_table import FeatureTable
from mistudio_tui.ui.widgets.key_footer import KeyFooter
from tests.ui.populate import populate

MODES = Binding.Group("Modes")


class Box(Static, can_focus=True):
    """A focusable widget with a key of its own (an Input takes letters, this does not)."""

    BINDINGS = [Binding("x", "noop", "Box key"), Binding("ctrl+e", "noop", "Edit")]

    def action_noop(self) -> None:
        pass


class FooterApp(App[None]):
    """Grouped digit keys, letter keys, a control key and a text box; the footer class is a parameter."""

    BINDINGS = [
        Binding("1", "noop_1", "one", group=MODES),
        Binding("2", "noop_2", "two", group=MODES),
        Binding("3", "noop_2", "two again", group=MODES),  # a second key of an action: the footer draws the first
        Binding("a", "noop_a", "Apply"),
        Binding("b", "noop_b", "Bookmark"),
        Binding("ctrl+s", "noop_s", "Save"),
        Binding("question_mark", "noop_q", "Keys"),
        Binding("z", "noop_z", "Hidden", show=False),
    ]

    def __init__(self, footer: type[Footer], first: str = "#box") -> None:
        super().__init__()
        self.footer_class = footer
        self.first = first

    def compose(self) -> ComposeResult:
        yield Box("box", id="box")
        yield Input(id="text")
        yield self.footer_class()

    def on_mount(self) -> None:
        self.query_one(self.first).focus()

    def action_noop(self) -> None:
        pass


def drawn(app: App[Any]) -> list[tuple[str, str, Any]]:
    """What the footer draws: each key and label on screen, with its text and place."""
    footer = app.screen.query_one(Footer)
    shown = []
    for node in footer.query("FooterKey, FooterLabel"):
        if node.region.area:
            text = f"{node.key}:{node.description}" if isinstance(node, FooterKey) else str(node.render())
            shown.append((type(node).__name__, text, node.region))
    return shown


def shown_actions(app: App[Any]) -> set[str]:
    footer = app.screen.query_one(KeyFooter)
    return {key.action for key in footer.query(FooterKey) if key.region.area}


def active_actions(app: App[Any]) -> set[str]:
    """The actions a stock Footer would draw for the screen's active bindings (and the palette key)."""
    return {
        binding.action
        for _, binding, _, _ in app.screen.active_bindings.values()
        if binding.show or binding.key == app.COMMAND_PALETTE_BINDING
    }


async def footer_steps(footer: type[Footer], first: str) -> list[list[tuple[str, str, Any]]]:
    """What the footer draws as focus moves from `first` to the other widget and back, twice."""
    app = FooterApp(footer, first)
    other = "#text" if first == "#box" else "#box"
    steps = []
    async with app.run_test(size=(100, 10)) as pilot:
        for target in (first, other, first, other):
            app.query_one(target).focus()
            await pilot.pause()
            await pilot.pause()
            steps.append(drawn(app))
    return steps


@pytest.mark.parametrize("first", ["#box", "#text"])  # built with every key, or with the text box's few
async def test_the_footer_draws_what_a_stock_footer_draws_as_focus_moves(first):
    expected = await footer_steps(Footer, first)
    with_box = expected[0] if first == "#box" else expected[1]
    assert expected[0] != expected[1]  # the text box takes the letters and digits: fewer keys
    assert any(kind == "FooterLabel" for kind, _, _ in with_box)  # the digit keys drawn as a group
    assert await footer_steps(KeyFooter, first) == expected


async def test_focus_in_and_out_of_a_text_box_hides_and_shows_keys_without_a_rebuild():
    app = FooterApp(KeyFooter)
    async with app.run_test(size=(100, 10)) as pilot:
        await pilot.pause()
        footer = app.query_one(KeyFooter)
        mounted = list(footer.query("*"))
        before = drawn(app)
        app.query_one(Input).focus()
        await pilot.pause()
        await pilot.pause()
        assert [text for _, text, _ in drawn(app)] == ["ctrl+s:Save", "ctrl+p:palette"]
        assert list(footer.query("*")) == mounted
        app.query_one(Box).focus()
        await pilot.pause()
        await pilot.pause()
        assert drawn(app) == before and list(footer.query("*")) == mounted


async def test_features_footer_follows_focus_into_each_text_box_and_back(studio):
    populate(studio.paths.home)
    app = MiStudioApp(studio, offer_sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await pilot.pause()
        table_keys = shown_actions(app)
        assert table_keys == active_actions(app) and {"filter", "cycle_sort", "toggle_keys"} <= table_keys
        for key, box in (("f", "feature-filter"), ("slash", "feature-search"), ("t", "feature-test")):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen.focused, Input) and app.screen.focused.id == box
            typing = shown_actions(app)
            assert typing == active_actions(app), box
            assert "filter" not in typing and "switch_mode('datasets')" not in typing, box
            await pilot.press("escape")
            await pilot.pause()
            assert isinstance(app.screen.focused, FeatureTable)
            assert shown_actions(app) == table_keys, box
        labels = [str(label.render()) for label in app.screen.query(FooterLabel) if label.region.area]
        assert labels  # the mode keys' group label is back with the table focused
