"""The dashboard's pure parts: formatting, filtering, rows, layouts and import hygiene."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
from textual.app import App

from devenv.model import AppStatus, LogLine, LogStream
from devenv.store import Store
from devenv.store import actions as a
from devenv.timefmt import format_age, format_duration
from devenv.ui.app_rows import COLUMNS, app_of_key, rows_for
from devenv.ui.format import format_bytes, format_ms, short_digest
from devenv.ui.layouts import DEFAULT_LAYOUT, builtin_layouts, describe_css, discover_layouts, validate_layout
from devenv.ui.log_filter import LogFilter
from devenv.ui.widgets.build_error import failing_app
from tests.ui.helpers import NOW, serve, spec

UI_ROOT = Path(__file__).resolve().parents[2] / "devenv" / "ui"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.35, "350ms"), (3.24, "3.2s"), (65, "1m05s"), (7380, "2h03m"), (None, "—"), (-1, "—")],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_age_ms_bytes_digest() -> None:
    assert [format_age(s) for s in (5, 180, 7200, 200_000)] == ["5s", "3m", "2h", "2d"]
    assert [format_ms(v) for v in (0.84, 12.3, 412.0, 1200.0, math.nan)] == [
        "0.8 ms",
        "12 ms",
        "412 ms",
        "1.20 s",
        "—",
    ]
    assert [format_bytes(v) for v in (512, 1536, 3 * 1024 * 1024, None)] == [
        "512 B",
        "1.5 KiB",
        "3.0 MiB",
        "—",
    ]
    assert short_digest("sha256:" + "0123456789abcdef" * 4) == "0123456789ab"
    assert short_digest(None) == "—"


def line(app: str, text: str) -> LogLine:
    return LogLine(NOW, app, LogStream.STDOUT, text)


def test_log_filter_parses_app_terms_and_matches_case_insensitively() -> None:
    f = LogFilter.parse("app:web  TimeOut app:api")
    assert f.apps == frozenset({"web", "api"}) and f.text == "TimeOut"
    assert f.matches(line("web", "read timeout after 3s"))
    assert not f.matches(line("db", "read timeout after 3s"))
    assert not f.matches(line("web", "ok"))
    only = f.with_only_app("api")
    assert not only.matches(line("web", "timeout")) and only.matches(line("api", "TIMEOUT"))
    assert not LogFilter().active and LogFilter().matches(line("x", "anything"))
    assert only.describe() == 'filter: only api; apps api, web; "TimeOut"'


def test_rows_follow_name_order_and_mark_failures() -> None:
    store = Store()
    for name in ("zeta", "alpha"):
        store.dispatch(a.AppLoaded(spec(name)))
    store.dispatch(
        a.ManifestFailed("broken", Path("/ws/broken/spin.toml"), "spin.toml: [component.x] source missing")
    )
    rows = rows_for(store.state, NOW)
    assert [r.key for r in rows] == ["alpha", "broken", "zeta"]
    broken = rows[1].cells
    status = dict(zip((k for k, _ in COLUMNS), broken, strict=True))
    assert str(status["mark"]) == "✗"
    assert str(status["status"]).startswith("failed: spin.toml: [component")
    assert len(str(status["status"])) <= 32  # cut, with the full error in the build panel or log
    assert store.state.apps["broken"].status is AppStatus.FAILED


def test_component_row_keys_map_back_to_their_app() -> None:
    store = Store()
    store.dispatch(a.AppLoaded(spec("shop", ("api", "web"))))
    rows = rows_for(store.state, NOW)
    assert [app_of_key(r.key) for r in rows] == ["shop", "shop", "shop"]
    assert len({r.key for r in rows}) == 3


def test_failing_app_prefers_the_selected_one() -> None:
    store = Store()
    for name in ("a1", "b2"):
        store.dispatch(a.AppLoaded(spec(name)))
        serve(store, name, "sha256:" + "cd" * 32, NOW - 5)
        store.dispatch(a.BuildFailed(name, "make", "out", "err", NOW))
    assert failing_app(store.state, None).name == "a1"  # type: ignore[union-attr]
    assert failing_app(store.state, "b2").name == "b2"  # type: ignore[union-attr]


def test_builtin_layouts_ship_in_the_package_with_descriptions() -> None:
    layouts = builtin_layouts()
    assert list(layouts)[0] == DEFAULT_LAYOUT
    assert {"side-by-side", "logs", "metrics"} <= set(layouts)
    for layout in layouts.values():
        assert layout.builtin and layout.description, layout.name
        assert layout.origin.startswith("devenv.layouts/")
        assert validate_layout(layout, App().get_css_variables()) is None


def test_describe_css_reads_the_leading_comment_only() -> None:
    assert describe_css("/* logs:\n   big logs. */\n#a { }") == "logs: big logs."
    assert describe_css("#a { } /* late */") == ""


def test_unreadable_workspace_layout_is_reported_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "layouts").mkdir()
    (tmp_path / "layouts" / "bad.tcss").write_bytes(b"\xff\xfe not utf-8")
    catalog = discover_layouts(tmp_path)
    assert "bad" not in catalog.layouts
    assert len(catalog.problems) == 1 and "bad.tcss" in catalog.problems[0]
    assert catalog.next_after("metrics") == "side-by-side"  # cycling wraps around


@pytest.mark.parametrize("css", ["#main { colour: red; }", "#main { color: $no-such-colour; }", "#main {"])
def test_validate_layout_names_the_file(tmp_path: Path, css: str) -> None:
    (tmp_path / "layouts").mkdir()
    (tmp_path / "layouts" / "oops.tcss").write_text(css)
    layout = discover_layouts(tmp_path).layouts["oops"]
    problem = validate_layout(layout, App().get_css_variables())
    assert problem is not None and str(tmp_path / "layouts" / "oops.tcss") in problem
    assert ", column " in problem  # says where in the file, not just that it failed


FORBIDDEN_MODULES = {"subprocess", "kubernetes", "docker", "wasmtime", "devenv.engine", "devenv.targets"}


@pytest.mark.parametrize("path", sorted(UI_ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(UI_ROOT)))
def test_ui_never_imports_processes_clusters_or_the_engine(path: Path) -> None:
    """The UI reads the store and dispatches intents; it does not run anything itself."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    bad = {m for m in imported if any(m == f or m.startswith(f + ".") for f in FORBIDDEN_MODULES)}
    assert not bad, f"{path.name} imports {sorted(bad)}"
    assert "create_subprocess" not in path.read_text(encoding="utf-8")
