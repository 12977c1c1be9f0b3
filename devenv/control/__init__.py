"""The control endpoint: a running ``wasmdev up`` takes commands (history, rollback, replay,
load) from the same user on the same machine, over a Unix socket in the workspace's state folder.

messages.py holds the typed requests and the reply (JSON lines on the wire), server.py the
endpoint (0600 socket, peers checked with SO_PEERCRED), client.py what the CLI commands use.
"""
