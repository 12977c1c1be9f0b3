"""Layouts: Textual CSS files that arrange the same widgets differently.

Built-in layouts ship inside the package (``devenv.layouts``, the repo's top-level ``layouts/``
folder) and are read with importlib.resources so they work from a wheel. A workspace may add its
own, or override a built-in by name, with ``<workspace>/layouts/NAME.tcss``. A layout's
description is the leading ``/* … */`` comment of its file, so a layout is one file a user can copy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from textual.css.stylesheet import Stylesheet, StylesheetError
from textual.css.tokenizer import TokenError

DEFAULT_LAYOUT = "side-by-side"
LAYOUT_SUFFIX = ".tcss"
_BUILTIN_PACKAGE = "devenv.layouts"
_LEADING_COMMENT = re.compile(r"\A\s*/\*(?P<body>.*?)\*/", re.DOTALL)


@dataclass(frozen=True)
class Layout:
    name: str  # the file's stem: what --layout and the palette use
    description: str
    css: str
    origin: str  # the file it came from, for error messages and Textual's CSS locations
    builtin: bool


class UnknownLayout(ValueError):
    """A layout name (``--layout NAME``) that is neither built in nor a file in the workspace."""


@dataclass(frozen=True)
class LayoutCatalog:
    layouts: dict[str, Layout]  # in cycling order: built-ins first, then the workspace's additions
    problems: tuple[str, ...] = ()  # unreadable or invalid files, each with its path
    folder: Path | None = None  # the workspace's layouts/ folder, where a user adds one

    def names(self) -> list[str]:
        return list(self.layouts)

    def require(self, name: str) -> Layout:
        """The layout called ``name``; UnknownLayout (listing the known ones) when there is none."""
        layout = self.layouts.get(name)
        if layout is None:
            where = f" or {self.folder}/{name}{LAYOUT_SUFFIX}" if self.folder is not None else ""
            known = ", ".join(self.names())
            raise UnknownLayout(f"no layout named {name!r}{where}; known layouts: {known}")
        return layout

    def next_after(self, name: str) -> str:
        names = self.names()
        if name not in names:
            return names[0]
        return names[(names.index(name) + 1) % len(names)]


def describe_css(css: str) -> str:
    """The text of the file's leading comment, whitespace collapsed; "" when there is none."""
    match = _LEADING_COMMENT.match(css)
    if not match:
        return ""
    return " ".join(match.group("body").replace("*", " ").split())


def builtin_layouts() -> dict[str, Layout]:
    found: dict[str, Layout] = {}
    root = resources.files(_BUILTIN_PACKAGE)
    # Sorted, then the default moved first, so cycling always starts from the default.
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(LAYOUT_SUFFIX):
            continue
        css = entry.read_text(encoding="utf-8")
        name = entry.name[: -len(LAYOUT_SUFFIX)]
        found[name] = Layout(name, describe_css(css), css, f"{_BUILTIN_PACKAGE}/{entry.name}", True)
    if DEFAULT_LAYOUT in found:
        found = {DEFAULT_LAYOUT: found.pop(DEFAULT_LAYOUT), **found}
    return found


def workspace_layouts(workspace: Path) -> tuple[dict[str, Layout], list[str]]:
    found: dict[str, Layout] = {}
    problems: list[str] = []
    folder = workspace / "layouts"
    if not folder.is_dir():
        return found, problems
    for path in sorted(folder.glob(f"*{LAYOUT_SUFFIX}")):
        try:
            css = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            problems.append(f"{path}: cannot read layout ({error}); fix the file or remove it")
            continue
        found[path.stem] = Layout(path.stem, describe_css(css), css, str(path), False)
    return found, problems


def discover_layouts(workspace: Path | None) -> LayoutCatalog:
    """Built-ins, then the workspace's files; a workspace file with a built-in's name replaces it."""
    layouts = builtin_layouts()
    problems: list[str] = []
    if workspace is None:
        return LayoutCatalog(layouts)
    extra, problems = workspace_layouts(workspace)
    for name, layout in extra.items():
        layouts[name] = layout  # same key keeps the built-in's place in the cycle
    return LayoutCatalog(layouts, tuple(problems), workspace / "layouts")


def validate_layout(layout: Layout, variables: dict[str, str]) -> str | None:
    """Parse the layout on its own; the error (with its file) or None.

    Checked before a layout is applied so a broken user file is reported and skipped instead of
    leaving the app with a half-applied stylesheet. ``variables`` are the app's theme variables,
    since layouts may use $accent and friends.
    """
    sheet = Stylesheet(variables=variables)
    try:
        sheet.add_source(layout.css, read_from=(layout.origin, ""))
        sheet.parse()
    except (StylesheetError, TokenError) as error:  # TokenError: bad syntax or unknown $variable
        return f"{layout.origin}: invalid Textual CSS, layout {layout.name!r} skipped ({_first_line(error)})"
    return None


def _first_line(error: Exception) -> str:
    """Line, column and message of the first problem (Textual's parse errors are renderables)."""
    rules = getattr(getattr(error, "errors", None), "rules", None)
    if rules:
        for rule in rules:
            for token, message in rule.errors:
                line, column = token.start
                summary = getattr(message, "summary", message)
                return f"line {line}, column {column}: {summary}"
    start = getattr(error, "start", None)
    text = str(error).strip().splitlines()
    first = text[0] if text else type(error).__name__
    return f"line {start[0]}, column {start[1]}: {first}" if isinstance(start, tuple) else first
