"""The apps panel's rows, computed from EngineState: one per app, one more per component when an
app has several. Pure, so what a row says is tested without a terminal."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from devenv.model import AppState, AppStatus, BuildStatus, EngineState
from devenv.timefmt import EMPTY, format_age, format_duration
from devenv.ui.format import format_ms, short_digest

COMPONENT_SEPARATOR = "\t"  # in row keys: app names and component ids never hold a tab
LOCAL_TARGET = "local"

# Ordered by what matters when the pane is narrow: health first, bookkeeping last.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("mark", " "),
    ("app", "App"),
    ("build", "Build"),
    ("status", "Status"),
    ("url", "URL"),
    ("e2s", "Edit→serve"),
    ("digest", "Digest"),
    ("age", "Age"),
    ("target", "Target"),
    ("pods", "Pods"),
)
COLUMN_INDEX = {key: i for i, (key, _) in enumerate(COLUMNS)}
COLUMN_LABELS = dict(COLUMNS)

STATUS_MARKS: dict[AppStatus, tuple[str, str]] = {
    AppStatus.LOADING: ("…", "dim"),
    AppStatus.STARTING: ("◌", "cyan"),
    AppStatus.SERVING: ("●", "green"),
    AppStatus.DEGRADED: ("▲", "yellow"),
    AppStatus.FAILED: ("✗", "bold red"),
    AppStatus.UNSUPPORTED: ("⊘", "magenta"),
    AppStatus.STOPPED: ("■", "dim"),
}
BUILD_STYLES: dict[BuildStatus, str] = {
    BuildStatus.IDLE: "dim",
    BuildStatus.BUILDING: "cyan",
    BuildStatus.OK: "green",
    BuildStatus.FAILED: "bold red",
}
STATUS_CHARS = 32  # the status column shows the start of the error; the full text is elsewhere


@dataclass(frozen=True)
class AppRow:
    key: str  # the app's name, or "app<TAB>component"
    app: str
    cells: tuple[Text | str, ...]  # in COLUMNS order


def component_key(app: str, component: str) -> str:
    return f"{app}{COMPONENT_SEPARATOR}{component}"


def app_of_key(key: str) -> str:
    return key.split(COMPONENT_SEPARATOR, 1)[0]


def build_cell(app: AppState, now: float) -> Text:
    build = app.build
    label = build.status.value
    if build.status is BuildStatus.BUILDING and build.started_at is not None:
        label = f"building {format_duration(now - build.started_at)}"
    elif build.status in (BuildStatus.OK, BuildStatus.FAILED) and build.started_at and build.finished_at:
        label = f"{label} {format_duration(build.finished_at - build.started_at)}"
    return Text(label, style=BUILD_STYLES[build.status])


def pods_cell(app: AppState) -> str:
    if app.target == LOCAL_TARGET:
        return EMPTY
    if not app.pods:
        return "0/0"
    ready = sum(1 for pod in app.pods if pod.ready)
    restarts = sum(pod.restarts for pod in app.pods)
    cell = f"{ready}/{len(app.pods)}"
    if restarts:
        cell += f" ↻{restarts}"
    waiting = next((pod.reason for pod in app.pods if pod.reason and not pod.ready), "")
    return f"{cell} {waiting}" if waiting else cell


def status_cell(app: AppState) -> Text:
    mark_style = STATUS_MARKS[app.status][1]
    text = app.status.value
    if app.error:
        first = app.error.splitlines()[0]
        text = f"{text}: {first}"
        if len(text) > STATUS_CHARS:
            text = text[: STATUS_CHARS - 1] + "…"
    elif app.notes:
        text = f"{text} ({app.notes[0]})"
    return Text(text, style=mark_style)


def url_cell(urls: tuple[str, ...]) -> str:
    # The scheme is dropped to save a tenth of the table's width; the palette's "Open" and
    # "Copy URL" commands use the full URL.
    if not urls:
        return EMPTY
    first = urls[0].removeprefix("http://")
    return first if len(urls) == 1 else f"{first} +{len(urls) - 1}"


def app_row(app: AppState, now: float) -> AppRow:
    mark, mark_style = STATUS_MARKS[app.status]
    digest = app.build.digest or app.serving_digest
    age = now - app.build.finished_at if app.build.finished_at is not None else None
    by_column: dict[str, Text | str] = {
        "mark": Text(mark, style=mark_style),
        "app": Text(app.name, style="bold"),
        "target": app.target,
        "build": build_cell(app, now),
        "digest": short_digest(digest),
        "age": format_age(age) if digest else EMPTY,
        "e2s": format_ms(app.edit_to_serving_ms),
        "url": url_cell(app.urls),
        "pods": pods_cell(app),
        "status": status_cell(app),
    }
    cells = tuple(by_column[key] for key, _ in COLUMNS)
    return AppRow(app.name, app.name, cells)


def component_rows(app: AppState) -> list[AppRow]:
    spec = app.spec
    if spec is None or len(spec.components) < 2:
        return []
    rows: list[AppRow] = []
    for component_id in spec.components:
        routes = [t.route.path for t in spec.http_triggers if t.component == component_id]
        by_column: dict[str, Text | str] = {
            "app": Text(f" └ {component_id}", style="dim"),
            "url": ", ".join(routes) or EMPTY,
        }
        cells = tuple(by_column.get(key, "") for key, _ in COLUMNS)
        rows.append(AppRow(component_key(app.name, component_id), app.name, cells))
    return rows


def columns_for(state: EngineState) -> tuple[str, ...]:
    """Every column, except Pods while no app runs on a cluster (it would be a column of dashes)."""
    on_cluster = any(app.target != LOCAL_TARGET for app in state.apps.values())
    return tuple(key for key, _ in COLUMNS if on_cluster or key != "pods")


def rows_for(state: EngineState, now: float) -> list[AppRow]:
    """Apps in name order (a stable order: rows must not jump while someone reads them)."""
    rows: list[AppRow] = []
    for name in sorted(state.apps):
        app = state.apps[name]
        rows.append(app_row(app, now))
        rows.extend(component_rows(app))
    return rows
