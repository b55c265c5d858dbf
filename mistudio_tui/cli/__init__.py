"""Command line: `mistudio` opens the TUI; `mistudio <noun> <verb>` runs the same work headless."""

from __future__ import annotations

from mistudio_tui.cli.main import main

__all__ = ["main"]
