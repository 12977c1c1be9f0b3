"""The names apps run under: the manifest's `[application] name`, unless another app of the
workspace declares the same one (every spin-python-sdk example is called `test`); then each of
those runs under a name from its folder, so they can all run side by side. Names are DNS labels:
the cluster targets name resources after apps."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from pathlib import Path


def folder_app_name(manifest: Path, root: Path, taken: Collection[str]) -> str:
    """The name an app runs under when its `[application] name` is also another app's: its
    folder's name (as a DNS label, since cluster targets name resources after apps), else its
    path below ``root`` joined with '-', else that with a number, whichever ``taken`` lacks."""
    folder = manifest.parent
    try:
        parts = folder.relative_to(root).parts
    except ValueError:
        parts = folder.parts[-2:]
    candidates = [_label(folder.name), _label("-".join(parts))]
    for candidate in candidates:
        if candidate and candidate not in taken:
            return candidate
    base = candidates[-1] or "app"
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def _label(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def app_names(declared: Mapping[Path, str], root: Path) -> dict[Path, str]:
    """manifest -> the name its app runs under: the declared `[application] name`, or, for
    every manifest whose declared name another manifest declares too, a name from its folder
    (every spin-python-sdk example is called `test`; they can run side by side)."""
    counts: dict[str, int] = {}
    for name in declared.values():
        counts[name] = counts.get(name, 0) + 1
    names = {m: n for m, n in declared.items() if counts[n] == 1}
    taken = set(declared.values())
    for manifest in sorted(m for m, n in declared.items() if counts[n] > 1):
        names[manifest] = folder_app_name(manifest, root, taken)
        taken.add(names[manifest])
    return {m: names[m] for m in declared}
