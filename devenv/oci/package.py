"""Package a built Spin app as an OCI image the Spin containerd shim runs.

The image format (a rootfs image, "FROM scratch" style)::

    /spin.toml                       the app's manifest, rewritten (below)
    /components/<id>.wasm            each component's built wasm, one layer per component
    /files/<id>/<guest path>         each component's granted ``files``, one layer per component

Why a rootfs image and not a ``spin registry push`` artifact: for rootfs images the shim loads
``/spin.toml`` from the container's root and compiles the components itself
(../shared/reference/k3d-and-spin-shim.md §8), so the image is plain tar layers that every tool on
the way (distribution registry, ``ctr``, ``docker pull``/``load``, ``k3d image import``) handles
without knowing about Wasm. The deployment sets ``command: ["/"]`` (runwasi runs a non-executable
arg0 as Wasm); the config also says ``Entrypoint: ["/"]`` so the image runs even when a pod spec
forgets it.

How ``spin.toml`` is rewritten:
- each built component's ``source`` becomes ``components/<id>.wasm`` (relative: Spin resolves a
  source against the manifest's directory, ``/``). URL and registry sources are left as they are.
- the shim loads files with Spin's *direct* mount strategy, which accepts only directories and
  refuses ``exclude_files``. So the granted files are resolved here, the way ``spin up`` copies
  them (globs, directories, ``{source, destination}`` placements, ``exclude_files`` applied to
  paths relative to the app root), laid out at their guest paths under ``/files/<id>/``, and the
  component gets ``files = [{ source = "/files/<id>", destination = "/" }]`` (absolute, because
  direct mounts resolve the source against the process's working directory too).
- ``[component.<id>.build]`` is dropped: it names host commands and paths the cluster never runs.

Layering: one layer per component's wasm, one per component's files, and a tiny last layer with
``spin.toml``. An edit to one component changes one layer, so a push sends that layer, the
configs and manifests (a few KB) and nothing else.

Layers are uncompressed ``application/vnd.oci.image.layer.v1.tar`` by default. The common push
goes to a registry on this machine (k3d's), where bytes are nearly free but gzip at level 6 costs
about 0.5 s per 18 MB component on every edit, and containerd must then inflate it again on
each node. ``compress=True`` writes ``+gzip`` layers for registries across a real network
(``--target kube``), where the ~3x smaller blobs win.

The tag is the first 16 hex digits of the image index digest: content-derived, so each different
build gets its own tag (pods roll because the image reference changes) and an identical rebuild
gets the same one.
"""

from __future__ import annotations

import fnmatch
import glob
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from devenv.errors import ManifestError
from devenv.model import AppSpec, BuiltApp, ComponentSpec
from devenv.oci.image import DEFAULT_PLATFORMS, OciImage, build_image
from devenv.oci.layout import BlobStore, Layer, LayerEntry, Platform
from devenv.oci.toml_writer import dumps_toml

MANIFEST_PATH = "spin.toml"
LABEL_APP = "dev.wasmdev.app"
LABEL_BUILD = "dev.wasmdev.build-digest"


def component_image_path(component_id: str) -> str:
    return f"components/{component_id}.wasm"


def files_image_dir(component_id: str) -> str:
    return f"files/{component_id}"


def package_app(
    built: BuiltApp,
    store_dir: Path,
    *,
    compress: bool = False,
    platforms: Sequence[Platform] = DEFAULT_PLATFORMS,
) -> OciImage:
    """Write ``built`` into the OCI layout at ``store_dir`` and return the image.

    Blocking (reads and hashes every wasm): call it from a worker thread, not the event loop.
    Raises ``ManifestError`` when the manifest or a granted file cannot be packaged.
    """
    spec = built.spec
    store = BlobStore(store_dir)
    manifest_path = spec.manifest_path
    try:
        document = tomllib.loads(manifest_path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ManifestError.at(manifest_path, "", f"cannot read the manifest to package it: {exc}") from exc

    tables = _component_tables(document, spec)
    wasm_layers: list[Layer] = []
    file_layers: list[Layer] = []
    for component_id in sorted(spec.components):
        component = spec.components[component_id]
        table = tables.get(component_id)
        if table is None:
            raise ManifestError.at(
                manifest_path, f"component.{component_id}", "component not found in the manifest"
            )
        wasm = built.wasm.get(component_id) or component.source
        if wasm is not None:
            if not Path(wasm).is_file():
                raise ManifestError.at(
                    manifest_path,
                    f"component.{component_id}.source",
                    f"the built wasm {wasm} does not exist",
                    fix="build the app again (wasmdev rebuilds on save; press r to force it)",
                )
            entry = LayerEntry(component_image_path(component_id), source=Path(wasm))
            wasm_layers.append(
                store.write_layer([entry], title=f"component {component_id}", compress=compress)
            )
            table["source"] = component_image_path(component_id)
        _refuse_local_dependencies(table, manifest_path, component_id)
        table.pop("build", None)
        table.pop("exclude_files", None)
        if component.files:
            placed = resolve_files(component, spec.root, manifest_path)
            directory = files_image_dir(component_id)
            # An empty directory still has to exist: direct mounts refuse a missing source.
            entries = [
                LayerEntry(f"{directory}/{guest}", source=host) for guest, host in sorted(placed.items())
            ] or [LayerEntry(f"{directory}/.wasmdev-empty", data=b"")]
            file_layers.append(store.write_layer(entries, title=f"files {component_id}", compress=compress))
            table["files"] = [{"source": "/" + directory, "destination": "/"}]

    manifest_bytes = dumps_toml(document).encode()
    manifest_layer = store.write_layer(
        [LayerEntry(MANIFEST_PATH, data=manifest_bytes)], title="spin.toml", compress=compress
    )
    labels = {LABEL_APP: spec.name, LABEL_BUILD: built.digest}
    config = {"WorkingDir": "/", "Entrypoint": ["/"], "Labels": labels}
    annotations = {"org.opencontainers.image.title": spec.name, LABEL_BUILD: built.digest}
    if spec.version:
        annotations["org.opencontainers.image.version"] = spec.version
    return build_image(
        store,
        app=spec.name,
        layers=[*wasm_layers, *file_layers, manifest_layer],
        config=config,
        annotations=annotations,
        platforms=platforms,
    )


def resolve_files(component: ComponentSpec, app_root: Path, manifest_path: Path) -> dict[str, Path]:
    """Guest path (relative, posix) → host file for a component's ``files``, as ``spin up`` copies them.

    ``exclude_files`` patterns match paths relative to the app root, with ``*`` crossing ``/`` as
    in Spin's glob matching. A later mount wins when two place a file at the same guest path.
    """
    root = app_root.resolve()
    excluded = component.exclude_files
    placed: dict[str, Path] = {}
    key = f"component.{component.id}.files"

    def keep(host: Path) -> Path | None:
        resolved = host.resolve()
        try:
            rel = resolved.relative_to(root).as_posix()
        except ValueError:
            raise ManifestError.at(
                manifest_path,
                key,
                f"{host} is outside the application directory {root}",
                fix="files must live inside the app's directory; copy them there",
            ) from None
        if any(fnmatch.fnmatchcase(rel, pattern) for pattern in excluded):
            return None
        return resolved

    for mount in component.files:
        source = mount.source
        if mount.destination is None:
            if source in (".", "..") or source.endswith(("/.", "/..")):
                raise ManifestError.at(
                    manifest_path,
                    key,
                    f"file pattern {source!r} cannot end in . or ..",
                    fix='use { source = "dir", destination = "/" } or a pattern ending in **/*',
                )
            host = app_root / source
            if host.is_dir():
                pairs = ((f, f.relative_to(app_root)) for f in _walk(host))
            elif host.is_file():
                pairs = iter([(host, Path(source))])
            elif glob.has_magic(source):
                matches = sorted(glob.glob(str(app_root / source), recursive=True))
                pairs = ((Path(m), Path(m).relative_to(app_root)) for m in matches if Path(m).is_file())
            else:
                raise ManifestError.at(
                    manifest_path,
                    key,
                    f"{source!r} does not exist and is not a glob pattern",
                    fix="create it, or fix the path (it is relative to the directory of spin.toml)",
                )
            for host_file, rel in pairs:
                if (kept := keep(host_file)) is not None:
                    placed[_guest(rel.as_posix())] = kept
        else:
            host = app_root / source
            dest = mount.destination
            if host.is_dir():
                for f in _walk(host):
                    if (kept := keep(f)) is not None:
                        placed[_guest(f"{dest}/{f.relative_to(host).as_posix()}")] = kept
            elif host.is_file():
                if dest.endswith("/") or dest.endswith("."):
                    raise ManifestError.at(
                        manifest_path,
                        key,
                        f"destination {dest!r} for the file {source!r} is a directory name",
                        fix="give the destination a file name, e.g. /data/config.json",
                    )
                if (kept := keep(host)) is not None:
                    placed[_guest(dest)] = kept
            else:
                raise ManifestError.at(
                    manifest_path,
                    key,
                    f"file or directory {source!r} does not exist",
                    fix="create it, or fix the path (it is relative to the directory of spin.toml)",
                )
    return placed


def _guest(path: str) -> str:
    parts = [p for p in PurePosixPath("/" + path).parts[1:] if p not in ("", ".")]
    if ".." in parts or not parts:
        raise ValueError(f"guest path {path!r} leaves the mount root")
    return "/".join(parts)


def _walk(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            yield path


def _component_tables(document: dict[str, Any], spec: AppSpec) -> dict[str, dict[str, Any]]:
    """Component id → its table in ``document`` (mutable, so rewriting it rewrites the manifest).

    Top-level components are found by id (v2 ``[component.<id>]``, v1 ``[[component]]`` with
    ``id``). Inline components (``component = { source = ... }`` in a trigger) have ids the
    manifest reader generated; they are matched to the spec's remaining components by source, in
    declaration order, so the id scheme lives in one place only.
    """
    tables: dict[str, dict[str, Any]] = {}
    components = document.get("component", {})
    if isinstance(components, Mapping):
        tables.update({cid: t for cid, t in components.items() if isinstance(t, dict)})
    elif isinstance(components, list):
        tables.update({str(t["id"]): t for t in components if isinstance(t, dict) and "id" in t})
    unclaimed = [cid for cid in spec.components if cid not in tables]
    for inline in _inline_component_tables(document):
        for cid in unclaimed:
            if _same_source(inline, spec.components[cid], spec.root):
                tables[cid] = inline
                unclaimed.remove(cid)
                break
    return tables


def _inline_component_tables(document: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    triggers = document.get("trigger", {})
    if not isinstance(triggers, Mapping):
        return
    for entries in triggers.values():
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, Mapping):
                continue
            specs: list[Any] = [entry.get("component")]
            components = entry.get("components")
            if isinstance(components, Mapping):
                for value in components.values():
                    specs.extend(value if isinstance(value, list) else [value])
            yield from (s for s in specs if isinstance(s, dict))


def _same_source(table: Mapping[str, Any], component: ComponentSpec, root: Path) -> bool:
    source = table.get("source")
    if isinstance(source, str):
        return component.source is not None and (root / source).resolve() == component.source.resolve()
    if isinstance(source, Mapping) and "url" in source:
        return component.source_url == source["url"]
    return False


def _refuse_local_dependencies(table: Mapping[str, Any], manifest_path: Path, component_id: str) -> None:
    deps = table.get("dependencies", {})
    if isinstance(deps, Mapping):
        for name, dep in deps.items():
            if isinstance(dep, Mapping) and "path" in dep:
                raise ManifestError.at(
                    manifest_path,
                    f"component.{component_id}.dependencies.{name}",
                    "component dependencies from local paths are not packaged into cluster images yet",
                    fix="compose the dependency ahead of time (wac plug) or publish it to a registry",
                )
