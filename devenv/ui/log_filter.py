"""What the logs panel shows: a text filter, an app filter typed as ``app:NAME``, and "only this app".

Pure (no Textual): the log view asks ``matches`` for every line it receives, at up to tens of
thousands of lines a second, so the check is a couple of set lookups and one substring test.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from devenv.model import LogLine

APP_PREFIX = "app:"


@dataclass(frozen=True)
class LogFilter:
    text: str = ""  # case-insensitive substring of the line's text
    apps: frozenset[str] = field(default_factory=frozenset)  # typed as app:NAME; empty = every app
    only_app: str | None = None  # the "show only the selected app" toggle
    # Lower-cased once here rather than per line: matches() runs for every line of a flood.
    _needle: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_needle", self.text.lower())

    @classmethod
    def parse(cls, query: str, *, only_app: str | None = None) -> LogFilter:
        """``"app:web app:api timeout"`` → apps {web, api}, text "timeout"."""
        apps: set[str] = set()
        words: list[str] = []
        for word in query.split():
            if word.lower().startswith(APP_PREFIX) and len(word) > len(APP_PREFIX):
                apps.add(word[len(APP_PREFIX) :])
            else:
                words.append(word)
        return cls(text=" ".join(words), apps=frozenset(apps), only_app=only_app)

    def with_only_app(self, app: str | None) -> LogFilter:
        return replace(self, only_app=app)

    @property
    def active(self) -> bool:
        return bool(self.text or self.apps or self.only_app)

    def matches(self, line: LogLine) -> bool:
        if self.only_app is not None and line.app != self.only_app:
            return False
        if self.apps and line.app not in self.apps:
            return False
        return not self.text or self._needle in line.text.lower()

    def describe(self) -> str:
        """One line for the logs panel's title: what is hidden and why."""
        parts: list[str] = []
        if self.only_app is not None:
            parts.append(f"only {self.only_app}")
        if self.apps:
            parts.append("apps " + ", ".join(sorted(self.apps)))
        if self.text:
            parts.append(f'"{self.text}"')
        return "filter: " + "; ".join(parts) if parts else ""
