"""The apps panel: a DataTable kept in place (cells updated, not rebuilt) so the cursor and the
selection survive the ten refreshes a second."""

from __future__ import annotations

from textual.message import Message
from textual.widgets import DataTable

from devenv.ui.app_rows import COLUMN_INDEX, COLUMN_LABELS, COLUMNS, AppRow, app_of_key


class AppsTable(DataTable):
    DEFAULT_CSS = """
    AppsTable {
        height: auto;
        max-height: 12;
    }
    """

    class AppSelected(Message):
        """The cursor moved onto an app (or one of its components)."""

        def __init__(self, app: str) -> None:
            super().__init__()
            self.app = app

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=False)
        self._rows: dict[str, AppRow] = {}
        self._columns: tuple[str, ...] = ()

    def on_mount(self) -> None:
        self._set_columns(tuple(key for key, _ in COLUMNS))

    @property
    def columns_shown(self) -> tuple[str, ...]:
        return self._columns

    def _set_columns(self, columns: tuple[str, ...]) -> None:
        self.clear(columns=True)
        self._columns = columns
        self._rows = {}
        for key in columns:
            self.add_column(COLUMN_LABELS[key], key=key)

    def _cells(self, row: AppRow) -> list[object]:
        return [row.cells[COLUMN_INDEX[key]] for key in self._columns]

    @property
    def selected_app(self) -> str | None:
        if not self._rows or self.row_count == 0:
            return None
        keys = list(self._rows)
        return app_of_key(keys[min(self.cursor_row, len(keys) - 1)])

    def show(self, rows: list[AppRow], columns: tuple[str, ...] | None = None) -> None:
        """Make the table hold ``rows`` in ``columns`` (default: all): update changed cells,
        rebuild only when rows or columns come or go."""
        columns = columns if columns is not None else tuple(key for key, _ in COLUMNS)
        if columns != self._columns:
            selected = self.selected_app
            self._set_columns(columns)
            self._rebuild(rows, selected)
            return
        if [row.key for row in rows] != list(self._rows):
            self._rebuild(rows, self.selected_app)
            return
        for row in rows:
            old = self._rows[row.key]
            for column in self._columns:
                new_cell, old_cell = row.cells[COLUMN_INDEX[column]], old.cells[COLUMN_INDEX[column]]
                if new_cell != old_cell:
                    # Rows first drawn with "—" placeholders would otherwise keep columns too
                    # narrow for the URL or digest that arrives later.
                    self.update_cell(row.key, column, new_cell, update_width=True)
            self._rows[row.key] = row

    def _rebuild(self, rows: list[AppRow], selected: str | None) -> None:
        self.clear(columns=False)
        self._rows = {row.key: row for row in rows}
        for row in rows:
            self.add_row(*self._cells(row), key=row.key)
        if selected is not None:
            # Keep the cursor on the app the user had selected, wherever its row moved to.
            for index, row in enumerate(rows):
                if row.key == selected:
                    self.move_cursor(row=index, animate=False)
                    break
        if rows:
            self.post_message(self.AppSelected(self.selected_app or rows[0].app))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.AppSelected(app_of_key(event.row_key.value)))
