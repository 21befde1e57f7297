"""The ``estate`` command line, the top of the import graph: one module per domain
(services, db, registry, ingest, alerts, dispatch, access, fund, simulate, demo), each
adding its commands with ``register``. Imports any package; nothing imports it."""
