from tests.engine.conftest import compile_cache  # noqa: F401 - the engine tests' shared compile cache
