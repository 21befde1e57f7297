"""What every command shares: output, the servers in use, signals, configuration objects.

``servers`` and ``database`` are the one way a command reaches the database and broker:
the private instances under ``var/`` are started for the block (and stopped after, unless
they were already running), or the external servers the URLs name are used as they are.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import getpass
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

from estate import db
from estate.services import Endpoints, PrivateMosquitto, PrivateServices
from estate.settings import Settings, SettingsError
from ingest.contract import Bounds
from ingest.rollup import Retention
from ingest.worker import IngestConfig

Handler = Callable[[argparse.Namespace, Settings], int]
SubParsers = Any  # argparse's _SubParsersAction is private


def echo(line: str = "") -> None:
    """A line of the command's result on stdout."""
    sys.stdout.write(line + "\n")


def echo_err(line: str) -> None:
    """A line for the person on stderr (progress, warnings, secrets shown once)."""
    sys.stderr.write(line + "\n")


@contextlib.contextmanager
def servers(settings: Settings, *, upgrade: bool = False) -> Iterator[Endpoints]:
    """The database and broker in use, up for the block; with ``upgrade`` the schema is
    migrated first."""
    with PrivateServices(settings).running() as ep:
        if upgrade:
            db.upgrade(ep.database_url)
        yield ep


@contextlib.contextmanager
def database(
    settings: Settings, *, upgrade: bool = False, autocommit: bool = False
) -> Iterator[db.Conn]:
    """A connection to the database in use (``servers`` for the block)."""
    with (
        servers(settings, upgrade=upgrade) as ep,
        db.connect(ep.database_url, autocommit=autocommit) as conn,
    ):
        yield conn


def private_mosquitto(settings: Settings) -> PrivateMosquitto | None:
    """The private broker, or None when ``MQTT_URL`` names an external one."""
    if settings.mqtt_url is not None:
        return None
    mosq = next(s for s in PrivateServices(settings).managed() if s.name == "mosquitto")
    assert isinstance(mosq, PrivateMosquitto)
    return mosq


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGINT or SIGTERM (Ctrl-C, `kill`, systemd) for the block's duration."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def actor(args: argparse.Namespace) -> str:
    """Who acts: ``--actor`` or the login running the command."""
    return str(getattr(args, "actor", None) or os.environ.get("USER", "cli"))


_zone = ZoneInfo("Asia/Shanghai")


def use_zone(name: str) -> None:
    """The zone ``local`` shows times in (``ESTATE_TIMEZONE``; set once by ``main``)."""
    global _zone  # noqa: PLW0603 (one setting for the whole command)
    _zone = ZoneInfo(name)


def zone() -> ZoneInfo:
    return _zone


def local(t: dt.datetime | None, *, seconds: bool = True, date_only: bool = False) -> str:
    """``t`` as a person reads it: in the configured zone, with its offset
    (``2026-12-05 04:00:00+08:00``); ``-`` for none."""
    if t is None:
        return "-"
    t = t.astimezone(_zone)
    if date_only:
        return f"{t:%Y-%m-%d}"
    return t.isoformat(sep=" ", timespec="seconds" if seconds else "minutes")


def parse_local(text: str) -> dt.datetime:
    """A date or time a person typed: in the configured zone unless it names its own."""
    t = dt.datetime.fromisoformat(text)
    return t if t.tzinfo is not None else t.replace(tzinfo=_zone)


def now() -> dt.datetime:
    """The wall clock, for commands (everything below takes time as a parameter)."""
    return dt.datetime.now(dt.UTC)


def ingest_config(settings: Settings, metrics_port: int | None) -> IngestConfig:
    """The worker's configuration from the settings."""
    return IngestConfig(
        batch_size=settings.ingest_batch_size,
        batch_age_s=settings.ingest_batch_age_ms / 1000,
        bounds=Bounds(
            past=dt.timedelta(seconds=settings.ts_max_past_s),
            future=dt.timedelta(seconds=settings.ts_max_future_s),
        ),
        silence_s=settings.silence_s,
        metrics_port=metrics_port,
        client_prefix=settings.ingest_client_prefix,
        catch_all=settings.ingest_catch_all,
        event_lane=settings.ingest_event_lane,
        rollup_every_s=settings.rollup_every_s,
        rollup_settle_s=settings.rollup_settle_s,
        retention=retention(settings),
    )


def retention(settings: Settings) -> Retention:
    """How long each level of data is kept, from the settings."""
    return Retention(
        raw_days=settings.retention_raw_days,
        events_days=settings.retention_events_days,
        minute_days=settings.retention_1m_days,
        hour_days=settings.retention_1h_days,
        runs_after_days=settings.runs_after_days,
    )


def read_password(args: argparse.Namespace) -> str:
    """From stdin with --password-stdin (scripts), else asked twice on the terminal."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise SettingsError("no terminal to ask for the password: use --password-stdin")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise SettingsError("the two passwords differ")
    return first
