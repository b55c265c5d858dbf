"""A Footer that rebuilds its keys only when the keys it shows change."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._footer import FooterKey


class KeyFooter(Footer):
    """Textual's Footer, minus the rebuild on every focus move and screen switch that leaves its keys as they were,
    and with keys that mount without restyling themselves twice.

    The stock Footer recomposes (removes and mounts a widget per key, then restyles them) each time the screen's
    bindings are refreshed; most refreshes (focus moving between widgets whose own keys are hidden, a screen shown
    again) change nothing it shows.
    """

    def __init__(self, *children: Widget, **kwargs: Any) -> None:
        super().__init__(*children, **kwargs)
        self._composed_keys: tuple[Any, ...] | None = None

    def shown_keys(self, screen: Screen) -> tuple[Any, ...]:
        """Everything the footer's keys are drawn from: each shown binding, its state, and the footer's options."""
        app = self.app
        keys: Iterable[Any] = (
            (
                binding.key,
                binding.action,
                binding.description,
                binding.group,
                binding.tooltip,
                app.get_key_display(binding),
                enabled,
                tooltip,
            )
            for (_, binding, enabled, tooltip) in screen.active_bindings.values()
            if binding.show or binding.key == app.COMMAND_PALETTE_BINDING
        )
        return (self.show_command_palette, self.combine_groups, app.ENABLE_COMMAND_PALETTE, *keys)

    def compose(self) -> ComposeResult:
        if self._bindings_ready:
            self._composed_keys = self.shown_keys(self.screen)
        for widget in super().compose():
            if isinstance(widget, FooterKey):
                # A key starts compact and is then bound to the footer's style: two restyles per key on mount, ~60 ms
                # for a footer. Given its final style up front, its watcher and the binding change nothing.
                compact = True if widget.has_class("-command-palette") else self.compact  # the palette key is unbound
                widget.set_reactive(FooterKey.compact, compact)
                widget.set_class(compact, "-compact", update=False)
            yield widget

    def bindings_changed(self, screen: Screen) -> None:
        if (
            self._composed_keys is not None
            and self.is_attached
            and screen is self.screen
            and self.shown_keys(screen) == self._composed_keys
        ):
            return
        super().bindings_changed(screen)
