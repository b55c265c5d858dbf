"""Parse counts people type ('4096', '1e6', '100k', '2.5M') and print byte sizes."""

from __future__ import annotations

import math

SUFFIXES = {"k": 1_000, "m": 1_000_000, "b": 1_000_000_000, "g": 1_000_000_000}


def parse_count(text: str | int, what: str = "value") -> int:
    """A non-negative whole number from text with optional k/M/B suffix; ValueError naming `what`."""
    if isinstance(text, int):
        value = text
    else:
        cleaned = str(text).strip().replace(",", "").replace("_", "").lower()
        scale = 1
        if cleaned and cleaned[-1] in SUFFIXES:
            scale, cleaned = SUFFIXES[cleaned[-1]], cleaned[:-1]
        try:
            number = float(cleaned) * scale
        except ValueError:
            raise ValueError(f"{what}: {text!r} is not a count (examples: 4096, 1e6, 100k, 2M)") from None
        if not math.isfinite(number):
            raise ValueError(f"{what}: {text!r} is not a finite count")
        if number != int(number):
            raise ValueError(f"{what}: {text!r} is not a whole number")
        value = int(number)
    if value < 0:
        raise ValueError(f"{what}: {text!r} must not be negative")
    return value


def format_bytes(n: float | None) -> str:
    """A byte count for people: 1536 -> '1.5 KiB'."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
