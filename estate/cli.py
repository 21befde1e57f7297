"""The ``estate`` command line.

Exit codes: 0 success; 1 a service or the database failed (the message says what to do);
2 bad usage, configuration or input file.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import getpass
import json
import logging
import os
import random
import secrets
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg

from alerts import dispatch, ledger, responsibility
from alerts import rules as alert_rules
from alerts import store as alert_store
from alerts.notify import MqttSender, Notifier, WebhookSender
from alerts.rules import RulesError
from alerts.rules import parse as parse_rules
from alerts.stage import AlertStage
from alerts.supervise import SupervisorService
from api.auth import ApiKeyError, Role, create_key, create_user, disable_user, revoke_key
from estate import broker, db, demo, registry
from estate.generate import ProgressBar, generate, write_yaml
from estate.services import (
    Endpoints,
    PrivateMosquitto,
    PrivateServices,
    ServiceError,
    load_secrets,
    mask_url,
    port_in_use,
)
from estate.settings import Settings, SettingsError, load_settings
from fund import cases as fund_cases
from fund import ledger as fund_ledger
from ingest import deadletters
from ingest.contract import Bounds, Channel
from ingest.rollup import Retention, apply_retention, roll_up
from ingest.worker import IngestConfig, Shard, Worker
from simulators import scenarios
from simulators.devices import DeviceSim
from simulators.faults import FAULTS
from simulators.runner import MqttPublisher, build_fleet
from simulators.runner import run as run_simulation

Handler = Callable[[argparse.Namespace, Settings], int]


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def _err(line: str) -> None:
    sys.stderr.write(line + "\n")


# --------------------------------------------------------------------------- services


def cmd_services(args: argparse.Namespace, settings: Settings) -> int:
    svc = PrivateServices(settings)
    if not svc.managed():
        _out("DATABASE_URL and MQTT_URL are both set: no private services to manage")
        return 0
    if args.action == "start":
        started = svc.start()
        svc.disown()
        for st in svc.status():
            verb = "started" if st.name in started else "already running"
            _out(f"{st.name}: {verb} on {st.address} (pid {st.pid})")
    elif args.action == "stop":
        svc.stop()
        _out("private services stopped")
    else:
        statuses = svc.status()
        for st in statuses:
            pid = f" (pid {st.pid})" if st.pid else ""
            _out(f"{st.name}: {st.detail} on {st.address}{pid}")
        return 0 if all(st.running for st in statuses) else 3
    return 0


def cmd_env(args: argparse.Namespace, settings: Settings) -> int:
    ep = PrivateServices(settings).endpoints()
    show: Callable[[str], str] = (lambda u: u) if args.show_secrets else mask_url
    mqtt = urlsplit(ep.mqtt_url)
    _out(f"export DATABASE_URL={shlex.quote(show(ep.database_url))}")
    _out(f"export MQTT_URL={shlex.quote(show(ep.mqtt_url))}")
    _out(f"export MQTT_HOST={mqtt.hostname} MQTT_PORT={mqtt.port}")
    _out(
        f"export ESTATE_MQTT_DEVICE_URL={shlex.quote(ep.mqtt_device_url)}  # where devices connect"
    )
    if not args.show_secrets:
        _out('# passwords masked; `eval "$(estate env --show-secrets)"` exports them, then:')
    _out('#   psql "$DATABASE_URL"')
    _out('#   mosquitto_sub -L "$MQTT_URL/estate/v1/#" -v')
    return 0


def cmd_psql(args: argparse.Namespace, settings: Settings) -> int:
    url = PrivateServices(settings).endpoints().database_url
    os.execvp("psql", ["psql", url, *args.psql_args])  # noqa: S606  (replaces this process)


# --------------------------------------------------------------------------- database


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    with PrivateServices(settings).running() as ep:
        if args.action == "upgrade":
            applied = db.upgrade(ep.database_url)
            for m in applied:
                _out(f"applied {m.version:04d}_{m.name}")
            _out(
                f"schema at version {db.current_version(ep.database_url)}"
                + ("" if applied else " (nothing to do)")
            )
        else:
            have = db.current_version(ep.database_url)
            latest = db.migrations()[-1].version
            _out(f"schema at version {have}, latest {latest}")
            return 0 if have == latest else 3
    return 0


# --------------------------------------------------------------------------- registry


def cmd_registry(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "generate":
        bar = ProgressBar("generating")
        doc = generate(args.estates, seed=args.seed, progress=bar)
        if args.output == "-":
            write_yaml(doc, sys.stdout)
        else:
            with Path(args.output).open("w", encoding="utf-8") as f:
                write_yaml(doc, f, progress=ProgressBar("writing   "))
            _err(f"wrote {args.output}")
        return 0
    path = registry.demo_path() if args.file == "demo" else Path(args.file)
    reg = registry.read(path)
    n_dev = sum(1 for _ in reg.devices())
    _out(f"{path}: valid ({len(reg.estates)} estates, {n_dev} devices)")
    if args.action == "check":
        return 0
    with PrivateServices(settings).running() as ep:
        db.upgrade(ep.database_url)
        with db.connect(ep.database_url) as conn:
            report = registry.load(conn, reg)
        _out(f"loaded: {report}")
        synced = _sync_private_broker(settings, ep.database_url)
    if synced is not None:
        _out(f"broker: credentials and ACLs for {synced} devices applied (no restart)")
    else:
        _out("broker: external; write its files with `estate broker sync --out DIR`")
    return 0


def _registry_devices(database_url: str) -> list[tuple[str, str, str]]:
    with db.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT estate_code, kind, code FROM devices WHERE active ORDER BY estate_code, code"
        ).fetchall()
    return [(str(e), str(k), str(c)) for e, k, c in rows]


def _sync_private_broker(settings: Settings, database_url: str) -> int | None:
    """Every active device's password and ACL into the private broker, applied with
    SIGHUP; None when the broker is external."""
    if settings.mqtt_url is not None:
        return None
    mosq = next(s for s in PrivateServices(settings).managed() if s.name == "mosquitto")
    assert isinstance(mosq, PrivateMosquitto)
    return mosq.sync_devices(_registry_devices(database_url))


def cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    """Device credentials and ACLs from the registry: into the private broker (applied at
    once), or as files for an external Mosquitto (``--out``)."""
    with PrivateServices(settings).running() as ep:
        if args.out is None:
            n = _sync_private_broker(settings, ep.database_url)
            if n is None:
                raise SettingsError(
                    "the broker is external (MQTT_URL is set): use --out DIR, copy the files to"
                    " its password_file and acl_file, and send it SIGHUP"
                )
            _out(f"broker: credentials and ACLs for {n} devices applied (no restart)")
            return 0
        if settings.device_secret is None:
            raise SettingsError("--out needs ESTATE_DEVICE_SECRET (it derives device passwords)")
        service = unquote(urlsplit(ep.mqtt_url).password or "")
        n = broker.write_broker_files(
            Path(args.out),
            service_password=service,
            secret=settings.device_secret,
            devices=_registry_devices(ep.database_url),
        )
    _out(
        f"{args.out}/passwd (devices), passwd-service and acl written for {n} devices: give"
        " devices a listener of their own with passwd and use_username_as_clientid true, the"
        " service one with passwd-service (per_listener_settings true), then SIGHUP"
    )
    return 0


# --------------------------------------------------------------------------- demo


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGINT or SIGTERM (Ctrl-C, `kill`, systemd) for the block's duration."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _banner(
    ep: Endpoints,
    settings: Settings,
    *,
    api_up: bool,
    logins: list[tuple[demo.DemoLogin, str]],
) -> None:
    _out("smart-estate demo is up")
    _out(f"  database  {mask_url(ep.database_url)}")
    _out(f"  broker    {mask_url(ep.mqtt_url)}")
    if api_up:
        base = f"http://{settings.api_host}:{settings.api_port}"
        _out(f"  console   {base}/console/   (owners, no login: {base}/console/#/public/HXY)")
        _out(f"  API       {base}/api/v1 (docs: {base}/docs)")
        _out("  demo logins (passwords kept in var/demo-logins.json):")
        for login, password in logins:
            _out(f"    {login.role.value:<18} {login.name:<17} {password:<13} {login.what}")
    _out(f"  data in   {settings.var_dir}")
    _out("  the demo county's 108 simulated devices publish in real time; every 10 minutes a")
    _out("  trapped passenger (华祥苑 1号梯), a smoke alarm, a hydrant leak, a failed sump pump")
    _out("  and an e-bike in a lift play out (simulators/demo_loop.yaml). Deadlines run at the")
    _out(f"  demo tempo (responsibility list ÷ {demo.TEMPO}): unacknowledged orders escalate")
    _out("  within a minute. CLI: `.venv/bin/estate alerts`, `estate orders`, `estate env`.")
    _out("Ctrl-C stops the demo and the private servers it started.")


def _demo_fund(database_url: str) -> None:
    """Fund accounts for the demo county, each with an opening deposit (once: the keys
    make a restarted demo deposit nothing more)."""
    now = dt.datetime.now(dt.UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        fund_cases.open_accounts(conn, now)
        accounts = conn.execute("SELECT id, building_code FROM fund_accounts").fetchall()
        for account, building in accounts:
            amount = 80_000_000 if building else 20_000_000  # 800,000 / 200,000 yuan
            fund_cases.deposit(conn, int(account), amount, kind="deposit",
                               key=f"demo-opening-{account}", actor="demo", now=now)  # fmt: skip
    _out(f"fund: {len(accounts)} accounts with their opening deposits")


def _demo_status(database_url: str) -> str:
    with db.connect(database_url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM telemetry), (SELECT count(*) FROM events),"
            " (SELECT count(*) FROM dead_letters),"
            " (SELECT count(*) FILTER (WHERE online) FROM device_state),"
            " (SELECT count(*) FROM device_state),"
            " (SELECT count(*) FROM alerts WHERE state = 'open' AND muted_by IS NULL),"
            " (SELECT string_agg(DISTINCT alert_type, ', ') FROM alerts"
            "   WHERE state = 'open' AND muted_by IS NULL),"
            " (SELECT count(*) FROM work_orders WHERE state NOT IN ('closed', 'cancelled')),"
            " (SELECT count(*) FROM work_order_breaches),"
            " (SELECT count(*) FROM supervision_items WHERE closed_at IS NULL)"
        ).fetchone()
    assert row is not None
    tel, evt, dead, online, known, alerts, types, orders, breaches, items = row
    return (
        f"stored {tel} readings, {evt} events; {dead} dead letters; {online}/{known} devices"
        f" online; {alerts} open alerts"
        + (f" ({types})" if types else "")
        + f"; {orders} live work orders, {breaches} deadline breaches, {items} overdue items"
    )


def _api_server(database_url: str, mqtt_url: str, settings: Settings) -> Any:
    """The API as a uvicorn server for a thread of the demo, or None if its port is taken."""
    import uvicorn  # noqa: PLC0415 - only the API needs the server

    from api.app import create_app  # noqa: PLC0415

    if port_in_use(settings.api_port):
        _err(f"API not started: port {settings.api_port} is taken (set ESTATE_API_PORT)")
        return None
    config = uvicorn.Config(
        create_app(database_url, token_ttl_s=settings.api_token_ttl_s, mqtt_url=mqtt_url),
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
    )
    return uvicorn.Server(config)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    stop = threading.Event()
    # Signals first: a Ctrl-C right after the banner must still stop everything cleanly.
    with (
        _stop_on_signals(stop),
        PrivateServices(settings).running() as ep,
        contextlib.ExitStack() as stack,
    ):
        applied = db.upgrade(ep.database_url)
        _out(
            f"schema at version {db.current_version(ep.database_url)} "
            f"({len(applied)} migration(s) applied now)"
        )
        reg = registry.read(registry.demo_path())
        with db.connect(ep.database_url) as conn:
            _out(f"demo registry loaded: {registry.load(conn, reg)}")
        _demo_fund(ep.database_url)
        with db.connect(ep.database_url, autocommit=True) as conn:
            logins = demo.logins(conn, settings.var_dir)
            version = demo.use_tempo(conn, dt.datetime.now(dt.UTC))
        if version is not None:
            _out(
                f"responsibility list version {version}: the demo tempo (deadlines ÷ {demo.TEMPO})"
            )
        worker = Worker(
            database_url=ep.database_url,
            mqtt_url=ep.mqtt_url,
            config=_ingest_config(settings, settings.metrics_port),
            stage=AlertStage(rules_path=settings.alert_rules),
        )
        publisher = stack.enter_context(broker.service_publisher(ep.mqtt_url, "demo-supervise"))
        threads = [
            threading.Thread(target=worker.run, args=(stop,), name="ingest"),
            threading.Thread(
                target=_supervisor(ep.database_url, publisher).run, args=(stop,), name="supervise"
            ),
        ]
        api = None if args.once else _api_server(ep.database_url, ep.mqtt_url, settings)
        if api is not None:
            threads.append(threading.Thread(target=api.run, name="api"))
        if not args.once:
            args.mode, args.connections = "device", 1
            pub = _simulation_publisher(args, settings, ep, reg)
            fleet = build_fleet(reg, seed=1)
            threads.append(
                threading.Thread(
                    target=run_simulation,
                    args=(fleet, pub),
                    name="simulator",
                    kwargs={
                        "start": dt.datetime.now(dt.UTC),
                        "duration_s": 10 * 365 * 86400.0,
                        "speed": 1.0,
                        "loop": scenarios.load_loop(),
                        "stop": stop,
                    },
                )
            )
        for t in threads:
            t.start()
        _banner(ep, settings, api_up=api is not None, logins=logins)
        sys.stdout.flush()
        if args.once:
            stop.set()
        while not stop.wait(10):
            _out(f"{dt.datetime.now():%H:%M:%S} {_demo_status(ep.database_url)}")
            sys.stdout.flush()
        stop.set()
        _out("stopping")
        if api is not None:
            api.should_exit = True
        for t in threads:
            t.join(60)
    return 0


# --------------------------------------------------------------------------- ingest


def _ingest_config(settings: Settings, metrics_port: int | None) -> IngestConfig:
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
        rollup_every_s=settings.rollup_every_s,
        rollup_settle_s=settings.rollup_settle_s,
        retention=_retention(settings),
    )


def _retention(settings: Settings) -> Retention:
    return Retention(
        raw_days=settings.retention_raw_days,
        events_days=settings.retention_events_days,
        minute_days=settings.retention_1m_days,
        hour_days=settings.retention_1h_days,
    )


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn  # noqa: PLC0415 - only this command needs the server

    from api.app import create_app  # noqa: PLC0415

    with PrivateServices(settings).running() as ep:
        db.upgrade(ep.database_url)
        host, port = args.host or settings.api_host, args.port or settings.api_port
        _out(f"API on http://{host}:{port}/api/v1  (OpenAPI docs: http://{host}:{port}/docs)")
        uvicorn.run(
            create_app(ep.database_url, token_ttl_s=settings.api_token_ttl_s, mqtt_url=ep.mqtt_url),
            host=host,
            port=port,
            log_level="info",
        )
    return 0


def cmd_apikey(args: argparse.Namespace, settings: Settings) -> int:
    if args.action != "list" and not args.name:
        raise SettingsError(f"estate apikey {args.action} needs a NAME")
    with PrivateServices(settings).running() as ep:
        db.upgrade(ep.database_url)
        with psycopg.connect(ep.database_url, autocommit=True) as conn:
            if args.action == "add":
                try:
                    key = create_key(
                        conn, args.name, Role(args.role), org_code=args.org, area_code=args.area
                    )
                except ApiKeyError as err:
                    raise SettingsError(str(err)) from None
                _out(key)
                _err("this key is shown once: store it now")
            elif args.action == "revoke":
                if not revoke_key(conn, args.name):
                    raise SettingsError(f"no active key named {args.name!r}")
                _out(f"revoked {args.name}")
            else:
                for row in conn.execute(
                    "SELECT name, role, coalesce(org_code, area_code, ''), created_at,"
                    " last_used_at, revoked_at FROM api_keys ORDER BY name"
                ):
                    name, role, bound, created, used, revoked = row
                    state = f"revoked {revoked:%Y-%m-%d}" if revoked else "active"
                    _out(
                        f"{name:24} {role:18} {bound:12} created {created:%Y-%m-%d}"
                        f"  last used {used or '-'}  {state}"
                    )
    return 0


def _read_password(args: argparse.Namespace) -> str:
    """From stdin with --password-stdin (scripts), else asked twice on the terminal."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise SettingsError("no terminal to ask for the password: use --password-stdin")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise SettingsError("the two passwords differ")
    return first


def cmd_users(args: argparse.Namespace, settings: Settings) -> int:
    """People who log in with a password (argon2id) for short-lived tokens."""
    if args.action != "list" and not args.name:
        raise SettingsError(f"estate users {args.action} needs a NAME")
    with PrivateServices(settings).running() as ep:
        db.upgrade(ep.database_url)
        with psycopg.connect(ep.database_url, autocommit=True) as conn:
            if args.action == "add":
                password = _read_password(args)
                try:
                    create_user(
                        conn, args.name, Role(args.role), password, org_code=args.org,
                        area_code=args.area, display_name=args.display_name or "",
                    )  # fmt: skip
                except ApiKeyError as err:
                    raise SettingsError(str(err)) from None
                _out(f"user {args.name} ({args.role}) added; log in at POST /api/v1/auth/token")
            elif args.action == "disable":
                if not disable_user(conn, args.name, dt.datetime.now(dt.UTC)):
                    raise SettingsError(f"no active user named {args.name!r}")
                _out(f"disabled {args.name}: their tokens no longer work")
            else:
                for name, role, bound, last, disabled, locked in conn.execute(
                    "SELECT name, role, coalesce(org_code, area_code, ''), last_login_at,"
                    " disabled_at, locked_until FROM users ORDER BY name"
                ):
                    state = (
                        "disabled"
                        if disabled
                        else f"locked until {locked:%H:%M}"
                        if (locked and locked > dt.datetime.now(dt.UTC))
                        else "active"
                    )
                    seen = f"{last:%Y-%m-%d %H:%M}" if last else "never"
                    _out(f"{name:24} {role:18} {bound:12} last login {seen}  {state}")
    return 0


def cmd_alerts(args: argparse.Namespace, settings: Settings) -> int:
    """Open alerts (or all) newest first, with their incident and whether muted; or a
    control room's verdict on a fire alarm."""
    if args.action in ("confirm", "false-alarm"):
        if args.id is None:
            raise SettingsError(f"estate alerts {args.action} needs --id")
        cause = args.cause if args.action == "false-alarm" else None
        if args.action == "false-alarm" and not cause:
            raise SettingsError(
                "estate alerts false-alarm needs --cause, one of "
                + ", ".join(alert_store.FALSE_ALARM_CAUSES)
                + " (other needs --note)"
            )
        with PrivateServices(settings).running() as ep, db.connect(ep.database_url) as conn:
            try:
                dispatch.fire_verdict(
                    conn,
                    args.id,
                    actor=args.actor or os.environ.get("USER", "cli"),
                    now=dt.datetime.now(dt.UTC),
                    false_alarm_cause=cause,
                    note=args.note,
                )
            except (alert_store.AlertActionError, dispatch.OrderActionError) as err:
                raise SettingsError(str(err)) from None
            conn.commit()
        _out(f"alert {args.id}: {'false alarm' if cause else 'confirmed'}")
        return 0
    with PrivateServices(settings).running() as ep, db.connect(ep.database_url) as conn:
        rows = conn.execute(
            "SELECT id, first_seen, severity, alert_type, estate_code,"
            " coalesce(building_code, '-'), device_code, state, occurrences,"
            " coalesce(confirmation, ''), coalesce(muted_by, ''), incident_id FROM alerts"
            " WHERE (%(all)s OR state = 'open') AND (%(e)s::text IS NULL OR estate_code = %(e)s)"
            " ORDER BY id DESC LIMIT %(n)s",
            {"all": args.all, "e": args.estate, "n": args.limit},
        ).fetchall()
    for r in rows:
        aid, first, sev, typ, est, bld, dev, state, n, conf, muted, inc = r
        extra = " ".join(str(x) for x in (conf, f"muted by {muted}" if muted else "") if x)
        _out(
            f"{aid:6d} {first:%Y-%m-%d %H:%M:%S} {sev:8} {typ:28} {est}/{bld}/{dev}"
            f" {state} x{n} incident {inc or '-'} {extra}".rstrip()
        )
    return 0


def _actor(args: argparse.Namespace) -> str:
    return str(args.actor or os.environ.get("USER", "cli"))


def cmd_orders(args: argparse.Namespace, settings: Settings) -> int:
    """Live work orders (or all), or a person's step on one."""
    now = dt.datetime.now(dt.UTC)
    with PrivateServices(settings).running() as ep, db.connect(ep.database_url) as conn:
        if args.action != "list":
            if args.id is None:
                raise SettingsError(f"estate orders {args.action} needs --id")
            try:
                state = dispatch.act(
                    conn, args.id, args.action, actor=_actor(args), now=now, note=args.note
                )
            except dispatch.OrderActionError as err:
                raise SettingsError(str(err)) from None
            conn.commit()
            _out(f"work order {args.id}: {state}")
            return 0
        rows = conn.execute(
            "SELECT id, created_at, severity, state, alert_type, estate_code,"
            " coalesce(building_code, '-'), device_code, coalesce(assignee, '-'),"
            " escalation_level, ack_due, arrive_due, resolve_due FROM work_orders"
            " WHERE (%(all)s OR state NOT IN ('closed', 'cancelled'))"
            " AND (%(e)s::text IS NULL OR estate_code = %(e)s) ORDER BY id DESC LIMIT %(n)s",
            {"all": args.all, "e": args.estate, "n": args.limit},
        ).fetchall()
    for oid, at, sev, st, typ, est, bld, dev, who, lvl, ack, arrive, resolve in rows:
        dues = " ".join(
            f"{name} {t:%H:%M:%S}"
            for name, t in (("ack", ack), ("arrive", arrive), ("resolve", resolve))
            if t is not None
        )
        _out(
            f"{oid:6d} {at:%Y-%m-%d %H:%M:%S} {sev:8} {st:12} {typ:26} {est}/{bld}/{dev}"
            f" → {who} (escalation {lvl}) due: {dues}"
        )
    return 0


def cmd_webhook(args: argparse.Namespace, settings: Settings) -> int:
    """Register an organisation's webhook (its signing secret is shown once) or list them."""
    with PrivateServices(settings).running() as ep, db.connect(ep.database_url) as conn:
        if args.action == "add":
            if not (args.org and args.url):
                raise SettingsError("estate webhook add needs --org and --url")
            secret = secrets.token_urlsafe(32)
            try:
                conn.execute(
                    "INSERT INTO webhooks (org_code, url, secret) VALUES (%s, %s, %s)",
                    (args.org, args.url, secret),
                )
            except psycopg.errors.ForeignKeyViolation:
                raise SettingsError(f"organisation {args.org!r} is not in the registry") from None
            except psycopg.errors.CheckViolation:
                raise SettingsError(f"{args.url!r} is not an http(s) URL") from None
            except psycopg.errors.UniqueViolation:
                raise SettingsError(f"{args.org} has that webhook already") from None
            conn.commit()
            _out(f"webhook for {args.org}: {args.url}\nsigning secret (shown once): {secret}")
            return 0
        for org, url, active in conn.execute(
            "SELECT org_code, url, active FROM webhooks ORDER BY org_code, url"
        ):
            _out(f"{org:12} {url} {'' if active else '(inactive)'}".rstrip())
    return 0


def cmd_ledger(args: argparse.Namespace, settings: Settings) -> int:
    """Write the ledger of a period as CSV or Excel (by the output file's extension)."""
    start = dt.datetime.fromisoformat(args.start).replace(tzinfo=dt.UTC)
    end = dt.datetime.fromisoformat(args.end).replace(tzinfo=dt.UTC)
    out = Path(args.output)
    if out.suffix not in (".csv", ".xlsx"):
        raise SettingsError(f"{out}: the ledger is written as .csv or .xlsx")
    with PrivateServices(settings).running() as ep, db.connect(ep.database_url) as conn:
        lines = ledger.lines(conn, start=start, end=end, estate=args.estate, unit=args.unit)
    if out.suffix == ".csv":
        out.write_text(ledger.to_csv(lines), encoding="utf-8-sig")
    else:
        out.write_bytes(ledger.to_xlsx(lines, title=f"ledger {args.start} to {args.end}"))
    _out(f"{out}: {len(lines)} work orders")
    return 0


def cmd_responsibility(args: argparse.Namespace, settings: Settings) -> int:
    """Show the list in force, check or push a file as the next version, or the history."""
    if args.action in ("check", "push"):
        if not args.file:
            raise SettingsError(f"estate responsibility {args.action} needs a file")
        try:
            rows = responsibility.load(Path(args.file))
        except (OSError, responsibility.ResponsibilityError) as err:
            raise SettingsError(str(err)) from None
        if args.action == "check":
            _out(f"{args.file}: {len(rows.rows)} rows, valid")
            return 0
    with PrivateServices(settings).running() as ep, db.connect(ep.database_url) as conn:
        if args.action == "push":
            if not args.comment:
                raise SettingsError("estate responsibility push needs --comment (what changed)")
            number = responsibility.save(
                conn, rows, author=_actor(args), comment=args.comment, based_on=None,
                now=dt.datetime.now(dt.UTC),
            )  # fmt: skip
            conn.commit()
            _out(f"responsibility list version {number} saved (in force within a second)")
        elif args.action == "history":
            for v in responsibility.history(conn):
                _out(f"v{v.version} {v.created_at:%Y-%m-%d %H:%M} {v.author}: {v.comment}")
        else:
            v = responsibility.current(conn)
            _out(f"# version {v.version} ({v.author}: {v.comment})")
            for r in v.rows.rows:
                where = "/".join(x for x in (r.scope.estate, r.scope.building) if x) or "city"
                what = ",".join(r.alerts) if r.alerts else "*"
                who = r.responsible if r.dispatch else "(recorded, not dispatched)"
                _out(f"{where:10} {r.kind:9} {what:50} ≥{r.min_severity:8} → {who}")
    return 0


def cmd_supervise(args: argparse.Namespace, settings: Settings) -> int:
    """Dispatch, deadlines, escalation, look-back and notification delivery until stopped."""
    with PrivateServices(settings).running() as ep:
        db.upgrade(ep.database_url)
        stop = threading.Event()
        with _stop_on_signals(stop), broker.service_publisher(ep.mqtt_url, "supervise") as publish:
            _supervisor(ep.database_url, publish).run(stop)
    return 0


def _supervisor(database_url: str, publish: Callable[[str, bytes], None]) -> SupervisorService:
    mqtt_sender = MqttSender(publish)
    return SupervisorService(
        database_url,
        Notifier({"mqtt": mqtt_sender, "stream": mqtt_sender, "webhook": WebhookSender()}),
    )


def cmd_fund(args: argparse.Namespace, settings: Settings) -> int:
    """The maintenance fund: open accounts, deposits and interest, verify, yearly report."""
    now = dt.datetime.now(dt.UTC)
    with PrivateServices(settings).running() as ep:
        db.upgrade(ep.database_url)
        with psycopg.connect(ep.database_url, autocommit=True) as conn:
            if args.action == "verify":
                result = fund_ledger.verify(conn)
                if result.ok:
                    _out(f"fund ledger: {result.entries} entries, chain intact, balances agree")
                    return 0
                _out(f"fund ledger: {len(result.problems)} problem(s) in {result.entries} entries")
                for problem in result.problems:
                    _out(f"  {problem}")
                return 3
            if args.action == "open":
                _out(f"{fund_cases.open_accounts(conn, now)} fund accounts opened")
                return 0
            if args.action == "report":
                if not args.estate:
                    raise SettingsError("estate fund report needs --estate")
                for r in fund_cases.yearly_report(conn, args.estate, args.year or now.year):
                    _out(
                        f"{r['name']}: opening {r['opening_fen'] / 100:,.2f}, deposits"
                        f" {r['deposits_fen'] / 100:,.2f}, interest {r['interest_fen'] / 100:,.2f},"
                        f" repairs {r['repairs_fen'] / 100:,.2f}, closing"
                        f" {r['closing_fen'] / 100:,.2f} yuan"
                    )
                return 0
            if not (args.estate and args.amount_fen and args.key):
                raise SettingsError(
                    f"estate fund {args.action} needs --estate, --amount-fen, --key"
                )
            try:
                account = fund_cases.account_of(conn, args.estate, args.building)
                jid = fund_cases.deposit(
                    conn, account, args.amount_fen, kind=args.action, key=args.key,
                    actor=_actor(args), now=now, memo=args.memo or "",
                )  # fmt: skip
            except (fund_cases.CaseError, fund_ledger.LedgerError) as err:
                raise SettingsError(str(err)) from None
            _out(f"journal entry {jid}: {args.amount_fen} fen into account {account}")
    return 0


def cmd_silence(args: argparse.Namespace, settings: Settings) -> int:
    """Mute matching alerts for maintenance work (they are still stored)."""
    with PrivateServices(settings).running() as ep, db.connect(ep.database_url) as conn:
        if args.action == "add":
            if not (args.estate and args.reason and args.hours):
                raise SettingsError("estate silence add needs --estate, --hours and --reason")
            start = dt.datetime.now(dt.UTC)
            ends = start + dt.timedelta(hours=args.hours)
            try:
                sid = alert_store.add_silence(
                    conn,
                    book=alert_rules.load(settings.alert_rules),
                    estate=args.estate,
                    building=args.building,
                    device=args.device,
                    alert_type=args.alert,
                    starts=start,
                    ends=ends,
                    author=args.author or os.environ.get("USER", "cli"),
                    reason=args.reason,
                )
            except alert_store.AlertActionError as err:
                raise SettingsError(str(err)) from None
            conn.commit()
            _out(f"silence {sid} until {ends:%Y-%m-%d %H:%M %Z}")
            return 0
        for r in conn.execute(
            "SELECT id, estate_code, coalesce(building_code, '*'), coalesce(device_code, '*'),"
            " coalesce(alert_type, '*'), starts_at, ends_at, author, reason FROM silences"
            " WHERE ends_at > now() ORDER BY ends_at"
        ):
            _out(
                f"{r[0]:5d} {r[1]}/{r[2]}/{r[3]} {r[4]} until {r[6]:%Y-%m-%d %H:%M} "
                f"by {r[7]}: {r[8]}"
            )
    return 0


def cmd_rules(args: argparse.Namespace, settings: Settings) -> int:
    """Validate an alert rules file (default: the one in force) and summarise it."""
    from alerts.rules import shipped_path  # noqa: PLC0415

    path = Path(args.file) if args.file else (settings.alert_rules or shipped_path())
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SettingsError(f"cannot read {path}: {err.strerror}") from None
    book = parse_rules(text, source=str(path))
    kinds: dict[str, int] = {}
    for r in book.rules:
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    summary = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
    _out(f"{path}: {len(book.rules)} rules ({summary}), {len(book.overrides)} overrides,")
    _out(
        f"  {len(book.inhibit)} inhibit rules; fire alarms confirmed within "
        f"{book.fire_confirmation.window_s:g} s"
    )
    return 0


def cmd_maintain(args: argparse.Namespace, settings: Settings) -> int:
    """One round of what ingest shard 0 does in the background: rollups, then retention."""
    retention = _retention(settings)
    with PrivateServices(settings).running() as ep:
        db.upgrade(ep.database_url)
        with psycopg.connect(ep.database_url, autocommit=True) as conn:
            now = dt.datetime.now(dt.UTC)
            r = roll_up(
                conn,
                now,
                settle_s=settings.rollup_settle_s,
                raw_horizon=retention.raw_horizon(now),
                limit=args.limit,
            )
            _out(f"rollups: {r.minutes} minutes and {r.hours} hours recomputed")
            if r.discarded:
                _out(f"  {r.discarded} dirty minutes older than the raw horizon were dropped")
            if args.no_retention:
                return 0
            for table, n in apply_retention(conn, now, retention).items():
                _out(f"retention: {table}: {n} chunks dropped")
    return 0


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    try:
        shard = Shard.parse(args.shard)
    except ValueError as err:
        raise SettingsError(str(err)) from None
    port = settings.metrics_port
    if port is not None:
        port += shard.index  # one port per worker
    with PrivateServices(settings).running() as ep:
        db.upgrade(ep.database_url)
        worker = Worker(
            database_url=ep.database_url,
            mqtt_url=ep.mqtt_url,
            shard=shard,
            config=_ingest_config(settings, port),
            stage=None if args.no_alerts else AlertStage(rules_path=settings.alert_rules),
        )
        stop = threading.Event()
        with _stop_on_signals(stop):
            worker.run(stop)
    return 0


def cmd_deadletters(args: argparse.Namespace, settings: Settings) -> int:
    with PrivateServices(settings).running() as ep, db.connect(ep.database_url) as conn:
        if args.action == "replay":
            result = deadletters.replay(
                conn, now=dt.datetime.now(dt.UTC), reason=args.reason, ids=args.id or None
            )
            _out(f"replayed: {result.stored} stored, {result.still_failing} still failing")
            return 0
        for reason, n in deadletters.summary(conn):
            _out(f"{n:8d}  {reason}")
        for d in deadletters.list_dead(
            conn, reason=args.reason, limit=args.limit, replayed=None if args.all else False
        ):
            payload = d.payload[:120].decode(errors="replace")
            state = f" [replayed {d.replayed_at:%Y-%m-%d %H:%M}]" if d.replayed_at else ""
            _out(
                f"#{d.id} {d.received_at:%Y-%m-%d %H:%M:%S} {d.reason}{state}\n"
                f"    topic   {d.topic}\n    why     {d.detail}\n    payload {payload}"
            )
            if d.replay_detail and not d.replayed_at:
                _out(f"    replay  {d.replay_detail}")
    return 0


# --------------------------------------------------------------------------- simulate


def _simulation_publisher(
    args: argparse.Namespace, settings: Settings, ep: Endpoints, reg: registry.Registry
) -> MqttPublisher:
    """A publisher for the broker in use; in device mode it connects where devices do,
    and with the private broker the registry's device credentials are written first."""
    mqtt = urlsplit(ep.mqtt_device_url if args.mode == "device" else ep.mqtt_url)
    secret = settings.device_secret
    if args.mode == "device" and settings.mqtt_url is None:
        mosq = next(s for s in PrivateServices(settings).managed() if s.name == "mosquitto")
        assert isinstance(mosq, PrivateMosquitto)
        secret = load_secrets(settings.var_dir)["device_secret"]
        mosq.sync_devices((e.code, d.kind, d.code) for e, _, d in reg.devices())
    if args.mode == "device" and secret is None:
        raise SettingsError("device mode with an external broker needs ESTATE_DEVICE_SECRET")
    return MqttPublisher(
        host=mqtt.hostname or "127.0.0.1",
        port=mqtt.port or 1883,
        mode=args.mode,
        device_secret=secret,
        username=unquote(mqtt.username or ""),
        password=unquote(mqtt.password or ""),
        connections=args.connections,
    )


def _inject_faults(names: list[str], sim: DeviceSim, mqtt_url: str, seed: int) -> dict[str, int]:
    """Publish each named fault once (as the service account); count by expected outcome."""
    mqtt = urlsplit(mqtt_url)
    pub = MqttPublisher(
        host=mqtt.hostname or "127.0.0.1",
        port=mqtt.port or 1883,
        mode="shared",
        username=unquote(mqtt.username or ""),
        password=unquote(mqtt.password or ""),
        connections=1,
    )
    rng = random.Random(seed)  # noqa: S311  (simulation)
    injected: dict[str, int] = {}
    pub.connect([], dt.datetime.now(dt.UTC))
    try:
        for name in names:
            for msg in FAULTS[name](sim, dt.datetime.now(dt.UTC), rng):
                pub.publish(sim, msg.topic, msg.payload, retain=False)
                injected[msg.outcome] = injected.get(msg.outcome, 0) + 1
    finally:
        pub.close()
    return injected


def _lead_s(speed: float, duration_s: float) -> float:
    """How far in the past a simulation at ``speed`` (0: as fast as possible) starts.

    Faster than real time, the simulated clock would run ahead of the wall clock and
    ingest would refuse timestamps from the future: start in the past instead, so that
    the simulated run ends about when the real one does.
    """
    if speed == 0:
        return duration_s
    return duration_s * (1 - 1 / speed) if speed > 1 else 0.0


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    all_scenarios = scenarios.load()
    fault_names = [f for f in (args.faults or "").split(",") if f]
    unknown = sorted(set(fault_names) - set(FAULTS))
    if unknown:
        raise SettingsError(f"unknown fault(s) {unknown}; known: {', '.join(FAULTS)}")
    if args.list_scenarios:
        for sc in all_scenarios.values():
            _out(f"{sc.name:26} {sc.duration_s:6.0f} s  {sc.title}")
        return 0
    if args.scenario and args.scenario not in all_scenarios:
        raise SettingsError(
            f"no scenario {args.scenario!r}; see `estate simulate --list-scenarios`"
        )
    scenario = all_scenarios[args.scenario] if args.scenario else None
    reg = registry.read(registry.demo_path() if args.registry == "demo" else Path(args.registry))
    fleet = build_fleet(
        reg,
        seed=args.seed,
        estates=[scenario.estate] if scenario else (args.estate or None),
        devices=scenario.devices if scenario else None,
        skew_s=args.skew,
        jitter_s=args.jitter,
    )
    if not fleet:
        raise SettingsError("no devices match; check --estate against the registry")
    tick = args.tick or (scenario.tick_s if scenario else 1.0)
    if args.rate:
        for sim in fleet:
            sim.interval_s = len(fleet) / args.rate
        tick = min(tick, len(fleet) / args.rate)
    duration = args.duration or (scenario.duration_s if scenario else 60.0)
    lead = _lead_s(args.speed, duration)
    with PrivateServices(settings).running() as ep:
        pub = _simulation_publisher(args, settings, ep, reg)
        report = run_simulation(
            fleet,
            pub,
            start=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=lead),
            duration_s=duration,
            tick_s=tick,
            speed=args.speed,
            scenario=scenario,
        )
        injected = _inject_faults(fault_names, fleet[0], ep.mqtt_url, args.seed)
    if args.report:
        summary = report.as_dict() | {"faults_injected": injected}
        Path(args.report).write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    _out(
        f"sent {report.total} messages from {len(fleet)} devices over {duration:.0f} s "
        f"simulated (telemetry {report.count(Channel.TELEMETRY)}, "
        f"events {report.count(Channel.EVENT)})"
        + (f"; faults injected {injected}" if injected else "")
    )
    if report.behind_s > 1:
        _err(
            f"estate: the simulator fell {report.behind_s:.1f} s behind the requested pace "
            "(too many devices or too high a rate for this machine); figures above are what "
            "was sent, not the requested rate"
        )
    if not args.report:
        for dev, per in sorted(report.devices.items()):
            cols = ", ".join(
                f"{ch} {c.count} (seq {c.first_seq}..{c.last_seq})" for ch, c in per.items()
            )
            _out(f"  {dev}: {cols}")
    return 0


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="estate",
        description="smart-estate: monitoring, warning, dispatch and fund-backed repair "
        "for residential estates. Configuration comes from ESTATE_* variables (see README).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser(
        "services", help="start, stop or inspect the private TimescaleDB and Mosquitto"
    )
    s.add_argument("action", choices=["start", "stop", "status"])
    s.set_defaults(func=cmd_services)

    s = sub.add_parser("env", help="print the database and broker URLs in use")
    s.add_argument("--show-secrets", action="store_true", help="print passwords instead of ***")
    s.set_defaults(func=cmd_env)

    s = sub.add_parser("psql", help="open psql on the database in use")
    s.add_argument("psql_args", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_psql)

    s = sub.add_parser("db", help="schema migrations")
    s.add_argument("action", choices=["upgrade", "status"])
    s.set_defaults(func=cmd_db)

    _add_data_commands(sub)
    _add_run_commands(sub)
    _add_access_commands(sub)
    _add_dispatch_commands(sub)
    _add_alert_commands(sub)
    return p


SubParsers = Any  # argparse's _SubParsersAction is private


def _add_data_commands(sub: SubParsers) -> None:
    s = sub.add_parser("registry", help="load, check or generate a registry YAML file")
    rsub = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (
        ("load", "validate FILE and load it into the database"),
        ("check", "validate FILE only"),
    ):
        r = rsub.add_parser(name, help=text)
        r.add_argument("file", help="registry YAML file, or 'demo' for the shipped demo county")
        r.set_defaults(func=cmd_registry)
    r = rsub.add_parser("generate", help="write a synthetic city of N estates")
    r.add_argument("--estates", type=int, required=True, metavar="N")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("-o", "--output", default="-", help="output file (default: stdout)")
    r.set_defaults(func=cmd_registry)


def _add_alert_commands(sub: SubParsers) -> None:
    s = sub.add_parser("alerts", help="list alerts; confirm a fire alarm or call it false")
    s.add_argument("action", nargs="?", default="list", choices=["list", "confirm", "false-alarm"])
    s.add_argument("--id", type=int, help="the alert (confirm, false-alarm)")
    s.add_argument(
        "--cause",
        choices=list(alert_store.FALSE_ALARM_CAUSES),
        help="what set off a false alarm (false-alarm)",
    )
    s.add_argument("--note", help="what, in words (false-alarm --cause other)")
    s.add_argument("--actor", help="who decides (default: $USER)")
    s.add_argument("--all", action="store_true", help="cleared ones too")
    s.add_argument("--estate")
    s.add_argument("--limit", type=int, default=50)
    s.set_defaults(func=cmd_alerts)

    s = sub.add_parser("silence", help="mute matching alerts for a while (maintenance work)")
    s.add_argument("action", choices=["add", "list"])
    s.add_argument("--estate")
    s.add_argument("--building")
    s.add_argument("--device")
    s.add_argument("--alert", help="alert type, e.g. fire.door_open")
    s.add_argument("--hours", type=float)
    s.add_argument("--reason")
    s.add_argument("--author")
    s.set_defaults(func=cmd_silence)

    s = sub.add_parser("rules", help="check an alert rules file")
    s.add_argument("action", choices=["check"])
    s.add_argument("file", nargs="?", help="default: ESTATE_ALERT_RULES or the shipped rules")
    s.set_defaults(func=cmd_rules)


def _add_dispatch_commands(sub: SubParsers) -> None:
    s = sub.add_parser("orders", help="list work orders, or acknowledge/arrive/resolve/cancel")
    s.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=["list", "acknowledge", "arrive", "resolve", "cancel"],
    )
    s.add_argument("--id", type=int, help="the work order (every action but list)")
    s.add_argument("--note", help="a note; the reason, to cancel")
    s.add_argument("--actor", help="who is acting (default: $USER)")
    s.add_argument("--estate")
    s.add_argument("--all", action="store_true", help="closed and cancelled ones too")
    s.add_argument("--limit", type=int, default=50)
    s.set_defaults(func=cmd_orders)

    s = sub.add_parser("webhook", help="register an organisation's webhook, or list them")
    s.add_argument("action", choices=["add", "list"])
    s.add_argument("--org")
    s.add_argument("--url")
    s.set_defaults(func=cmd_webhook)

    s = sub.add_parser("ledger", help="write the work-order ledger of a period (.csv or .xlsx)")
    s.add_argument("--start", required=True, help="UTC date or time, e.g. 2026-11-01")
    s.add_argument("--end", required=True, help="UTC, exclusive")
    s.add_argument("--estate")
    s.add_argument("--unit", help="only orders assigned to this organisation")
    s.add_argument("-o", "--output", required=True, help="ledger.csv or ledger.xlsx")
    s.set_defaults(func=cmd_ledger)

    s = sub.add_parser("responsibility", help="the responsibility list: show, check, push, history")
    s.add_argument("action", choices=["show", "check", "push", "history"])
    s.add_argument("file", nargs="?", help="a list YAML (check, push)")
    s.add_argument("--comment", help="what changed (push)")
    s.add_argument("--actor", help="who (default: $USER)")
    s.set_defaults(func=cmd_responsibility)

    s = sub.add_parser("fund", help="the maintenance fund: open, deposit, interest, verify, report")
    s.add_argument("action", choices=["open", "deposit", "interest", "verify", "report"])
    s.add_argument("--estate")
    s.add_argument("--building", help="the building's account (default: the estate's)")
    s.add_argument("--amount-fen", type=int, help="amount in fen (1 yuan = 100 fen)")
    s.add_argument("--key", help="idempotency key: the same key twice moves money once")
    s.add_argument("--memo")
    s.add_argument("--year", type=int, help="report: the year (default: this one)")
    s.add_argument("--actor", help="who (default: $USER)")
    s.set_defaults(func=cmd_fund)


def _add_access_commands(sub: SubParsers) -> None:
    s = sub.add_parser("apikey", help="add, list or revoke API keys")
    s.add_argument("action", choices=["add", "list", "revoke"])
    s.add_argument("name", nargs="?", help="the key's name (add, revoke)")
    s.add_argument("--role", choices=[r.value for r in Role], default="admin")
    s.add_argument("--org", help="organisation code (operator, manager, maintenance)")
    s.add_argument("--area", help="area code (inspectors, street office)")
    s.set_defaults(func=cmd_apikey)

    s = sub.add_parser("broker", help="device credentials and ACLs from the registry")
    s.add_argument("action", choices=["sync"])
    s.add_argument("--out", help="write passwd and acl here (for an external Mosquitto)")
    s.set_defaults(func=cmd_broker)

    s = sub.add_parser("users", help="add, list or disable people who log in with a password")
    s.add_argument("action", choices=["add", "list", "disable"])
    s.add_argument("name", nargs="?", help="the login name (add, disable)")
    s.add_argument("--role", choices=[r.value for r in Role], default="operator")
    s.add_argument("--org", help="organisation code (operator, manager, maintenance)")
    s.add_argument("--area", help="area code (inspectors, street office)")
    s.add_argument("--display-name")
    s.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    s.set_defaults(func=cmd_users)


def _add_run_commands(sub: SubParsers) -> None:
    s = sub.add_parser("ingest", help="run an ingest worker (MQTT to TimescaleDB) until stopped")
    s.add_argument("--shard", default="0/1", help="k/N: own the estates with crc32(code) %% N == k")
    s.add_argument("--no-alerts", action="store_true", help="store only; evaluate no rules")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser(
        "supervise", help="run dispatch, deadlines, escalation and notifications until stopped"
    )
    s.set_defaults(func=cmd_supervise)

    s = sub.add_parser("api", help="run the HTTP API (FastAPI under uvicorn) until stopped")
    s.add_argument("--host", help="default ESTATE_API_HOST (127.0.0.1)")
    s.add_argument("--port", type=int, help="default ESTATE_API_PORT (8700)")
    s.set_defaults(func=cmd_api)

    s = sub.add_parser(
        "maintain", help="recompute pending rollups and apply retention once, then exit"
    )
    s.add_argument("--limit", type=int, default=100_000, help="at most this many buckets a level")
    s.add_argument("--no-retention", action="store_true", help="rollups only")
    s.set_defaults(func=cmd_maintain)

    s = sub.add_parser("deadletters", help="list or replay rejected messages")
    s.add_argument("action", choices=["list", "replay"])
    s.add_argument("--reason", help="only this reason (e.g. unknown_device)")
    s.add_argument("--id", type=int, action="append", help="only this dead letter (repeatable)")
    s.add_argument("--limit", type=int, default=20)
    s.add_argument("--all", action="store_true", help="list replayed ones too")
    s.set_defaults(func=cmd_deadletters)

    s = sub.add_parser("simulate", help="run simulated devices against the broker")
    s.add_argument("--registry", default="demo", help="registry YAML, or 'demo' (default)")
    s.add_argument("--estate", action="append", help="only this estate (repeatable)")
    s.add_argument("--scenario", help="run a scripted scenario (see --list-scenarios)")
    s.add_argument("--list-scenarios", action="store_true")
    s.add_argument("--duration", type=float, help="simulated seconds (default: scenario's or 60)")
    s.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="simulated seconds per real second; 0 = as fast as possible",
    )
    s.add_argument("--tick", type=float, help="simulation step in seconds (default 1)")
    s.add_argument("--rate", type=float, help="target telemetry messages/s over the whole fleet")
    s.add_argument(
        "--mode",
        choices=["device", "shared"],
        default="device",
        help="device: a connection per device with its own credentials and Last "
        "Will; shared: a few service connections (cities, benchmarks)",
    )
    s.add_argument("--connections", type=int, default=4, help="connections in shared mode")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--skew", type=float, default=0.0, help="device clock skew, seconds")
    s.add_argument("--jitter", type=float, default=0.0, help="publication jitter, seconds")
    s.add_argument("--faults", help="comma-separated faults to inject after the run")
    s.add_argument("--report", help="write the per-device report (JSON) to this file")
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("demo", help="bring the stack up with the demo county; Ctrl-C stops it")
    s.add_argument("--once", action="store_true", help="set up, print the banner and stop")
    s.set_defaults(func=cmd_demo)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["psql"]:
        # psql's own options (-c, -f, …) pass through untouched
        args = argparse.Namespace(func=cmd_psql, psql_args=argv[1:])
    else:
        args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings()
        func: Handler = args.func
        return func(args, settings)
    except (SettingsError, registry.RegistryError, RulesError) as err:
        _err(f"estate: {err}")
        return 2
    except (ServiceError, db.DatabaseError) as err:
        _err(f"estate: {err}")
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`estate registry generate ... | head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
