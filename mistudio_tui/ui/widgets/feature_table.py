"""A virtual table of a feature set's features: renders only visible rows from a small LRU cache of SQLite pages."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from mistudio_tui.db import features as fq
from mistudio_tui.display import printable
from mistudio_tui.ui import format as fmt

PAGE_ROWS = 100
MAX_PAGES = 8
NARROW_WIDTH = 60


@dataclass(frozen=True)
class Column:
    """One column: the row field it shows, its title, width (0: takes the rest) and the SQL sort key."""

    key: str
    title: str
    width: int
    sort: str


COLUMNS = [
    Column("index", "#", 7, "index"),
    Column("labels", "Labels", 0, "semantic_label"),
    Column("density", "Density", 8, "density"),
    Column("max", "Max", 7, "max_activation"),
    Column("top", "Top tokens", 18, "index"),
    Column("score", "Score", 5, "label_score"),
]
# a narrow pane keeps the top tokens, what tells unlabelled features apart (density shows in the detail)
NARROW_KEYS = ("index", "labels", "top")


@dataclass(frozen=True)
class FeatureRow:
    """The cells of one feature as the table shows them."""

    index: int
    technical: str
    semantic: str
    density: float
    max_activation: float
    top_tokens: str
    score: float | None
    dead: bool
    bookmarked: bool


class FeatureTable(ScrollView, can_focus=True):
    """Features of one set in SQL order; holds at most MAX_PAGES × PAGE_ROWS rows whatever the set's size."""

    COMPONENT_CLASSES = {"feature-table--header", "feature-table--cursor", "feature-table--dead"}
    DEFAULT_CSS = """
    FeatureTable {
        height: 1fr;
        overflow-x: hidden;
        overflow-y: scroll;
    }
    FeatureTable > .feature-table--header { background: $panel; color: $text; text-style: bold; }
    FeatureTable > .feature-table--cursor { background: $block-cursor-blurred-background; }
    FeatureTable:focus > .feature-table--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
    }
    FeatureTable > .feature-table--dead { color: $text-muted; }
    """
    BINDINGS = [
        Binding("down,j", "move(1)", "Down", id="feature_table.down", show=False),
        Binding("up,k", "move(-1)", "Up", id="feature_table.up", show=False),
        Binding("pagedown", "page(1)", "Page down", id="feature_table.page_down", show=False),
        Binding("pageup", "page(-1)", "Page up", id="feature_table.page_up", show=False),
        Binding("g,home", "first", "First", id="feature_table.first", show=False),
        Binding("G,end", "last", "Last", id="feature_table.last", show=False),
    ]

    cursor = reactive(0, always_update=True)

    class Highlighted(Message):
        """The cursor moved onto feature `index` (None when the table is empty)."""

        def __init__(self, table: FeatureTable, index: int | None) -> None:
            super().__init__()
            self.table = table
            self.index = index

    class SortRequested(Message):
        """The user clicked the header of a column sorted by `sort`."""

        def __init__(self, sort: str) -> None:
            super().__init__()
            self.sort = sort

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.feature_set_id: int | None = None
        self.sort = "index"
        self.descending = False
        self.filter = fq.FeatureFilter()
        self.total = 0
        self._pages: OrderedDict[int, list[FeatureRow]] = OrderedDict()
        self._highlighted: int | None = None

    # --- data -------------------------------------------------------------------------------------
    def show(
        self,
        feature_set_id: int | None,
        sort: str = "index",
        descending: bool = False,
        flt: fq.FeatureFilter | None = None,
        keep: int | None = None,
    ) -> None:
        """Point the table at a feature set, order and filter; keep the cursor on feature `keep` if still shown."""
        fq.sort_column(sort)
        self.feature_set_id = feature_set_id
        self.sort, self.descending = sort, descending
        self.filter = flt or fq.FeatureFilter()
        self._pages.clear()
        self.total, row = (
            fq.count_and_position(feature_set_id, self.filter, sort, descending, keep)
            if feature_set_id is not None
            else (0, -1)
        )
        self.virtual_size = Size(self.size.width, self.total + 1)
        self._highlighted = None
        self.cursor = max(row, 0)
        self.refresh()

    def invalidate(self) -> None:
        """Re-read the rows (labels or bookmarks changed) without moving the cursor."""
        self._pages.clear()
        self.refresh()

    def position(self, feature_index: int) -> int:
        """The row of feature `feature_index` under the current order and filter; -1 if not shown."""
        if self.feature_set_id is None:
            return -1
        return fq.position_of(self.feature_set_id, feature_index, self.sort, self.descending, self.filter)

    def jump_to(self, feature_index: int) -> bool:
        """Move the cursor to feature `feature_index`; False when it is filtered out or does not exist."""
        row = self.position(feature_index)
        if row < 0:
            return False
        self.cursor = row
        return True

    def row(self, number: int) -> FeatureRow | None:
        """Row `number` in the current order, read through the page cache."""
        if self.feature_set_id is None or not 0 <= number < self.total:
            return None
        page_no, offset = divmod(number, PAGE_ROWS)
        page = self._pages.get(page_no)
        if page is None:
            page = [
                FeatureRow(
                    f.index,
                    f.technical_label,
                    f.semantic_label,
                    f.density,
                    f.max_activation,
                    f.top_tokens,
                    f.label_score,
                    f.dead,
                    f.bookmarked,
                )
                for f in fq.feature_page(
                    self.feature_set_id,
                    self.sort,
                    self.descending,
                    self.filter,
                    page_no * PAGE_ROWS,
                    PAGE_ROWS,
                    self.total,
                )
            ]
            self._pages[page_no] = page
            while len(self._pages) > MAX_PAGES:
                self._pages.popitem(last=False)
        else:
            self._pages.move_to_end(page_no)
        return page[offset] if offset < len(page) else None

    @property
    def cached_rows(self) -> int:
        """How many rows the table holds in memory now."""
        return sum(len(page) for page in self._pages.values())

    @property
    def row_count(self) -> int:
        return self.total

    @property
    def selected_id(self) -> int | None:
        """The feature index under the cursor."""
        row = self.row(self.cursor)
        return row.index if row is not None else None

    # --- cursor -----------------------------------------------------------------------------------
    @property
    def body_height(self) -> int:
        return max(self.scrollable_content_region.height - 1, 1)

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, self.total - 1)) if self.total else 0

    def watch_cursor(self, value: int) -> None:
        top = round(self.scroll_y)
        if value < top:
            self.scroll_to(y=value, animate=False, immediate=True)
        elif value >= top + self.body_height:
            self.scroll_to(y=value - self.body_height + 1, animate=False, immediate=True)
        self.refresh()
        index = self.selected_id
        if index != self._highlighted:
            self._highlighted = index
            self.post_message(self.Highlighted(self, index))

    def action_move(self, delta: int) -> None:
        self.cursor += delta

    def action_page(self, direction: int) -> None:
        self.cursor += direction * self.body_height

    def action_first(self) -> None:
        self.cursor = 0

    def action_last(self) -> None:
        self.cursor = self.total - 1

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(event.size.width, self.total + 1)

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:
            column = self._column_at(event.x)
            if column is not None:
                self.post_message(self.SortRequested(column.sort))
            return
        self.cursor = round(self.scroll_y) + event.y - 1

    # --- rendering --------------------------------------------------------------------------------
    def columns(self) -> list[tuple[Column, int]]:
        """The columns that fit the current width, each with its rendered width."""
        width = self.scrollable_content_region.width
        shown = [c for c in COLUMNS if width >= NARROW_WIDTH or c.key in NARROW_KEYS]
        fixed = sum(c.width for c in shown) + len(shown) - 1
        rest = max(width - fixed, 8)
        return [(c, c.width or rest) for c in shown]

    def _column_at(self, x: int) -> Column | None:
        left = 0
        for column, width in self.columns():
            if left <= x < left + width:
                return column
            left += width + 1
        return None

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        if y == 0:
            return self._strip(self._header(), width, self.get_component_rich_style("feature-table--header"))
        number = round(self.scroll_y) + y - 1
        row = self.row(number)
        if row is None:
            return Strip.blank(width, self.rich_style)
        style = self.rich_style
        if row.dead:
            style = style + self.get_component_rich_style("feature-table--dead")
        if number == self.cursor:
            style = style + self.get_component_rich_style("feature-table--cursor")
        return self._strip(self._cells(row), width, style)

    def _header(self) -> Text:
        text = Text()
        for column, width in self.columns():
            title = column.title
            if column.sort == self.sort and column.key != "top":
                title += " ↓" if self.descending else " ↑"
            cell = Text(title)
            cell.truncate(width, pad=True)
            text.append_text(cell)
            text.append(" ")
        return text

    def _cells(self, row: FeatureRow) -> Text:
        text = Text()
        for column, width in self.columns():
            text.append_text(self._cell(row, column.key, width))
            text.append(" ")
        return text

    def _cell(self, row: FeatureRow, key: str, width: int) -> Text:
        if key == "index":
            cell = Text(f"{'★' if row.bookmarked else ' '}{row.index}")
        elif key == "labels":
            cell = Text(printable(row.technical), style="cyan")
            if row.semantic:
                cell.append(" " + printable(row.semantic).replace("\n", " "))
        elif key == "density":
            cell = Text("dead" if row.dead else fmt.num(row.density), justify="right")
        elif key == "max":
            cell = Text(fmt.num(row.max_activation), justify="right")
        elif key == "top":
            cell = Text(printable(row.top_tokens.replace("\n", "⏎")))
        else:
            cell = Text("" if row.score is None else f"{row.score:.2f}", justify="right")
        if cell.justify == "right":
            cell.truncate(width, overflow="ellipsis")
            cell.pad_left(width - cell.cell_len)
        else:
            cell.truncate(width, overflow="ellipsis", pad=True)
        return cell

    def _strip(self, text: Text, width: int, style: Style) -> Strip:
        segments = list(text.render(self.app.console))
        return Strip(Segment.apply_style(segments, style)).crop_extend(0, width, style)
