"""The store: actions are dispatched, reduced into one EngineState, and subscribers are told."""

from devenv.store.store import Store

__all__ = ["Store"]
