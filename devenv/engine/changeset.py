"""From changed paths to what must happen: which apps to rebuild, which manifests to re-read.

As in Skaffold's dev loop, a batch of file events is first turned into a change set (what is
dirty), and the dev loop then acts on it once. The rules per app:

- its manifest changed: re-read it (and rebuild, since commands, sources or routes may differ);
- a file matching a component's ``build.watch`` globs (relative to the build workdir) changed, or,
  for a component without globs, any file under its workdir (or the app root) changed: rebuild;
- a component's ``source`` is the build's output: it never triggers that component's build, nor
  does anything under a build-output directory (target/, .zig-cache, node_modules, …). A
  component with no build command is the other way round: its ``source`` is the input, and a
  change to it redeploys the app.
- a file a component grants the guest (``files``) changed: redeploy the version serving, which
  re-stages the files (no build: the wasm did not change);
- a folder holding an app's manifest vanished (deleted, or moved out of the workspace): that
  manifest is checked, and the app removed when it is gone;
- a ``spin.toml`` or ``wasmdev.toml`` that no app owns appeared or vanished: rediscover the
  workspace (the watcher reports the files of a folder that appears, so a copied app counts).

Anything else (a log file written every 20 ms, a database beside the app) affects no app: the
dev loop drops such paths before they reach the watcher's quiet timer (``ChangeSet`` is empty).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from devenv.config import CONFIG_NAME
from devenv.manifest import MANIFEST_NAME
from devenv.model import AppSpec

# Directories whose contents are build outputs, caches or tooling state: never a reason to build.
OUTPUT_DIRS = frozenset(
    {
        "target",
        ".zig-cache",
        "zig-cache",
        "zig-out",
        ".spin",
        ".wasmdev",
        "node_modules",
        "__pycache__",
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        "dist",
    }
)
# Editor droppings: swap files, backups, lock files. Saving through them must not build twice.
_TEMP_FILE = re.compile(r"(\.sw[a-p]x?|~|\.tmp|\.bak|\.orig)$|^\.#|^#.*#$|^4913$")


def is_ignored(path: Path) -> bool:
    """True for paths that are never a reason to build: output dirs and editor temp files."""
    if any(part in OUTPUT_DIRS for part in path.parts):
        return True
    return bool(_TEMP_FILE.search(path.name))


@lru_cache(maxsize=512)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A Spin/globset-style glob as a regex over '/'-separated paths.

    ``*`` and ``?`` stay within one path segment, ``**`` spans segments (``src/**/*.c`` matches
    ``src/main.c`` and ``src/a/b/x.c``), ``[abc]`` is a class, and ``{a,b}`` an alternation.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end + 1
        elif c == "{":
            end = pattern.find("}", i + 1)
            if end == -1:
                out.append(re.escape(c))
                i += 1
            else:
                options = pattern[i + 1 : end].split(",")
                out.append("(?:" + "|".join(glob_regex(o).pattern[:-2] for o in options) + ")")
                i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _relative(path: Path, base: Path) -> str | None:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return None


@dataclass(frozen=True)
class _ComponentRule:
    source: Path | None  # a build's output, or (with no build) the input that is redeployed
    workdir: Path | None  # where the build runs; None when the component has no build command
    globs: tuple[str, ...] = ()  # `build.watch`, relative to workdir; none = everything under it
    granted: tuple[str, ...] = ()  # `files` globs and mounted folders, relative to the app root
    root: Path | None = None  # the app root `granted` is relative to

    def grants(self, path: Path) -> bool:
        if self.root is None or not self.granted:
            return False
        rel = _relative(path, self.root)
        if rel is None:
            return False
        for grant in self.granted:
            if glob_regex(grant).match(rel) or rel.startswith(grant.rstrip("/") + "/"):
                return True
        return False

    def wants_build(self, path: Path) -> bool:
        if self.workdir is None:
            return path == self.source
        if path == self.source:  # the build's own output
            return False
        rel = _relative(path, self.workdir)
        if rel is None or is_ignored(Path(rel)):
            return False
        return not self.globs or any(glob_regex(g).match(rel) for g in self.globs)


@dataclass(frozen=True)
class AppRules:
    """What, under an app, counts as a change worth a build."""

    name: str
    manifest_path: Path
    components: tuple[_ComponentRule, ...]

    @classmethod
    def of(cls, spec: AppSpec) -> AppRules:
        rules = tuple(
            _ComponentRule(
                c.source,
                c.build.workdir if c.build is not None else None,
                c.build.watch if c.build is not None else (),
                tuple(m.source for m in c.files),
                spec.root,
            )
            for c in spec.components.values()
        )
        return cls(spec.name, spec.manifest_path, rules)

    def wants_build(self, path: Path) -> bool:
        return any(rule.wants_build(path) for rule in self.components)

    def wants_redeploy(self, path: Path) -> bool:
        """A file the guest is granted: the version serving must be redeployed to see it."""
        return any(rule.grants(path) for rule in self.components)


@dataclass
class ChangeSet:
    """What a coalesced batch of file events asks for. Merging two change sets keeps the earliest
    time an event was seen, so edit-to-serving counts from the first save."""

    rebuild: set[str] = field(default_factory=set)  # app names
    redeploy: set[str] = field(default_factory=set)  # app names whose granted files changed
    reload: set[Path] = field(default_factory=set)  # manifests of known apps to re-read
    vanished: set[Path] = field(default_factory=set)  # manifests whose folder was removed or moved
    rediscover: bool = False  # a manifest or wasmdev.toml appeared or vanished
    config_changed: bool = False  # wasmdev.toml itself was written
    first_seen: float | None = None

    def __bool__(self) -> bool:
        return bool(self.rebuild or self.redeploy or self.reload or self.vanished or self.rediscover)

    def merge(self, other: ChangeSet) -> None:
        self.rebuild |= other.rebuild
        self.redeploy |= other.redeploy
        self.reload |= other.reload
        self.vanished |= other.vanished
        self.rediscover = self.rediscover or other.rediscover
        self.config_changed = self.config_changed or other.config_changed
        if other.first_seen is not None:
            self.first_seen = (
                other.first_seen if self.first_seen is None else min(self.first_seen, other.first_seen)
            )


def classify(
    paths: Iterable[Path],
    apps: Mapping[Path, AppRules],
    first_seen: float | None = None,
    workspace_config: Path | None = None,
) -> ChangeSet:
    """Turn changed paths into a ChangeSet. ``apps`` maps each known manifest path to its rules
    (apps whose manifest could not be read have rules with no components: only a manifest edit
    matters for them)."""
    change = ChangeSet(first_seen=first_seen)
    for path in paths:
        if path in apps:
            change.reload.add(path)
            continue
        if path.name == CONFIG_NAME or path == workspace_config:
            change.rediscover = change.config_changed = True
            continue
        if path.name == MANIFEST_NAME:
            change.rediscover = True
            continue
        for manifest, rules in apps.items():
            if path in manifest.parents:  # the app's folder (or one above it) changed: moved out?
                change.vanished.add(manifest)
            elif rules.name not in change.rebuild and rules.wants_build(path):
                change.rebuild.add(rules.name)
            elif rules.wants_redeploy(path):
                change.redeploy.add(rules.name)
    return change
