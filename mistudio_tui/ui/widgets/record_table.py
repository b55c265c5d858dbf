"""A DataTable of database records keyed by id that reloads in place and keeps the cursor on its row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual.widgets import DataTable


class RecordTable(DataTable):
    """Rows are (id, cells); `set_records` updates changed cells or rebuilds when the ids change."""

    def __init__(self, columns: Sequence[tuple[str, str, int | None]], **kwargs: Any) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", True)
        super().__init__(**kwargs)
        self._column_keys = [key for key, _, _ in columns]
        for key, label, width in columns:
            self.add_column(label, key=key, width=width)

    def set_records(self, records: Sequence[tuple[int, Sequence[Any]]]) -> None:
        keys = [str(rid) for rid, _ in records]
        current = [str(row.value) for row in self.rows]
        if keys == current:
            for rid, cells in records:
                for column, value in zip(self._column_keys, cells, strict=True):
                    self.update_cell(str(rid), column, value)
            return
        selected = self.selected_id
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
