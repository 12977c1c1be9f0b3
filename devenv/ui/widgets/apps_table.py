"""The apps panel: a DataTable kept in place (cells updated, not rebuilt) so the cursor and the
selection survive the ten refreshes a second."""

from __future__ import annotations

from textual.message import Message
from textual.widgets import DataTable

from devenv.ui.app_rows import COLUMNS, AppRow, app_of_key


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

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    @property
    def selected_app(self) -> str | None:
        if not self._rows or self.row_count == 0:
            return None
        keys = list(self._rows)
        return app_of_key(keys[min(self.cursor_row, len(keys) - 1)])

    def show(self, rows: list[AppRow]) -> None:
        """Make the table hold ``rows``: update changed cells, rebuild only when rows come or go."""
        if [row.key for row in rows] != list(self._rows):
            self._rebuild(rows)
            return
        for row in rows:
            old = self._rows[row.key]
            for (column, _), new_cell, old_cell in zip(COLUMNS, row.cells, old.cells, strict=True):
                if new_cell != old_cell:
                    self.update_cell(row.key, column, new_cell)
            self._rows[row.key] = row

    def _rebuild(self, rows: list[AppRow]) -> None:
        selected = self.selected_app
        self.clear(columns=False)
        self._rows = {row.key: row for row in rows}
        for row in rows:
            self.add_row(*row.cells, key=row.key)
        if selected is not None:
            # Keep the cursor on the app the user had selected, wherever its row moved to.
            for index, row in enumerate(rows):
                if row.key == selected:
                    self.move_cursor(row=index, animate=False)
                    break
        if rows:
            self.post_message(self.AppSelected(self.selected_app or rows[0].app))

    def select_app(self, app: str) -> None:
        for index, key in enumerate(self._rows):
            if key == app:
                self.move_cursor(row=index, animate=False)
                return

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.AppSelected(app_of_key(event.row_key.value)))
