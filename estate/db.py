"""Database connections and versioned migrations.

Migrations are ``estate/migrations/NNNN_name.sql`` files applied in order, each in its own
transaction, and recorded in ``schema_migrations`` with a checksum: an applied migration
that was edited afterwards is refused instead of silently diverging. Concurrent upgrades
(several workers starting at once) serialise on an advisory lock.

psycopg errors are translated at this boundary: ``DatabaseError`` carries a message a
person can act on; the original psycopg exception is its ``__cause__``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg

_LOCK_KEY = 0x5E57A7E  # advisory lock id for migrations ("smart estate")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


Conn = psycopg.Connection[tuple[Any, ...]]
"""The one connection type: tuple rows unless a query asks for a row factory."""


class DatabaseError(RuntimeError):
    """The database is unreachable or refused a schema change; the message says what to do."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations() -> list[Migration]:
    """The migrations shipped with the package, in version order."""
    out = []
    for entry in resources.files("estate.migrations").iterdir():
        m = _NAME.match(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    out.sort(key=lambda m: m.version)
    versions = [m.version for m in out]
    if len(set(versions)) != len(versions):
        raise DatabaseError(f"two migrations share a version number: {versions}")
    return out


def connect(url: str, *, autocommit: bool = False) -> Conn:
    """Open a connection, turning connection failures into a DatabaseError that says why."""
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as err:
        raise DatabaseError(
            f"cannot connect to the database ({err}).\n"
            "With the embedded default, start it with `estate services start`; "
            "otherwise check DATABASE_URL."
        ) from err


_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def upgrade(url: str) -> list[Migration]:
    """Apply every migration not yet applied; return those applied by this call."""
    wanted = migrations()
    applied: list[Migration] = []
    with connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(_LEDGER)
            done = {
                int(str(v)): str(c)
                for v, c in conn.execute("SELECT version, checksum FROM schema_migrations")
            }
            for m in wanted:
                if m.version in done:
                    if done[m.version] != m.checksum:
                        raise DatabaseError(
                            f"migration {m.version:04d}_{m.name} was changed after it was "
                            "applied; add a new migration instead of editing an old one"
                        )
                    continue
                try:
                    with conn.transaction():
                        conn.execute(m.sql.encode())
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) "
                            "VALUES (%s, %s, %s)",
                            (m.version, m.name, m.checksum),
                        )
                except psycopg.Error as err:
                    raise DatabaseError(
                        f"migration {m.version:04d}_{m.name} failed: {err}"
                    ) from err
                applied.append(m)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied


def current_version(url: str) -> int | None:
    """The highest applied migration, or None on an empty database."""
    with connect(url) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
        if exists is None or exists[0] is None:
            return None
        row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return None if row is None or row[0] is None else int(str(row[0]))
