"""The keystroke-to-frame probe: it waits for the key's handler, catches the frame after it, and sees its content."""

from __future__ import annotations

import asyncio
import time
from types import ModuleType

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Label

from tests.benchmarks.scripts import load_script


def load_probe() -> ModuleType:
    return load_script("frame_latency")


class Other(Screen[None]):
    def compose(self) -> ComposeResult:
        yield Label("SECOND SCREEN HERE")


class Answer(Message):
    """What a key's handler posts for a later handler to draw."""


class KeysApp(App[None]):
    BINDINGS = [
        Binding("a", "answer", "Answer"),
        Binding("s", "slow", "Slow"),
        Binding("c", "change", "Change"),
        Binding("o", "other", "Other"),
        Binding("d", "debounced", "Debounced"),
        Binding("r", "remove", "Remove"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.finished: float = 0.0
        self.search_result = ""

    def compose(self) -> ComposeResult:
        yield Label("first text", id="text")

    async def action_slow(self) -> None:
        await asyncio.sleep(0.2)
        self.finished = time.perf_counter()

    def action_answer(self) -> None:
        self.post_message(Answer())

    async def on_answer(self, message: Answer) -> None:
        await asyncio.sleep(0.1)
        self.query_one("#text", Label).update("ANSWERED LATER")

    def action_change(self) -> None:
        self.query_one("#text", Label).update("CHANGED BY KEY")

    def action_other(self) -> None:
        self.push_screen(Other())

    def action_remove(self) -> None:
        label = self.query_one("#text", Label)
        label.update("about to go")
        label.remove()

    def action_debounced(self) -> None:
        self.set_timer(0.15, self.show_result)

    def show_result(self) -> None:
        self.search_result = "found it"
        self.query_one("#text", Label).update("DEBOUNCED RESULT")


async def test_a_slow_handler_is_measured_at_least_as_long_as_it_sleeps_and_an_unbound_key_is_faster():
    probe = load_probe()
    app = KeysApp()
    async with app.run_test(size=(60, 10)) as pilot:
        await pilot.pause()
        unbound = await probe.key_to_frame(pilot, "x")
        before = time.perf_counter()
        slow = await probe.key_to_frame_detail(pilot, "s")
        assert app.finished > before
        assert slow["ms"] >= 200.0
        assert slow["handled_ms"] >= 200.0 and slow["ms"] >= slow["handled_ms"]
        assert unbound < slow["ms"]


async def test_the_frame_after_a_key_shows_what_its_handler_changed():
    probe = load_probe()
    app = KeysApp()
    async with app.run_test(size=(60, 10)) as pilot:
        await pilot.pause()
        result = await probe.key_to_frame_detail(pilot, "c")
        assert "CHANGED BY KEY" in result["frame"]
        assert result["ms"] >= result["handled_ms"] >= 0
        frames = probe.frame_probe(app).frames
        await probe.key_to_frame(pilot, "x")
        assert probe.frame_probe(app).frames > frames


async def test_messages_posted_by_a_key_handler_are_part_of_its_handling():
    probe = load_probe()
    app = KeysApp()
    async with app.run_test(size=(60, 10)) as pilot:
        await pilot.pause()
        result = await probe.key_to_frame_detail(pilot, "a")
        assert result["handled_ms"] >= 100.0
        assert "ANSWERED LATER" in result["frame"]


class TableApp(App[None]):
    """A table whose highlighted row is described by a label: the cursor key answers through RowHighlighted."""

    def compose(self) -> ComposeResult:
        yield DataTable(id="table", cursor_type="row")
        yield Label("no row yet", id="row")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("n")
        for i in range(5):
            table.add_row(str(i))
        table.focus()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.query_one("#row", Label).update(f"ROW {event.cursor_row} SHOWN")


async def test_the_frame_paints_what_a_message_handler_refreshed_not_just_the_cursor():
    probe = load_probe()
    app = TableApp()
    async with app.run_test(size=(40, 10)) as pilot:
        await pilot.pause()
        table = app.query_one(DataTable)
        for key in ("down", "down", "up"):
            result = await probe.key_to_frame_detail(pilot, key)
            assert f"ROW {table.cursor_row} SHOWN" in result["frame"]


async def test_a_key_that_pushes_a_screen_is_answered_by_a_frame_of_that_screen():
    probe = load_probe()
    app = KeysApp()
    async with app.run_test(size=(60, 10)) as pilot:
        await pilot.pause()
        result = await probe.key_to_frame_detail(pilot, "o")
        assert isinstance(app.screen, Other)
        assert "SECOND SCREEN HERE" in result["frame"]


async def test_done_waits_for_a_debounced_result_and_its_frame():
    probe = load_probe()
    app = KeysApp()
    async with app.run_test(size=(60, 10)) as pilot:
        await pilot.pause()
        result = await probe.key_to_frame_detail(pilot, "d", done=lambda: app.search_result == "found it")
        assert result["ms"] >= 150.0 > result["handled_ms"]
        assert "DEBOUNCED RESULT" in result["frame"]


async def test_a_widget_refreshed_then_removed_by_the_handler_does_not_hold_the_frame_back():
    probe = load_probe()
    app = KeysApp()
    async with app.run_test(size=(60, 10)) as pilot:
        await pilot.pause()
        await probe.key_to_frame(pilot, "r", timeout=2.0)
        assert not app.query("#text")


async def test_pilot_round_trip_is_kept_for_comparison():
    probe = load_probe()
    app = KeysApp()
    async with app.run_test(size=(60, 10)) as pilot:
        await pilot.pause()
        assert await probe.pilot_round_trip(pilot, "s") >= 200.0
