"""A Footer that rebuilds its keys only when the keys it shows change, and hides keys rather than rebuild."""

from __future__ import annotations

from itertools import groupby
from typing import Any, NamedTuple

from textual._resolve import resolve_box_models
from textual.app import ComposeResult
from textual.geometry import NULL_OFFSET, Region, Size
from textual.layout import ArrangeResult, Layout, WidgetPlacement
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._footer import FooterKey, FooterLabel, KeyGroup


class ShownKey(NamedTuple):
    """One active binding as the footer draws it."""

    key: str
    action: str
    description: str
    group: Any
    tooltip: str
    key_display: str
    show: bool
    enabled: bool
    active_tooltip: str


class FooterKeys(NamedTuple):
    """Everything the footer's widgets are drawn from: its options and the screen's shown keys."""

    options: tuple[bool, ...]
    keys: tuple[ShownKey, ...]
    palette: ShownKey | None


class WrapLayout(Layout):
    """Children left to right, wrapping to the next line where the next one would not fit, on at most `max_lines`.

    When they need more lines, the least needed go first: the command palette key (ctrl+p and ? still list it),
    then the label of the mode keys' group, then the group itself (1…6 and j still switch screens).
    """

    name = "wrap"

    def __init__(self, max_lines: int = 3) -> None:
        super().__init__()
        self.max_lines = max_lines

    def arrange(self, parent: Widget, children: list[Widget], size: Size, greedy: bool = True) -> ArrangeResult:
        parent.pre_layout(self)
        boxes = resolve_box_models(
            [child.styles.width for child in children],
            children,
            size,
            parent.app.viewport_size,
            Size(0, 0),
            resolve_dimension="width",
            greedy=False,
        )
        widths = {child: int(box.width) for child, box in zip(children, boxes, strict=True)}
        shown = list(children)
        droppable = [c for c in children if c.has_class("-command-palette")]
        droppable += [c for c in children if isinstance(c, FooterLabel)]
        droppable += [c for c in children if isinstance(c, KeyGroup)]
        lines = self._lines(shown, widths, size.width)
        while size.width and len(lines) > self.max_lines and droppable:
            shown.remove(droppable.pop(0))
            lines = self._lines(shown, widths, size.width)
        placements: list[WidgetPlacement] = []
        for y, line in enumerate(lines[: self.max_lines]):
            x = 0
            for child in line:
                margin = child.styles.margin
                region = Region(x + margin.left, y, widths[child], 1)
                placements.append(WidgetPlacement(region, NULL_OFFSET, margin, child))
                x += margin.left + widths[child] + margin.right
        return placements

    @staticmethod
    def _lines(children: list[Widget], widths: dict[Widget, int], width: int) -> list[list[Widget]]:
        """`children` split into lines no wider than `width` (a key group stays on the line of its label)."""
        lines: list[list[Widget]] = [[]]
        x = 0
        for i, child in enumerate(children):
            need = child.styles.margin.width + widths[child]
            if isinstance(child, KeyGroup) and i + 1 < len(children) and isinstance(children[i + 1], FooterLabel):
                need += children[i + 1].styles.margin.width + widths[children[i + 1]]
            if x and width and x + need > width:
                lines.append([])
                x = 0
            lines[-1].append(child)
            x += child.styles.margin.width + widths[child]
        return lines


class KeyFooter(Footer):
    """Textual's Footer, minus the rebuild on every focus move and screen switch that leaves its keys as they were,
    with keys that mount without restyling themselves twice, and hiding keys instead of rebuilding when fewer show.

    The stock Footer recomposes (removes and mounts a widget per key, then restyles them) each time the screen's
    bindings are refreshed; most refreshes (focus moving between widgets whose own keys are hidden, a screen shown
    again) change nothing it shows, and focus entering a text box only drops the keys the box takes (letters,
    digits): those widgets are hidden, and shown again when focus leaves, with no widget mounted either way. Any other
    change (a key enabled or disabled, a key the footer lacks) recomposes as the stock Footer does.
    """

    def __init__(self, *children: Widget, **kwargs: Any) -> None:
        super().__init__(*children, **kwargs)
        self._composed_keys: FooterKeys | None = None
        self._shown_keys: FooterKeys | None = None
        self._wrap = WrapLayout()

    @property
    def layout(self) -> Layout:
        """Keys that do not fit one line wrap onto more, so every key the screen's hints mention shows."""
        return self._wrap

    def shown_keys(self, screen: Screen[Any]) -> FooterKeys:
        """The footer's options and each binding it may show, with its state."""
        app = self.app
        keys = tuple(
            ShownKey(
                binding.key,
                binding.action,
                binding.description,
                binding.group,
                binding.tooltip,
                app.get_key_display(binding),
                binding.show,
                enabled,
                tooltip,
            )
            for (_, binding, enabled, tooltip) in screen.active_bindings.values()
            if binding.show or binding.key == app.COMMAND_PALETTE_BINDING
        )
        palette = None
        if self.show_command_palette and app.ENABLE_COMMAND_PALETTE:
            palette = next((key for key in keys if key.key == app.COMMAND_PALETTE_BINDING), None)
        return FooterKeys((self.show_command_palette, self.combine_groups, app.ENABLE_COMMAND_PALETTE), keys, palette)

    def compose(self) -> ComposeResult:
        if self._bindings_ready:
            self._composed_keys = self._shown_keys = self.shown_keys(self.screen)
        for widget in super().compose():
            if isinstance(widget, FooterKey):
                # A key starts compact and is then bound to the footer's style: two restyles per key on mount, ~60 ms
                # for a footer. Given its final style up front, its watcher and the binding change nothing.
                compact = True if widget.has_class("-command-palette") else self.compact  # the palette key is unbound
                widget.set_reactive(FooterKey.compact, compact)
                widget.set_class(compact, "-compact", update=False)
            yield widget

    def bindings_changed(self, screen: Screen[Any]) -> None:
        if self._composed_keys is not None and self.is_attached and screen is self.screen:
            keys = self.shown_keys(screen)
            if keys == self._shown_keys or self._show_only(keys):
                return
        super().bindings_changed(screen)

    def _show_only(self, keys: FooterKeys) -> bool:
        """Show `keys` by hiding some of the composed widgets; False when they need widgets the footer lacks."""
        composed = self._composed_keys
        if composed is None or keys.options != composed.options:
            return False
        items = footer_items(composed)
        widgets = self._item_widgets(items)
        if widgets is None:
            return False
        wanted = iter(footer_items(keys))
        next_wanted = next(wanted, None)
        visible: list[bool] = []
        for item in items:
            visible.append(item == next_wanted)
            if visible[-1]:
                next_wanted = next(wanted, None)
        if next_wanted is not None:
            return False
        for item_widgets, show in zip(widgets, visible, strict=True):
            for widget in item_widgets:
                widget.display = show
        self.screen.refresh(layout=True)  # lay out in the frame that shows the focus move, not in a frame after it
        self._shown_keys = keys
        return True

    def _item_widgets(self, items: list[tuple[ShownKey, ...]]) -> list[list[Widget]] | None:
        """The mounted widgets of each item (a key, or a group's keys and label); None if they do not line up."""
        children = list(self.children)
        widgets: list[list[Widget]] = []
        for item in items:
            if len(item) == 1:
                node = children.pop(0) if children else None
                if not isinstance(node, FooterKey) or (node.key, node.action) != (item[0].key, item[0].action):
                    return None
                widgets.append([node])
            else:
                pair = children[:2]
                del children[:2]
                if len(pair) != 2 or not isinstance(pair[0], KeyGroup) or not isinstance(pair[1], FooterLabel):
                    return None
                widgets.append(pair)
        return widgets if not children else None


def footer_items(keys: FooterKeys) -> list[tuple[ShownKey, ...]]:
    """What Footer.compose draws, in order: one key per action, consecutive actions of a group as one item (a
    KeyGroup and its label), then the command palette key."""
    first: dict[str, ShownKey] = {}
    for key in keys.keys:
        if key.show:
            first.setdefault(key.action, key)
    items: list[tuple[ShownKey, ...]] = []
    for group, run in groupby(first.values(), key=lambda key: key.group):
        grouped = tuple(run)
        if group is not None and len(grouped) > 1:
            items.append(grouped)
        else:
            items.extend((key,) for key in grouped)
    if keys.palette is not None:
        items.append((keys.palette,))
    return items
