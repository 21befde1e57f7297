"""``estate db``: schema migrations of the database in use."""

from __future__ import annotations

import argparse

from cli import common
from estate import db
from estate.settings import Settings


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    with common.servers(settings) as ep:
        if args.action == "upgrade":
            applied = db.upgrade(ep.database_url)
            for m in applied:
                common.echo(f"applied {m.version:04d}_{m.name}")
            common.echo(
                f"schema at version {db.current_version(ep.database_url)}"
                + ("" if applied else " (nothing to do)")
            )
        else:
            have = db.current_version(ep.database_url)
            latest = db.migrations()[-1].version
            common.echo(f"schema at version {have}, latest {latest}")
            return 0 if have == latest else 3
    return 0


def register(sub: common.SubParsers) -> None:
    """Add this module's commands to the ``estate`` parser."""
    s = sub.add_parser("db", help="schema migrations")
    s.add_argument("action", choices=["upgrade", "status"])
    s.set_defaults(func=cmd_db)
