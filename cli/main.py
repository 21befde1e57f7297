"""``estate``: the parser, wired from one module per domain, and the exit codes.

Exit codes: 0 success; 1 a service or the database failed (the message says what to do);
2 bad usage, configuration or input file; 3 a check found a problem (status commands).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from collections.abc import Sequence

from alerts.rules import RulesError
from cli import (
    access,
    alerts,
    cluster,
    common,
    db,
    demo,
    dispatch,
    fund,
    ingest,
    registry,
    services,
)
from cli import simulate as simulate_cmd
from estate import db as estate_db
from estate import registry as estate_registry
from estate.services import ServiceError
from estate.settings import SettingsError, load_settings

DOMAINS = (services, db, registry, ingest, simulate_cmd, demo, access, dispatch, fund, alerts,
           cluster)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: each domain module adds its own commands."""
    p = argparse.ArgumentParser(
        prog="estate",
        description="smart-estate: monitoring, warning, dispatch and fund-backed repair "
        "for residential estates. Configuration comes from ESTATE_* variables "
        "(docs/configuration.md).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for domain in DOMAINS:
        domain.register(sub)
    return p


class LocalFormatter(logging.Formatter):
    """Log times in the configured zone with their offset (``common.local``), as the
    console shows them, not the machine's zone without a label."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        t = dt.datetime.fromtimestamp(record.created, common.zone())
        return t.isoformat(sep=" ", timespec="milliseconds")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["psql"]:
        # psql's own options (-c, -f, …) pass through untouched
        args = argparse.Namespace(func=services.cmd_psql, psql_args=argv[1:])
    else:
        args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LocalFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    try:
        settings = load_settings()
        common.use_zone(settings.timezone)
        func: common.Handler = args.func
        return func(args, settings)
    except (SettingsError, estate_registry.RegistryError, RulesError) as err:
        common.echo_err(f"estate: {err}")
        return 2
    except (ServiceError, estate_db.DatabaseError) as err:
        common.echo_err(f"estate: {err}")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`estate registry generate ... | head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
