"""Push an ``OciImage`` to an OCI distribution registry over its HTTP API (no Docker, no buildx).

Only what the registry lacks travels: every layer and config is checked with ``HEAD`` first, and
per-platform manifests likewise; the index is always ``PUT`` under the tag (a few hundred bytes,
and the tag must point at this build). Blobs up to ``chunk_threshold`` go up in one ``PUT``; bigger
ones in ``PATCH`` chunks of ``chunk_size``, so a registry behind a proxy with a body-size limit, or
a flaky link, does not have to swallow an 18 MB component in one request.

The client is blocking (``http.client``, one keep-alive connection per thread): the engine calls it
from a worker thread. No authentication: k3d's registry, like a plain ``docker-registry``, accepts
anonymous pushes; a registry that asks for credentials gets a clear error instead.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

from devenv.errors import DeployError
from devenv.oci.image import OciImage
from devenv.oci.layout import MEDIA_INDEX, MEDIA_MANIFEST, Descriptor

_REPOSITORY = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_MANIFEST_ACCEPT = ", ".join(
    [
        MEDIA_INDEX,
        MEDIA_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")
_T = TypeVar("_T")


class RegistryError(DeployError):
    """The registry could not be reached, or refused part of a push."""


@dataclass(frozen=True)
class PushResult:
    digest: str  # the index digest the registry now serves under ``tag``
    pushed_blobs: int  # layers and configs uploaded
    skipped_blobs: int  # layers and configs the registry already had
    bytes_sent: int  # request bodies: blobs, manifests and index
    repository: str = ""
    tag: str = ""
    pushed_manifests: int = 0  # per-platform manifests uploaded (the index is not counted)

    @property
    def reference(self) -> str:
        """``repository:tag@digest`` (prefix it with the registry host a node pulls from)."""
        return f"{self.repository}:{self.tag}@{self.digest}"


def normalize_repository(name: str) -> str:
    """An app name as a valid repository component: lower case, runs of other characters → ``-``."""
    repo = re.sub(r"[^a-z0-9._/-]+", "-", name.lower())
    repo = re.sub(r"[._-]*/[._-]*", "/", repo).strip("._-/")
    repo = re.sub(r"[._-]{2,}", "-", repo)
    if not repo or not _REPOSITORY.match(repo):
        raise ValueError(f"cannot make a repository name from {name!r}")
    return repo


class _HTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        # Headers and a streamed body go out in separate writes; with Nagle on, each request
        # then waits for the peer's delayed ACK (~40 ms on Linux). A push is a dozen requests,
        # so that alone would dominate the push of a small edit.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _HTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@dataclass
class _Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str) -> str:
        return self.headers.get(name, "") or ""


class RegistryClient:
    """A distribution registry at ``base_url`` (``http://127.0.0.1:5000``, or ``host:port``)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        chunk_threshold: int = 64 << 20,
        chunk_size: int = 16 << 20,
        max_workers: int = 4,
    ) -> None:
        if "://" not in base_url:
            # Like docker and k3d: a loopback registry speaks plain HTTP, anything else TLS.
            host = base_url.split("/", 1)[0].rsplit(":", 1)[0]
            base_url = ("http://" if host in _LOOPBACK else "https://") + base_url
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"registry URL {base_url!r} is not http(s)://host[:port]")
        self.base_url = f"{parsed.scheme}://{parsed.netloc}"
        self._scheme = parsed.scheme
        self._netloc = parsed.netloc
        self.timeout = timeout
        self.chunk_threshold = chunk_threshold
        self.chunk_size = max(1, chunk_size)
        self.max_workers = max(1, max_workers)
        self._local = threading.local()
        self._conns: set[http.client.HTTPConnection] = set()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    # -- connection -------------------------------------------------------------------------

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = _HTTPSConnection if self._scheme == "https" else _HTTPConnection
            # 1 MiB blocks: the default 8 KiB makes streaming an 18 MB file body needlessly chatty.
            conn = cls(self._netloc, timeout=self.timeout, blocksize=1 << 20)
            self._local.conn = conn
            with self._lock:
                self._conns.add(conn)
        return conn

    def _drop_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            with self._lock:
                self._conns.discard(conn)

    def _map(self, fn: Callable[[Descriptor], _T], items: Sequence[Descriptor]) -> list[_T]:
        """``fn`` over ``items`` on the client's worker threads (each with its own connection).

        The registry spends most of an upload on its own bookkeeping (tens of ms per blob for
        distribution on a local disk), so independent blobs go up side by side.
        """
        if len(items) <= 1 or self.max_workers == 1:
            return [fn(item) for item in items]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="wasmdev-push")
            pool = self._pool
        return list(pool.map(fn, items))

    def close(self) -> None:
        """Close every connection and the worker threads (the client stays usable)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            conn.close()
        self._local = threading.local()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unreachable(self, exc: BaseException, where: str) -> RegistryError:
        return RegistryError(
            what=f"cannot reach the registry at {self.base_url} ({exc.__class__.__name__}: {exc})",
            where=where,
            fix=(
                "start the registry (for k3d: `wasmdev cluster create` creates it; check it with "
                "`k3d registry list`), or pass the right --registry host:port"
            ),
        )

    def _request(
        self,
        method: str,
        target: str,
        *,
        body: bytes | BinaryIO | None = None,
        headers: Mapping[str, str] | None = None,
        where: str = "",
    ) -> _Response:
        hdrs = dict(headers or {})
        if body is None and method in ("PUT", "POST", "PATCH"):
            hdrs.setdefault("Content-Length", "0")
        # A keep-alive connection the registry closed while idle fails on first use: retry
        # once on a fresh one, but only when the body can be sent again.
        retryable = body is None or isinstance(body, bytes)
        for attempt in (1, 2):
            try:
                conn = self._conn()
                conn.request(method, target, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                return _Response(resp.status, resp.headers, data)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self._drop_conn()
                if attempt == 2 or not retryable:
                    raise self._unreachable(exc, where or self.base_url) from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop_conn()
                raise self._unreachable(exc, where or self.base_url) from exc
        raise AssertionError("unreachable")

    def _target(self, location: str) -> str:
        # Registries answer with absolute Locations naming the host *they* think they are
        # (k3d's says k3d-name:5000); always talk to the address we were given.
        parts = urllib.parse.urlsplit(location)
        path = parts.path or "/"
        return path + (f"?{parts.query}" if parts.query else "")

    # -- API ----------------------------------------------------------------------------------

    def ping(self) -> None:
        """Check that ``base_url`` is a distribution registry that lets us in; raise ``RegistryError`` if not."""
        resp = self._request("GET", "/v2/")
        if resp.status == 200:
            return
        if resp.status == 401:
            raise self._auth_error(self.base_url, resp)
        raise RegistryError(
            what=f"{self.base_url}/v2/ answered HTTP {resp.status}: not an OCI distribution registry",
            where=self.base_url,
            fix="point --registry at the registry's host:port (k3d: the port from `k3d registry list`)",
        )

    def has_blob(self, repository: str, digest: str) -> bool:
        where = f"{self.base_url}/{repository}"
        resp = self._request("HEAD", f"/v2/{repository}/blobs/{digest}", where=where)
        if resp.status == 200:
            return True
        if resp.status == 404:
            return False
        raise self._refused(f"checking blob {digest}", where, resp)

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        """``(body, media type, digest)`` of the manifest or index at ``reference`` (tag or digest)."""
        where = f"{self.base_url}/{repository}"
        resp = self._request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            headers={"Accept": _MANIFEST_ACCEPT},
            where=where,
        )
        if resp.status != 200:
            raise self._refused(f"reading manifest {reference}", where, resp)
        return resp.body, resp.header("Content-Type"), resp.header("Docker-Content-Digest")

    def push(self, image: OciImage, repository: str, tag: str) -> PushResult:
        """Push ``image`` as ``repository:tag``; only blobs and manifests the registry lacks travel."""
        if not _REPOSITORY.match(repository):
            raise ValueError(f"{repository!r} is not a valid repository name (see normalize_repository)")
        if not _TAG.match(tag):
            raise ValueError(f"{tag!r} is not a valid tag")
        where = f"{self.base_url}/{repository}"

        def blob(desc: Descriptor) -> int:
            """Bytes sent for ``desc``; -1 when the registry already had it."""
            if self.has_blob(repository, desc.digest):
                return -1
            return self._upload_blob(image, repository, desc, where)

        def manifest(desc: Descriptor) -> int:
            if self._has_manifest(repository, desc.digest, where):
                return -1
            return self._put_manifest(image, repository, desc.digest, desc, where)

        # Order matters between phases, not within them: a registry refuses a manifest whose
        # blobs it lacks, and an index whose manifests it lacks.
        blob_sizes = self._map(blob, image.blob_descriptors())
        manifest_sizes = self._map(manifest, list(image.manifests))
        pushed = sum(1 for n in blob_sizes if n >= 0)
        skipped = len(blob_sizes) - pushed
        pushed_manifests = sum(1 for n in manifest_sizes if n >= 0)
        sent = sum(n for n in blob_sizes + manifest_sizes if n > 0)
        sent += self._put_manifest(image, repository, tag, image.index, where)
        return PushResult(
            digest=image.digest,
            pushed_blobs=pushed,
            skipped_blobs=skipped,
            bytes_sent=sent,
            repository=repository,
            tag=tag,
            pushed_manifests=pushed_manifests,
        )

    # -- push steps ---------------------------------------------------------------------------

    def _has_manifest(self, repository: str, digest: str, where: str) -> bool:
        resp = self._request(
            "HEAD", f"/v2/{repository}/manifests/{digest}", headers={"Accept": _MANIFEST_ACCEPT}, where=where
        )
        if resp.status in (200, 404):
            return resp.status == 200
        raise self._refused(f"checking manifest {digest}", where, resp)

    def _put_manifest(
        self, image: OciImage, repository: str, reference: str, desc: Descriptor, where: str
    ) -> int:
        body = image.read_blob(desc.digest)
        resp = self._request(
            "PUT",
            f"/v2/{repository}/manifests/{reference}",
            body=body,
            headers={"Content-Type": desc.media_type, "Content-Length": str(len(body))},
            where=where,
        )
        if resp.status != 201:
            raise self._refused(f"pushing manifest {reference} ({desc.media_type})", where, resp)
        got = resp.header("Docker-Content-Digest")
        if got and got != desc.digest:
            raise RegistryError(
                what=f"the registry stored manifest {reference} as {got}, expected {desc.digest}",
                where=where,
                fix="the registry rewrote the manifest; use a registry that stores OCI manifests verbatim",
            )
        return len(body)

    def _upload_blob(self, image: OciImage, repository: str, desc: Descriptor, where: str) -> int:
        what = f"uploading blob {desc.digest} ({desc.size} bytes)"
        resp = self._request("POST", f"/v2/{repository}/blobs/uploads/", where=where)
        if resp.status != 202:
            raise self._refused(f"starting the upload of blob {desc.digest}", where, resp)
        location = self._location(resp, what, where)
        path = image.blob_path(desc.digest)
        with path.open("rb") as f:
            if desc.size <= self.chunk_threshold:
                target = _with_query(location, digest=desc.digest)
                resp = self._request(
                    "PUT",
                    target,
                    body=f,
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)},
                    where=where,
                )
            else:
                offset = 0
                while offset < desc.size:
                    chunk = f.read(self.chunk_size)
                    end = offset + len(chunk) - 1
                    resp = self._request(
                        "PATCH",
                        location,
                        body=chunk,
                        headers={
                            "Content-Type": "application/octet-stream",
                            "Content-Length": str(len(chunk)),
                            "Content-Range": f"{offset}-{end}",
                        },
                        where=where,
                    )
                    if resp.status != 202:
                        raise self._refused(f"{what}: chunk {offset}-{end}", where, resp)
                    location = self._location(resp, what, where)
                    offset = end + 1
                resp = self._request("PUT", _with_query(location, digest=desc.digest), where=where)
        if resp.status != 201:
            raise self._refused(what, where, resp)
        return desc.size

    def _location(self, resp: _Response, what: str, where: str) -> str:
        location = resp.header("Location")
        if not location:
            raise RegistryError(
                what=f"{what}: the registry gave no upload Location",
                where=where,
                fix="use an OCI distribution registry (docker-registry, k3d's registry, zot)",
            )
        return self._target(location)

    def _auth_error(self, where: str, resp: _Response) -> RegistryError:
        challenge = resp.header("WWW-Authenticate") or "none given"
        return RegistryError(
            what=f"the registry at {self.base_url} asks for credentials ({challenge}); wasmdev pushes anonymously",
            where=where,
            fix="use a registry that accepts anonymous pushes (k3d's registry does), or push with a logged-in tool",
        )

    def _refused(self, what: str, where: str, resp: _Response) -> RegistryError:
        if resp.status == 401:
            return self._auth_error(where, resp)
        detail = _error_detail(resp.body)
        fix = {
            403: "the registry forbids pushing here; check its access rules or choose another repository",
            404: "the repository or upload vanished; is the registry's storage being reset?",
            413: "the registry (or a proxy in front of it) limits request size; lower chunk_size",
            416: "the registry rejected the chunk ranges; retry the push",
        }.get(resp.status, "see the registry's log for the cause, then rebuild to retry the push")
        return RegistryError(
            what=f"{what} failed: HTTP {resp.status} {detail}".rstrip(), where=where, fix=fix
        )


def _with_query(target: str, **params: str) -> str:
    sep = "&" if "?" in target else "?"
    return target + sep + urllib.parse.urlencode(params)


def _error_detail(body: bytes) -> str:
    """The registry's ``{"errors": [{"code", "message"}]}`` as one line, or the body's start."""
    try:
        errors = json.loads(body).get("errors", [])
        return "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errors)
    except (ValueError, AttributeError):
        return body[:200].decode(errors="replace").strip()
