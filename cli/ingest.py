"""``estate ingest``, ``maintain`` and ``deadletters``: the worker, rollups and retention,
rejected messages."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import threading

from alerts.stage import AlertStage
from cli import common
from estate import db
from estate.cluster import LocalCluster
from estate.mqtt import SERVICE_ACCOUNT
from estate.services import PrivateServices
from estate.settings import Settings, SettingsError
from ingest import deadletters, runs
from ingest.cluster import Holder
from ingest.rollup import apply_retention, roll_up
from ingest.worker import Shard, Worker, keep_collections_short


def cmd_ingest_cluster(args: argparse.Namespace, settings: Settings) -> int:
    """A worker of the clustered deployment: a fair share of the partitions, by lease."""
    cluster = LocalCluster(settings)
    stop = threading.Event()
    # the cluster has no Mosquitto: only the database is needed (`estate cluster up` or
    # DATABASE_URL), and it is not stopped when this worker ends
    ep = PrivateServices(settings).endpoints()
    db.upgrade(ep.database_url)
    holder = Holder(
        database_url=ep.database_url,
        mqtt_url=cluster.service_mqtt_url,
        nats_servers=cluster.nats_urls,
        partitions=cluster.partitions,
        config=common.ingest_config(settings, None),
        stage=(lambda: None)
        if args.no_alerts
        else (lambda: AlertStage(rules_path=settings.alert_rules)),
        name=args.name,
        nats_user=SERVICE_ACCOUNT,
        nats_password=cluster.service_password,
    )
    with common.stop_on_signals(stop):
        holder.run(stop)
    return 0


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    if args.cluster:
        return cmd_ingest_cluster(args, settings)
    try:
        shard = Shard.parse(args.shard)
    except ValueError as err:
        raise SettingsError(str(err)) from None
    port = settings.metrics_port
    if port is not None:
        port += shard.index  # one port per worker
    config = common.ingest_config(settings, port)
    if config.event_lane:
        # Threads take turns on the interpreter every 1 ms instead of 5: the event lane's
        # thread retakes it after each database round trip, and under load each retake
        # waited a full turn of the busy telemetry threads (bench.alerts, issue 22).
        sys.setswitchinterval(0.001)
    stop = threading.Event()
    threading.Thread(
        target=keep_collections_short, args=(stop,), name="estate-gc", daemon=True
    ).start()
    with common.servers(settings, upgrade=True) as ep:
        worker = Worker(
            database_url=ep.database_url,
            mqtt_url=ep.mqtt_url,
            shard=shard,
            config=config,
            stage=None if args.no_alerts else AlertStage(rules_path=settings.alert_rules),
        )
        with common.stop_on_signals(stop):
            worker.run(stop)
    return 0


def cmd_maintain(args: argparse.Namespace, settings: Settings) -> int:
    """One round of what ingest shard 0 does in the background: rollups, retention, then
    old days as runs (ingest.runs) when configured."""
    retention = common.retention(settings)
    with common.database(settings, upgrade=True, autocommit=True) as conn:
        now = dt.datetime.now(dt.UTC)
        r = roll_up(
            conn,
            now,
            settle_s=settings.rollup_settle_s,
            raw_horizon=retention.raw_horizon(now),
            limit=args.limit,
        )
        common.echo(f"rollups: {r.minutes} minutes and {r.hours} hours recomputed")
        if r.discarded:
            common.echo(f"  {r.discarded} dirty minutes older than the raw horizon were dropped")
        if args.no_retention:
            return 0
        for table, n in apply_retention(conn, now, retention).items():
            common.echo(f"retention: {table}: {n} chunks dropped")
        after = settings.runs_after_days if args.runs_after_days is None else args.runs_after_days
        if after:
            made = runs.keep_old_days(conn, now, dt.timedelta(days=after))
            if made.days:
                span = "a day" if made.days == 1 else f"{made.days} days"
                common.echo(f"runs: {made.readings} readings of {span} stored as {made.runs} runs")
    return 0


def cmd_deadletters(args: argparse.Namespace, settings: Settings) -> int:
    with common.database(settings) as conn:
        if args.action == "replay":
            result = deadletters.replay(
                conn, now=dt.datetime.now(dt.UTC), reason=args.reason, ids=args.id or None
            )
            common.echo(f"replayed: {result.stored} stored, {result.still_failing} still failing")
            return 0
        for reason, n in deadletters.summary(conn):
            common.echo(f"{n:8d}  {reason}")
        for d in deadletters.list_dead(
            conn, reason=args.reason, limit=args.limit, replayed=None if args.all else False
        ):
            payload = d.payload[:120].decode(errors="replace")
            state = (
                f" [replayed {common.local(d.replayed_at, seconds=False)}]" if d.replayed_at else ""
            )
            common.echo(
                f"#{d.id} {common.local(d.received_at)} {d.reason}{state}\n"
                f"    topic   {d.topic}\n    why     {d.detail}\n    payload {payload}"
            )
            if d.replay_detail and not d.replayed_at:
                common.echo(f"    replay  {d.replay_detail}")
    return 0


def register(sub: common.SubParsers) -> None:
    """Add this module's commands to the ``estate`` parser."""
    s = sub.add_parser("ingest", help="run an ingest worker (MQTT to TimescaleDB) until stopped")
    s.add_argument("--shard", default="0/1", help="k/N: own the estates with crc32(code) %% N == k")
    s.add_argument("--no-alerts", action="store_true", help="store only; evaluate no rules")
    s.add_argument(
        "--cluster", action="store_true",
        help="read the local cluster's log (estate cluster up): hold a fair share of its"
        " partitions and take over a dead worker's",
    )  # fmt: skip
    s.add_argument("--name", default="", help="this worker's name in the logs")
    s.set_defaults(func=cmd_ingest)
    s = sub.add_parser(
        "maintain",
        help="recompute pending rollups, apply retention and make runs once, then exit",
    )
    s.add_argument("--limit", type=int, default=100_000, help="at most this many buckets a level")
    s.add_argument("--no-retention", action="store_true", help="rollups only")
    s.add_argument(
        "--runs-after-days", type=float, metavar="DAYS",
        help="store raw days older than DAYS as runs (default: ESTATE_RUNS_AFTER_DAYS)",
    )  # fmt: skip
    s.set_defaults(func=cmd_maintain)
    s = sub.add_parser("deadletters", help="list or replay rejected messages")
    s.add_argument("action", choices=["list", "replay"])
    s.add_argument("--reason", help="only this reason (e.g. unknown_device)")
    s.add_argument("--id", type=int, action="append", help="only this dead letter (repeatable)")
    s.add_argument("--limit", type=int, default=20)
    s.add_argument("--all", action="store_true", help="list replayed ones too")
    s.set_defaults(func=cmd_deadletters)
