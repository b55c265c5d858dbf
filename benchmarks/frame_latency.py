"""Keystroke-to-frame latency for a Textual app driven by a Pilot.

`key_to_frame` posts one key event to the app, as the terminal driver's input thread does, and returns the time until
the first frame the app emits after the key has been handled:

- "emitted": the screen's update cycle called `App._display` with a compositor update. In headless mode Textual skips
  turning that update into terminal bytes; the probe does it (`render_segments`), as a real driver would, so a frame
  here costs what it costs on a terminal. The probe stays attached for the app's life, so frames caused by other
  work (a run streaming metrics) pay that cost too.
- "handled": no handler of the key, or of a message one of those handlers posted, is queued or running. A key travels
  app → focused widget → its ancestors → app (bindings), and its handlers often answer through messages (a DataTable's
  cursor key posts RowHighlighted, whose handler redraws the detail pane): the probe records every queue such a
  message is posted to and every dispatch of it that returns, so "handled" holds whether a widget stops the key or it
  reaches the app's bindings, whichever binding or `key_` method took it. Messages count as the key's when posted
  from the task running one of its handlers, while it runs; Textual's own mergeable messages (Update, Layout, Prompt)
  are left out (they may be merged away undispatched; the frame is what shows them). Timers and workers a handler
  starts are not followed: pass `done` to wait for their result (a debounced search).
- "after": the frame also paints every widget those handlers refreshed (a refresh reaches the screen two message hops
  later, so an unrelated frame in between does not count); a screen's layout pass counts as painting all of them.
- a key with no visible effect still gets its frame: once handled, the probe marks one cell of the smallest visible
  widget dirty, so the figure is the time until the app's next update cycle, never a wait for unrelated repaints.

Pilot's `press` + `pause` measure something else: they return when the whole app is idle (every queue empty, all
animations done), which never happens while metrics stream; `pilot_round_trip` keeps that figure for comparison.
"""

from __future__ import annotations

import asyncio
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from typing import Any

from textual import events
from textual._compositor import Compositor, CompositorUpdate
from textual.app import App
from textual.dom import NoScreen
from textual.geometry import Region
from textual.keys import REPLACED_KEYS, _character_to_key, _get_unicode_name_from_key
from textual.message import Message
from textual.message_pump import MessagePump
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widget import Widget

STALE_FRAMES = 3  # frames to wait for a refreshed widget that never gets painted before taking the frame anyway


class FrameProbe:
    """Records when an app emits frames (and what they contain), encoding each as a terminal driver would."""

    def __init__(self, app: App[Any]) -> None:
        self.app = app
        self.frames = 0
        self.last_frame_at = 0.0
        self.last_frame = ""
        self.waiters: list[Callable[[float, str], None]] = []
        self._display = app._display
        app._display = self._wrapped_display  # type: ignore[method-assign]

    def _wrapped_display(self, screen: Any, renderable: Any) -> None:
        drawn = renderable is not None and not self.app._batch_count and self.app._running and not self.app._closed
        self._display(screen, renderable)
        if not drawn:
            return
        text = renderable.render_segments(self.app.console) if isinstance(renderable, CompositorUpdate) else ""
        now = time.perf_counter()
        self.frames += 1
        self.last_frame_at, self.last_frame = now, text
        for waiter in list(self.waiters):
            waiter(now, text)


def frame_probe(app: App[Any]) -> FrameProbe:
    """The app's frame probe, attached on first use (attach it before a scenario starts so every frame is encoded)."""
    probe = getattr(app, "_bench_frame_probe", None)
    if probe is None:
        probe = FrameProbe(app)
        app._bench_frame_probe = probe  # type: ignore[attr-defined]
    return probe


class _KeyTrace:
    """The key event and the messages its handlers posted, with the queues they still sit in."""

    def __init__(self, message: Message) -> None:
        self.messages: set[int] = {id(message)}
        self.keep: list[Message] = [message]  # ids stay unique while the objects live
        self.queued: dict[int, list[MessagePump]] = {}
        self.running: list[asyncio.Task[Any] | None] = []
        self.unpainted: set[Widget] = set()  # widgets its handlers refreshed that no frame has painted yet
        self.thread = threading.get_ident()
        self.handled_at = 0.0
        self.handled = asyncio.Event()

    def traces(self, message: Message) -> bool:
        return id(message) in self.messages

    def in_handler(self) -> bool:
        """Whether the code running now is one of the key's handlers."""
        return threading.get_ident() == self.thread and asyncio.current_task() in self.running

    def adopt(self, message: Message) -> bool:
        """Whether `message`, posted now, is part of the key's handling (posted by one of its handlers)."""
        if self.traces(message):
            return True
        if not self.in_handler():
            return False
        if type(message).can_replace is not Message.can_replace:
            return False  # Textual's own update/layout/prompt messages, which may be merged away unhandled
        self.messages.add(id(message))
        self.keep.append(message)
        return True

    def settle(self) -> None:
        """Mark the key handled once nothing of it is queued or running (queues of closed pumps never run)."""
        for key, pumps in list(self.queued.items()):
            pumps[:] = [pump for pump in pumps if not (pump._closed or pump._closing)]
            if not pumps:
                del self.queued[key]
        if not self.queued and not self.running and not self.handled.is_set():
            self.handled_at = time.perf_counter()
            self.handled.set()


@contextmanager
def _traced(trace: _KeyTrace) -> Iterator[None]:
    """Patch message posting and dispatch so that `trace` sees every hop of the key and of what its handlers post,
    and widget refreshes and screen updates so that it knows which of the widgets they refreshed are painted."""
    post, dispatch = MessagePump.post_message, MessagePump._dispatch_message
    refresh, update_widgets, refresh_layout = Widget.refresh, Compositor.update_widgets, Screen._refresh_layout

    def traced_refresh(widget: Widget, *regions: Region, repaint: bool = True, **kwargs: Any) -> Widget:
        if repaint and trace.in_handler():
            trace.unpainted.add(widget)
        return refresh(widget, *regions, repaint=repaint, **kwargs)

    def traced_update_widgets(compositor: Compositor, widgets: AbstractSet[Widget]) -> None:
        trace.unpainted.difference_update(widgets)
        update_widgets(compositor, widgets)

    def traced_refresh_layout(screen: Screen[Any], *args: Any, **kwargs: Any) -> None:
        refresh_layout(screen, *args, **kwargs)  # a layout pass paints the screen, with what it resized meanwhile
        trace.unpainted = {w for w in trace.unpainted if not shown_on(w, screen)}

    def traced_post(pump: MessagePump, message: Message) -> bool:
        queued = post(pump, message)
        if queued and trace.adopt(message):
            trace.queued.setdefault(id(message), []).append(pump)
        return queued

    async def traced_dispatch(pump: MessagePump, message: Message) -> None:
        if not trace.traces(message):
            await dispatch(pump, message)
            return
        pumps = trace.queued.get(id(message), [])
        if pump in pumps:
            pumps.remove(pump)
        if not pumps:
            trace.queued.pop(id(message), None)
        task = asyncio.current_task()
        trace.running.append(task)
        try:
            await dispatch(pump, message)
        finally:
            trace.running.remove(task)
            trace.settle()

    patches = [
        (MessagePump, "post_message", post, traced_post),
        (MessagePump, "_dispatch_message", dispatch, traced_dispatch),
        (Widget, "refresh", refresh, traced_refresh),
        (Compositor, "update_widgets", update_widgets, traced_update_widgets),
        (Screen, "_refresh_layout", refresh_layout, traced_refresh_layout),
    ]
    for owner, name, _, patched in patches:
        setattr(owner, name, patched)
    try:
        yield
    finally:
        for owner, name, original, _ in patches:
            setattr(owner, name, original)


def shown_on(widget: Widget, screen: Screen[Any]) -> bool:
    """Whether `widget` is part of `screen` (False once it has left the DOM)."""
    try:
        return widget is screen or (widget.is_attached and widget.screen is screen)
    except NoScreen:
        return False


def nudge(screen: Screen[Any]) -> None:
    """Make the screen emit a frame soon: repaint one cell of its smallest visible widget (it renders again)."""
    visible = [(w, r) for w, (r, *_) in screen._compositor.visible_widgets.items() if r.area and w is not screen]
    if visible:
        widget, _ = min(visible, key=lambda item: item[1].area)
        widget.refresh(Region(0, 0, 1, 1))


def key_event(key: str) -> events.Key:
    """The Key event a terminal sends for `key` (same naming rules as `Pilot.press`)."""
    if len(key) == 1 and not key.isalnum():
        key = _character_to_key(key)
    try:
        char: str | None = unicodedata.lookup(_get_unicode_name_from_key(REPLACED_KEYS.get(key, key)))
    except KeyError:
        char = key if len(key) == 1 else None
    return events.Key(key, char)


async def key_to_frame(
    pilot: Pilot[Any], key: str, done: Callable[[], bool] | None = None, timeout: float = 5.0
) -> float:
    """Milliseconds from posting `key` to the first frame emitted after it was handled (and after `done()` holds)."""
    result = await key_to_frame_detail(pilot, key, done, timeout)
    return result["ms"]


async def key_to_frame_detail(
    pilot: Pilot[Any], key: str, done: Callable[[], bool] | None = None, timeout: float = 5.0
) -> dict[str, Any]:
    """`key_to_frame` with its parts: ms, handled_ms (key handled), the frame's terminal text, and the widgets a
    handler refreshed that the frame still missed (empty unless STALE_FRAMES frames went by without them)."""
    app = pilot.app
    probe = frame_probe(app)
    loop = asyncio.get_running_loop()
    frame: asyncio.Future[tuple[float, str]] = loop.create_future()
    event = key_event(key)
    event.set_sender(app)
    trace = _KeyTrace(event)

    def painted() -> bool:
        """Whether every widget the key's handlers refreshed has been painted (or can no longer be)."""
        trace.unpainted = {w for w in trace.unpainted if w.display and shown_on(w, app.screen)}
        return not trace.unpainted

    stale: list[float] = []  # frames after the key was handled that still missed a refreshed widget

    def on_frame(at: float, text: str) -> None:
        if frame.done() or not trace.handled.is_set() or (done is not None and not done()):
            return
        if painted() or len(stale) >= STALE_FRAMES:
            frame.set_result((at, text))
        else:  # a refresh Textual never paints (it happens): nudge for more frames, then take this one
            stale.append(at)
            app.call_later(nudge, app.screen)

    async def settle() -> tuple[float, str]:
        while not trace.handled.is_set():
            try:
                await asyncio.wait_for(trace.handled.wait(), 0.05)
            except TimeoutError:
                trace.settle()
        if done is not None:
            while not done():
                await asyncio.sleep(0.002)
        if not frame.done():
            nudge(app.screen)
        return await frame

    with _traced(trace):
        probe.waiters.append(on_frame)
        try:
            start = time.perf_counter()
            app.post_message(event)
            try:
                at, text = await asyncio.wait_for(settle(), timeout)
            except TimeoutError:
                state = "handled" if trace.handled.is_set() else "not handled"
                if trace.unpainted:
                    state += "; not painted: " + ", ".join(sorted(repr(w) for w in trace.unpainted))
                raise TimeoutError(f"key {key!r}: no frame within {timeout:g} s ({state})") from None
        finally:
            probe.waiters.remove(on_frame)
    return {
        "ms": (at - start) * 1e3,
        "handled_ms": (trace.handled_at - start) * 1e3,
        "frame": text,
        "unpainted": sorted(repr(w) for w in trace.unpainted),
    }


async def pilot_round_trip(pilot: Pilot[Any], key: str) -> float:
    """Milliseconds of the old method: `await pilot.press(key); await pilot.pause()` (waits for the app to be idle)."""
    start = time.perf_counter()
    await pilot.press(key)
    await pilot.pause()
    return (time.perf_counter() - start) * 1e3
