"""Full garbage collections off the keystroke path: they run while no key or mouse event is arriving.

A Textual app holds ~100,000 objects once a few screens are built, and rendering churns through more (strips, caches,
layout fractions), so Python's automatic full collections come every few seconds of use and each pauses the UI for
50-250 ms, often in the middle of a keystroke. Here automatic full collections are switched off, and a timer runs one
when it is due by Python's own count and the user has paused: everything is unfrozen, collected, and what survives is
frozen again, so a collection that cannot wait (input that never pauses for MAX_WAIT_S) scans only the objects made
since. Young collections stay automatic.
"""

from __future__ import annotations

import gc
import time
from typing import Any

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
