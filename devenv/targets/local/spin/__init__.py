"""Spin's host APIs on the local target: variables, key-value, SQLite, outbound Redis and
PostgreSQL, for the ``fermyon:spin@2.0.0`` and ``spin:up@3.x`` platform worlds.

``state`` holds what one component may reach (resolved variables, granted stores and databases);
``resolve`` builds it at deploy from the manifest, the environment and the runtime config file;
the interface modules (``variables``, ``key_value``, ``sqlite``, ``outbound_db``) are the host
functions, linked by ``wasi.registry`` like the WASI ones; ``imports`` decides, at deploy, which
imports of a component this host cannot serve.
"""
