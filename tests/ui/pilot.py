"""Helpers for Pilot tests."""

from __future__ import annotations

import time
from typing import Any


async def wait_for(pilot: Any, condition: Any, timeout: float = 10.0) -> None:
    """Pause the pilot until `condition()` holds, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)
