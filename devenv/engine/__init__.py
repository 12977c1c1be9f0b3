"""The engine: the dev loop that builds, deploys and watches apps, and reports into the store.

    changeset.py  changed paths -> which apps to rebuild, which manifests to re-read
    watcher.py    watchfiles + Tilt-style coalescing (a quiet period and a cap)
    builder.py    an app's build commands, streamed output, timeout, digest -> BuiltApp
    devloop.py    the loop: load, build, deploy, watch, intents (one worker per app)
    samplers.py   per-app resource samples from the target's counters; HTTP latency probes
    runner.py     EngineThread: the loop on its own asyncio loop beside the TUI
    headless.py   a store subscriber printing one line per event (wasmdev up --headless)
    build_all.py  wasmdev build
    doctor.py     wasmdev doctor

Nothing here imports Textual (tests/unit/test_import_hygiene.py checks it).
"""
