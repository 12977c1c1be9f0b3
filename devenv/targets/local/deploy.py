"""The one deploy routine of the local target: stage, build a version, swap it in, or clean up.

wasmdev's own process (``LocalTarget``, for in-process serving and for the check every build
gets before a serving process sees it) and each serving process (guest_worker.py) deploy
through ``VersionStager``, so a build is staged, compiled, linked and swapped the same way
everywhere, and a failure anywhere leaves no staged files and the previous version serving.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

from devenv.errors import WasmdevError
from devenv.model import BuiltApp
from devenv.targets.local.compile_cache import CompileCache
from devenv.targets.local.executor import RequestLimits
from devenv.targets.local.host_settings import HostApiSettings
from devenv.targets.local.runtime import WasmRuntime
from devenv.targets.local.server import LocalServer
from devenv.targets.local.version_builder import VersionPlan, build_version


class VersionStager:
    def __init__(self, runtime: WasmRuntime, cache: CompileCache, limits: RequestLimits, root: Path) -> None:
        self.runtime = runtime
        self.cache = cache
        self.limits = limits
        self.root = root
        self._count = itertools.count(1)

    def build(
        self, built: BuiltApp, label: str, host_apis: HostApiSettings | None = None, *, keep_as: str | None = None
    ) -> VersionPlan:
        """Stage ``built``'s granted files and build its version (blocking: run it in a thread).
        Each build gets its own folder: a rollback builds an earlier build again while its
        retired version may still serve a request from its files. Raises DeployError /
        UnsupportedApp, leaving nothing staged. ``keep_as``: the app whose newest build this
        is; its compiled entries are kept for rollback and the cache pruned, here in the
        build's thread (pruning stats every entry of the cache)."""
        staging = self.root / f"{label}-{next(self._count)}"
        try:
            plan = build_version(built, self.runtime, self.cache, self.limits, staging, host_apis)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if keep_as is not None:
            self.cache.keep(keep_as, plan.compiled_keys)
        return plan

    def deploy(
        self, server: LocalServer, app: str, built: BuiltApp, label: str, host_apis: HostApiSettings | None = None
    ) -> str:
        """Build and swap in on ``server`` from a plain thread; "" or why not (the whole error:
        what, where and the fix), the previous version still serving."""
        try:
            plan = self.build(built, label, host_apis)
        except WasmdevError as err:
            return str(err)
        except Exception as err:  # noqa: BLE001 - reported to the deploy, which fails with it
            return f"{type(err).__name__}: {err}"
        server.call(server.swap(app, plan.version))
        return ""
