"""Short human formats for table cells: counts, sizes, durations, progress, a coloured status."""

from __future__ import annotations

import datetime as dt

from rich.text import Text


def count(n: float | int | None) -> str:
    """12345 -> '12.3k'."""
    if n is None:
        return "-"
    n = float(n)
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n:.0f}" if n == int(n) else f"{n:.3g}"


def num(x: float | None, digits: int = 3) -> str:
    """A float with `digits` significant digits, '-' for None."""
    if x is None:
        return "-"
    return f"{x:.{digits}g}"


def num_fit(x: float | None, width: int, digits: int = 3) -> str:
    """`num` in at most `width` characters: fewer digits, or a short exponent (1.8e-4), never a cut '0.'."""
    if x is None:
        return "-"
    text = ""
    for d in range(digits, 0, -1):
        mantissa, exponent = f"{x:.{d - 1}e}".split("e")
        for text in (f"{x:.{d}g}", f"{mantissa}e{int(exponent)}"):
            if len(text) <= width:
                return text
    return text


def middle(text: str, width: int) -> str:
    """`text` cut to `width` in the middle, keeping more of the end, where names that share a start differ."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    head = (width - 1) * 2 // 5
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


def duration(seconds: float | None) -> str:
    """95 -> '1m35s'."""
    if seconds is None or seconds < 0:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def since(when: dt.datetime | None, now: dt.datetime | None = None) -> float | None:
    """Seconds from `when` (naive UTC) to now."""
    if when is None:
        return None
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return (now - when).total_seconds()


def bar(fraction: float | None, width: int = 12) -> str:
    """A text progress bar: '███████░░░░░'."""
    if fraction is None:
        return "·" * width
    fraction = min(max(fraction, 0.0), 1.0)
    full = round(fraction * width)
    return "█" * full + "░" * (width - full)


STATUS_STYLE = {
    "running": "bold green",
    "queued": "yellow",
    "completed": "dim",
    "failed": "bold red",
    "cancelled": "magenta",
    "paused": "cyan",
    "interrupted": "red",
}


def status_text(status: str) -> Text:
    """A job or run status in its colour."""
    return Text(status, style=STATUS_STYLE.get(status, ""))
