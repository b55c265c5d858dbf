"""The UI's speed-ups, in one place: what each buys and where it was measured (figures in `benchmarks/RESULTS.md`).

| speed-up                | what it buys                                                 | measured by              |
|-------------------------|--------------------------------------------------------------|--------------------------|
| `lazy_screen`           | a mode's screen module loads when first opened: first frame  | `benchmarks/startup.py`  |
|                         | 0.60 s, a bare Textual app 0.31 s (goal < 1 s)               |                          |
| `start_startup_probe`   | no speed by itself: how `startup.py` times the first frame   | `benchmarks/startup.py`  |
|                         | and proves torch stayed out (MISTUDIO_STARTUP_PROBE)         |                          |
| `IdleCollector`         | full garbage collections (50-250 ms each) wait for a pause   | `features_browser.py`    |
|                         | in input: 0 inside the feature browser's measured keys       |                          |
| `KeepStylesOnResume`    | a screen shown again unchanged is not restyled: ~50 ms off   | `features_browser.py`    |
|                         | each return (reopen: 62 ms median)                           |                          |

RESULTS.md sections: "Start-up and job protocol" (startup.py), "Keystroke to frame" (features_browser.py, metrics.py).
Other measured UI work stays beside the code it shapes: the coalesced live redraws (`ui/live_redraw.py`, measured by
`benchmarks/metrics.py`) and the footer that hides keys instead of rebuilding (`ui/widgets/key_footer.py`).

Idle garbage collection, in more words: A Textual app holds ~100,000 objects once a few screens are built, and
rendering churns through more (strips, caches, layout fractions), so Python's automatic full collections come every
few seconds of use and each pauses the UI for 50-250 ms, often in the middle of a keystroke. Here automatic full
collections are switched off, and a timer runs one when it is due by Python's own count and the user has paused:
everything is unfrozen, collected, and what survives is frozen again, so a collection that cannot wait (input that
never pauses for MAX_WAIT_S) scans only the objects made since. Young collections stay automatic.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import sys
import time
from typing import Any

from textual import events
from textual.app import App
from textual.message import Message
from textual.screen import Screen

HEAVY_MODULES = ("torch", "transformers", "datasets")


def lazy_screen(module: str, name: str) -> Screen[Any]:
    """Import a mode's screen module on first use (keeps the first frame fast)."""
    screen_class: type[Screen[Any]] = getattr(importlib.import_module(f"mistudio_tui.ui.screens.{module}"), name)
    return screen_class()


def start_startup_probe(app: App[Any]) -> None:
    """For `benchmarks/startup.py`: when MISTUDIO_STARTUP_PROBE names a file, record the first frame there and exit."""
    path = os.environ.get("MISTUDIO_STARTUP_PROBE")
    if path:
        app.call_after_refresh(_write_startup_probe, app, path)


def _write_startup_probe(app: App[Any], path: str) -> None:
    heavy = [m for m in HEAVY_MODULES if m in sys.modules]
    with open(path, "w") as fh:
        json.dump({"first_frame_at": time.time(), "heavy_modules": heavy}, fh)
    app.exit()


class KeepStylesOnResume(Screen[None]):
    """A screen that, shown again, skips Textual's restyle of every widget when nothing it is styled by changed."""

    _styled_for: tuple[Any, ...] | None = None

    def style_inputs(self) -> tuple[Any, ...]:
        """The app state a suspended screen's styles depend on (a stylesheet or theme change is handled by Textual)."""
        return self.app.app_focus, self.app.size, self.app.theme

    def on_screen_suspend(self) -> None:
        self._styled_for = self.style_inputs()

    def post_message(self, message: Message) -> bool:
        if isinstance(message, events.ScreenResume) and self._styled_for == self.style_inputs():
            message.refresh_styles = False  # restyling every widget of a screen shown again costs ~50 ms for nothing
        return super().post_message(message)


IDLE_S = 0.5  # no input for this long: a due full collection may run
CHECK_S = 0.25
MAX_WAIT_S = 20.0  # input that never pauses still gets a full collection this often
NEVER = 1_000_000  # a gen-2 threshold automatic collections never reach


class IdleCollector:
    """Runs the full garbage collections of an app when its user is not typing."""

    def __init__(self) -> None:
        self.last_input = time.monotonic()
        self.last_full = time.monotonic()
        self.collections = 0
        self._saved: tuple[int, int, int] | None = None
        self._timer: Any = None

    @property
    def active(self) -> bool:
        return self._saved is not None

    def start(self, app: Any) -> None:
        """Freeze what exists now, take over full collections, and check every CHECK_S on `app`'s timer."""
        if self._saved is not None:
            return
        gc.freeze()  # not collected first (~100 ms): the first pause collects everything
        self._saved = gc.get_threshold()
        gc.set_threshold(self._saved[0], self._saved[1], NEVER)
        self._timer = app.set_interval(CHECK_S, self.tick, name="idle-gc")

    def stop(self) -> None:
        """Hand full collections back to Python (the app is closing)."""
        if self._saved is None:
            return
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        gc.set_threshold(*self._saved)
        gc.unfreeze()
        self._saved = None

    def touch(self) -> None:
        """A key or mouse event arrived."""
        self.last_input = time.monotonic()

    def due(self) -> bool:
        """Whether Python would have run a full collection by now (gen-1 collections since the last full one)."""
        return self._saved is not None and gc.get_count()[2] >= self._saved[2]

    def tick(self) -> None:
        now = time.monotonic()
        if not self.due():
            return
        if now - self.last_input >= IDLE_S:
            gc.unfreeze()
            gc.collect()
            gc.freeze()
        elif now - self.last_full >= MAX_WAIT_S:
            gc.collect()  # the objects frozen at the last pause are not scanned
        else:
            return
        self.last_full = time.monotonic()
        self.collections += 1
