"""The logs panel's filter box: Escape clears it and hands focus back to the logs."""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input


class FilterInput(Input):
    BINDINGS = [Binding("escape", "dismiss", "Clear filter", show=False)]

    class Dismissed(Message):
        """The user cleared and closed the filter."""

    def action_dismiss(self) -> None:
        self.value = ""  # fires Input.Changed, which removes the filter
        self.post_message(self.Dismissed())
