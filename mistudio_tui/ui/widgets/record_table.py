"""A DataTable of database records keyed by id that reloads in place and keeps the cursor on its row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from textual import events
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

FLEX_MIN_WIDTH = 10


class RecordTable(DataTable[Any]):
    """Rows are (id, cells); `set_records` updates changed cells or rebuilds when the ids change.

    With `flex` (a column key), that column takes whatever width the others leave (at least FLEX_MIN_WIDTH), so long
    names show in full on a wide screen and the columns after it stay visible on a narrow one.
    """

    def __init__(self, columns: Sequence[tuple[str, str, int | None]], flex: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", True)
        super().__init__(**kwargs)
        self.kept_id: int | None = None  # the row to select again once rows dropped with the columns come back
        self._column_keys = [key for key, _, _ in columns]
        self.flex = flex
        for key, label, width in columns:
            self.add_column(label, key=key, width=width)

    def on_resize(self, event: events.Resize) -> None:
        self.fit_flex_column()

    def fit_flex_column(self) -> None:
        """Give the flex column the width the other columns leave free."""
        available = self.scrollable_content_region.width
        if self.flex is None or available <= 0:
            return
        column = self.columns[ColumnKey(self.flex)]
        others = sum(c.get_render_width(self) for key, c in self.columns.items() if key != self.flex)
        width = max(FLEX_MIN_WIDTH, available - others - 2 * self.cell_padding)
        if width != column.width:
            column.width = width
            # DataTable has no public way to re-measure after a column width changes.
            self._require_update_dimensions = True
            self._clear_caches()

    def set_records(self, records: Sequence[tuple[int, Sequence[Any]]]) -> None:
        """Show these rows; plain strings are shown as they are (DataTable would parse them as markup)."""
        records = [(rid, [escape(cell) if isinstance(cell, str) else cell for cell in cells]) for rid, cells in records]
        keys = [str(rid) for rid, _ in records]
        current = [str(row.value) for row in self.rows]
        if keys == current:
            for rid, cells in records:
                for column, value in zip(self._column_keys, cells, strict=True):
                    self.update_cell(str(rid), column, value)
            return
        selected = self.selected_id if self.row_count else self.kept_id
        self.kept_id = None
        self.clear()
        for rid, cells in records:
            self.add_row(*cells, key=str(rid))
        if selected is not None and str(selected) in keys:
            self.move_cursor(row=keys.index(str(selected)))

    @property
    def selected_id(self) -> int | None:
        """The id of the highlighted row."""
        if self.row_count == 0:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:
            return None
        return int(key.value) if key is not None and key.value is not None else None
