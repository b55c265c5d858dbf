"""Live redraws that stay out of the user's way: coalesced metric redraws, and updates skipped when nothing changed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Static

from mistudio_tui.ui.widgets.plots import CurvePlot

LIVE_REFRESH_S = 1.0  # at most one live redraw per second
KEY_QUIET_S = 0.5  # and none within this long after a key


_drawn_width: WeakKeyDictionary[CurvePlot, int] = WeakKeyDictionary()


def set_series_if_changed(
    plot: CurvePlot,
    series: list[tuple[str, Any, Any]],
    title: str,
    log_y: bool = False,
    band: tuple[Any, Any, Any] | None = None,
) -> None:
    """`plot.set_series`, skipped when it would draw what the plot already shows (a plotext redraw is costly).

    The plot's width counts too: CurvePlot thins the series to it when they are set.
    """
    width = plot.size.width
    if (plot.series, plot.title, plot.log_y, plot.band, _drawn_width.get(plot)) != (series, title, log_y, band, width):
        plot.set_series(series, title=title, log_y=log_y, band=band)
        _drawn_width[plot] = width


def update_if_changed(widget: Static, content: Any, layout: bool | None = None) -> None:
    """`Static.update`, skipped when the content is what it already shows (each update repaints, maybe relayouts).

    With `layout` None the screen is laid out again only when the new content's height differs (a layout is a full
    reflow and repaint of the screen); a widget not laid out yet always asks for one.
    """
    if widget.content == content:
        return
    if layout is not None:
        widget.update(content, layout=layout)
        return
    width, height = widget.size
    widget.update(content, layout=False)
    if not width or widget.get_content_height(widget.size, widget.app.size, width) != height:
        widget.refresh(layout=True)


class LiveRedraw:
    """Coalesces live metric events into at most one redraw per `interval` s, none within `quiet` s of a key.

    Events that arrive while a redraw must wait are not dropped: one timer redraws once the wait is over, so the last
    batch of a run always reaches the screen. Redraws also wait while the screen is not the current one.
    """

    def __init__(
        self,
        screen: Screen[Any],
        redraw: Callable[[], None],
        interval: float = LIVE_REFRESH_S,
        quiet: float = KEY_QUIET_S,
    ) -> None:
        self.screen = screen
        self.redraw = redraw
        self.interval = interval
        self.quiet = quiet
        self.last_draw = 0.0
        self.last_key = 0.0
        self.last_event = 0.0
        self.pending = False
        self._timer: Timer | None = None

    def key_pressed(self) -> None:
        self.last_key = time.monotonic()

    def drawn(self) -> None:
        """Note a redraw done by other means (a reload): the events before it need no redraw of their own."""
        self.last_draw = time.monotonic()
        self.pending = False

    def typing(self) -> bool:
        """Whether a key came within the last `quiet` seconds (database polls wait too: input first)."""
        return time.monotonic() - self.last_key < self.quiet

    def wait_s(self) -> float:
        """Seconds until a live redraw may run."""
        now = time.monotonic()
        return max(0.0, self.last_draw + self.interval - now, self.last_key + self.quiet - now)

    def request(self) -> None:
        """Metrics arrived: redraw now if allowed, else once the wait is over."""
        self.pending = True
        self.last_event = time.monotonic()
        if self._timer is None:
            self._fire()

    def _fire(self) -> None:
        self._timer = None
        if not self.pending or not self.screen.is_current:
            return  # on_screen_resume reloads the screen
        wait = self.wait_s()
        if wait > 0:
            self._timer = self.screen.set_timer(wait, self._fire)
            return
        self.pending = False
        self.last_draw = time.monotonic()
        self.redraw()
