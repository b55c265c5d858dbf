"""Steering: side-by-side steered and normal generation (not available yet)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from mistudio_tui.ui.screens.base import StudioScreen


class SteeringScreen(StudioScreen):
    """Placeholder until steering lands: says so plainly rather than faking output."""

    TITLE_TEXT = "Steering"

    def compose_body(self) -> ComposeResult:
        yield Static(
            "Steering is not available yet.\n\n"
            "It will generate normal and steered completions side by side, with features picked from the "
            "Features screen, strengths in units of each feature's max activation, and add or clamp methods.",
            classes="placeholder",
        )
