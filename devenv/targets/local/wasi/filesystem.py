"""wasi:filesystem 0.2, read-only: the guest sees the files its manifest grants, nothing else.

There is always one preopen, "/", so that every path the guest opens comes through here: a path
inside a grant (a ``Preopen``: host directory -> guest directory) is served read-only, a path
outside every grant gets ``no-entry`` and a log line naming it and the ``files`` key, and any
attempt to write gets ``read-only`` and a log line. Host paths are resolved and checked to stay
inside their grant, so ``..`` and symlinks cannot reach the rest of the host.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath
from typing import Any

from wasmtime.component import ResourceAny

from devenv.targets.local.file_mounts import Preopen
from devenv.targets.local.wasi.codec import Err, Ok
from devenv.targets.local.wasi.host import HostContext, Kind, Resource
from devenv.targets.local.wasi.io import InputStream
from devenv.targets.local.wasi.registry import Interface

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_DENIED_PATHS_SHOWN = 5
_WRITE_OPEN_FLAGS = {"create", "exclusive", "truncate"}
_WRITE_FLAGS = {
    "write",
    "mutate-directory",
    "file-integrity-sync",
    "data-integrity-sync",
    "requested-write-sync",
}


class Descriptor(Resource):
    """A directory or file at a guest path; ``host`` is None for a directory that only exists
    because a grant lives below it (e.g. "/" when only "/static" is granted)."""

    KIND = Kind.DESCRIPTOR

    def __init__(self, guest: PurePosixPath, host: Path | None, is_dir: bool) -> None:
        self.guest = guest
        self.host = host
        self.is_dir = is_dir


class DirectoryEntryStream(Resource):
    KIND = Kind.DIRECTORY_ENTRY_STREAM

    def __init__(self, entries: list[tuple[str, bool]]) -> None:
        self.entries = entries


class FileView:
    """The grants of one component, resolved: guest directory -> host directory."""

    def __init__(self, preopens: tuple[Preopen, ...]) -> None:
        self.grants = sorted(
            ((PurePosixPath(p.guest_dir), Path(p.host_dir).resolve()) for p in preopens),
            key=lambda g: len(g[0].parts),
            reverse=True,
        )
        self.denials: dict[str, list[str]] = {}

    def lookup(self, guest: PurePosixPath) -> Descriptor | None:
        """The descriptor for an absolute, normalised guest path, or None if not granted/absent."""
        for root, host_root in self.grants:
            if guest == root or root in guest.parents:
                host = host_root.joinpath(*guest.relative_to(root).parts).resolve()
                if host != host_root and host_root not in host.parents:
                    return None  # a symlink pointing out of the grant
                if host.is_dir():
                    return Descriptor(guest, host, True)
                if host.is_file():
                    return Descriptor(guest, host, False)
                return None
        if any(guest == root or guest in root.parents for root, _ in self.grants) or guest == PurePosixPath(
            "/"
        ):
            return Descriptor(guest, None, True)
        return None

    def list_dir(self, d: Descriptor) -> list[tuple[str, bool]]:
        names: dict[str, bool] = {}
        if d.host is not None:
            for child in sorted(d.host.iterdir()):
                names[child.name] = child.is_dir()
        for root, _ in self.grants:  # grants mounted directly below this directory
            if root.parent == d.guest and root != d.guest:
                names[root.name] = True
        return sorted(names.items())


def _view(ctx: HostContext) -> FileView:
    if ctx.fs is None:
        ctx.fs = FileView(ctx.config.preopens)
    return ctx.fs


def _normalise(base: PurePosixPath, path: str) -> PurePosixPath | None:
    parts: list[str] = list(base.parts[1:])
    for part in PurePosixPath(path).parts:
        if part in ("/", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return PurePosixPath("/", *parts)


def _get_directories(ctx: HostContext) -> list[tuple[Any, str]]:
    root = _view(ctx).lookup(PurePosixPath("/"))
    assert root is not None
    return [(ctx.own(root), "/")]


def _denied(ctx: HostContext, guest: PurePosixPath, why: str) -> None:
    # Collected and reported once per request (report_denials): an interpreter printing a
    # traceback probes a dozen source paths, which must not flood the log.
    paths = _view(ctx).denials.setdefault(why, [])
    if len(paths) < 1000:
        paths.append(str(guest))


def report_denials(ctx: HostContext) -> None:
    """One log line per kind of denial this request met, naming the paths."""
    if ctx.fs is None:
        return
    for why, paths in ctx.fs.denials.items():
        unique = list(dict.fromkeys(paths))
        shown = ", ".join(unique[:MAX_DENIED_PATHS_SHOWN])
        more = (
            f" and {len(unique) - MAX_DENIED_PATHS_SHOWN} more"
            if len(unique) > MAX_DENIED_PATHS_SHOWN
            else ""
        )
        ctx.note(f"denied file access to {shown}{more}: {why}")


_BUNDLED_ROOTS = frozenset({"python", "bundled", "world"})


def bundled_module_path(guest: PurePosixPath) -> bool:
    """componentize-py's own ``sys.path``: the Python path entries it bundled into the component
    as ``/0``, ``/1``, ... (``/0/app.py``, ``/1/spin_sdk/http/__init__.py``), and ``/python``,
    ``/bundled``, ``/world``. A traceback probes them all for source lines; they are not the
    user's files, so missing them is not a denial to report."""
    parts = guest.parts
    return len(parts) >= 2 and (parts[1].isdigit() or parts[1] in _BUNDLED_ROOTS)


def _not_granted(ctx: HostContext, guest: PurePosixPath) -> None:
    # With glob grants, "/" is the staged copy of the granted files, so any path that is not
    # there is one the manifest did not grant.
    if bundled_module_path(guest):
        return
    _denied(
        ctx, guest, f"not granted by `files` in [component.{ctx.config.component_id}] (read-only grants only)"
    )


def _open_at(
    ctx: HostContext,
    self: ResourceAny,
    path_flags: set[str],
    path: str,
    open_flags: set[str],
    flags: set[str],
) -> Any:
    base = ctx.borrow(self, Descriptor)
    guest = _normalise(base.guest, path)
    if guest is None:
        return Err("not-permitted")
    view = _view(ctx)
    if open_flags & _WRITE_OPEN_FLAGS or flags & _WRITE_FLAGS:
        _denied(ctx, guest, "files are read-only")
        return Err("read-only")
    found = view.lookup(guest)
    if found is None:
        _not_granted(ctx, guest)
        return Err("no-entry")
    if "directory" in open_flags and not found.is_dir:
        return Err("not-directory")
    return Ok(ctx.own(found))


def _stat_of(d: Descriptor) -> dict[str, Any]:
    if d.host is None:
        size, atime, mtime, ctime = 0, None, None, None
    else:
        st = d.host.stat()
        size = st.st_size
        atime, mtime, ctime = (
            _datetime(st.st_atime_ns),
            _datetime(st.st_mtime_ns),
            _datetime(st.st_ctime_ns),
        )
    return {
        "type": "directory" if d.is_dir else "regular-file",
        "link-count": 1,
        "size": size,
        "data-access-timestamp": atime,
        "data-modification-timestamp": mtime,
        "status-change-timestamp": ctime,
    }


def _datetime(ns: int) -> dict[str, int]:
    return {"seconds": ns // 1_000_000_000, "nanoseconds": ns % 1_000_000_000}


def _stat(ctx: HostContext, self: ResourceAny) -> Any:
    return Ok(_stat_of(ctx.borrow(self, Descriptor)))


def _stat_at(ctx: HostContext, self: ResourceAny, path_flags: set[str], path: str) -> Any:
    base = ctx.borrow(self, Descriptor)
    guest = _normalise(base.guest, path)
    found = _view(ctx).lookup(guest) if guest is not None else None
    if found is None:
        _not_granted(ctx, guest or base.guest)
        return Err("no-entry")
    return Ok(_stat_of(found))


def _file_bytes(ctx: HostContext, d: Descriptor) -> bytes:
    assert d.host is not None
    size = d.host.stat().st_size
    if size > MAX_FILE_BYTES:
        ctx.trap(f"{d.guest} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    ctx.hold(size, f"reading {d.guest}")
    return d.host.read_bytes()


def _read_via_stream(ctx: HostContext, self: ResourceAny, offset: int) -> Any:
    d = ctx.borrow(self, Descriptor)
    if d.is_dir:
        return Err("is-directory")
    return Ok(ctx.own(InputStream(memoryview(_file_bytes(ctx, d))[offset:])))


def _read(ctx: HostContext, self: ResourceAny, length: int, offset: int) -> Any:
    d = ctx.borrow(self, Descriptor)
    if d.is_dir:
        return Err("is-directory")
    assert d.host is not None
    with open(d.host, "rb") as f:
        f.seek(offset)
        data = f.read(min(length, 1024 * 1024))
        eof = not data or f.tell() >= os.fstat(f.fileno()).st_size
    return Ok((data, eof))


def _read_directory(ctx: HostContext, self: ResourceAny) -> Any:
    d = ctx.borrow(self, Descriptor)
    if not d.is_dir:
        return Err("not-directory")
    return Ok(ctx.own(DirectoryEntryStream(_view(ctx).list_dir(d))))


def _read_directory_entry(ctx: HostContext, self: ResourceAny) -> Any:
    stream = ctx.borrow(self, DirectoryEntryStream)
    if not stream.entries:
        return Ok(None)
    name, is_dir = stream.entries.pop(0)
    return Ok({"type": "directory" if is_dir else "regular-file", "name": name})


def _get_type(ctx: HostContext, self: ResourceAny) -> Any:
    return Ok("directory" if ctx.borrow(self, Descriptor).is_dir else "regular-file")


def _get_flags(ctx: HostContext, self: ResourceAny) -> Any:
    ctx.borrow(self, Descriptor)
    return Ok({"read"})


def _ok_noop(ctx: HostContext, self: ResourceAny, *args: Any) -> Any:
    ctx.borrow(self, Descriptor)
    return Ok()


def _read_only(name: str) -> Any:
    def refuse(ctx: HostContext, self: ResourceAny, *args: Any) -> Any:
        d = ctx.borrow(self, Descriptor)
        for a in args:  # other descriptors passed as borrows must be released too
            if isinstance(a, ResourceAny):
                ctx.borrow(a, Resource)
        _denied(ctx, d.guest, f"{name} on a read-only file system")
        return Err("read-only")

    return refuse


def _is_same_object(ctx: HostContext, self: ResourceAny, other: ResourceAny) -> bool:
    a, b = ctx.borrow(self, Descriptor), ctx.borrow(other, Descriptor)
    return a.guest == b.guest


def _hash(d: Descriptor) -> dict[str, int]:
    digest = hashlib.blake2b(str(d.guest).encode(), digest_size=16).digest()
    return {"lower": int.from_bytes(digest[:8], "little"), "upper": int.from_bytes(digest[8:], "little")}


def _metadata_hash(ctx: HostContext, self: ResourceAny) -> Any:
    return Ok(_hash(ctx.borrow(self, Descriptor)))


def _metadata_hash_at(ctx: HostContext, self: ResourceAny, path_flags: set[str], path: str) -> Any:
    base = ctx.borrow(self, Descriptor)
    guest = _normalise(base.guest, path)
    found = _view(ctx).lookup(guest) if guest is not None else None
    return Err("no-entry") if found is None else Ok(_hash(found))


def _readlink_at(ctx: HostContext, self: ResourceAny, path: str) -> Any:
    ctx.borrow(self, Descriptor)
    return Err("invalid")  # grants are resolved: the guest never sees a symlink


def _filesystem_error_code(ctx: HostContext, err: ResourceAny) -> None:
    ctx.borrow(err, Resource)
    return None


INTERFACES = [
    Interface(
        "wasi:filesystem/types",
        resources={"descriptor": Kind.DESCRIPTOR, "directory-entry-stream": Kind.DIRECTORY_ENTRY_STREAM},
        functions={
            "[method]descriptor.read-via-stream": _read_via_stream,
            "[method]descriptor.write-via-stream": _read_only("write-via-stream"),
            "[method]descriptor.append-via-stream": _read_only("append-via-stream"),
            "[method]descriptor.advise": _ok_noop,
            "[method]descriptor.sync-data": _ok_noop,
            "[method]descriptor.sync": _ok_noop,
            "[method]descriptor.get-flags": _get_flags,
            "[method]descriptor.get-type": _get_type,
            "[method]descriptor.set-size": _read_only("set-size"),
            "[method]descriptor.set-times": _read_only("set-times"),
            "[method]descriptor.read": _read,
            "[method]descriptor.write": _read_only("write"),
            "[method]descriptor.read-directory": _read_directory,
            "[method]descriptor.create-directory-at": _read_only("create-directory-at"),
            "[method]descriptor.stat": _stat,
            "[method]descriptor.stat-at": _stat_at,
            "[method]descriptor.set-times-at": _read_only("set-times-at"),
            "[method]descriptor.link-at": _read_only("link-at"),
            "[method]descriptor.open-at": _open_at,
            "[method]descriptor.readlink-at": _readlink_at,
            "[method]descriptor.remove-directory-at": _read_only("remove-directory-at"),
            "[method]descriptor.rename-at": _read_only("rename-at"),
            "[method]descriptor.symlink-at": _read_only("symlink-at"),
            "[method]descriptor.unlink-file-at": _read_only("unlink-file-at"),
            "[method]descriptor.is-same-object": _is_same_object,
            "[method]descriptor.metadata-hash": _metadata_hash,
            "[method]descriptor.metadata-hash-at": _metadata_hash_at,
            "[method]directory-entry-stream.read-directory-entry": _read_directory_entry,
            "filesystem-error-code": _filesystem_error_code,
        },
    ),
    Interface("wasi:filesystem/preopens", functions={"get-directories": _get_directories}),
]
