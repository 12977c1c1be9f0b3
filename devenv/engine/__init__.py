"""The engine: the dev loop that builds, deploys and watches apps, and reports into the store.

    changeset.py  changed paths -> which apps to rebuild, which manifests to re-read
    watcher.py    watchfiles + Tilt-style coalescing (a quiet period and a cap)
    builder.py    an app's build commands, streamed output, timeout, digest -> BuiltApp
    devloop.py    the loop's coordinator: start/stop, the target, watcher and samplers, intents
    app_slots.py  each manifest's slot (the loop's bookkeeping) and the name its app runs under
    app_worker.py each app's one worker: build, cancel on a newer save, deploy, rollbacks
    file_events.py  watcher batches -> rebuilds, redeploys, reloads, new and removed apps
    system_log.py the engine's SYSTEM log lines (say, one_line)
    samplers.py   per-app resource samples from the target's counters; HTTP latency probes
    runner.py     EngineThread: the loop on its own asyncio loop beside the TUI
    headless.py   a store subscriber printing one line per event (wasmdev up --headless)
    build_all.py  wasmdev build
    doctor.py     wasmdev doctor

Nothing here imports Textual (tests/unit/test_import_hygiene.py checks it).
"""
