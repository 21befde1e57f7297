"""``estate demo``: the whole stack on the demo county, in one process, until Ctrl-C.

What `estate demo` adds to a stack for showing it: a login per role, and the demo tempo.

Logins: one user per role, bound to the demo county's organisations and areas, with a
random password made once and kept in ``var/demo-logins.json`` (0600) — no password is
written in the repository. The demo prints them.

Tempo: the shipped responsibility list with every deadline divided by ``TEMPO`` is stored
as a version authored "demo", so a trapped passenger's order is breached and escalated
within the first minute instead of after five. It is data like any other version
(``estate responsibility history`` shows it); outside the demo nothing stores it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import secrets
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from alerts import responsibility
from alerts.stage import AlertStage
from api import passwords
from api.auth import Role, create_user, user_exists
from cli import common, dispatch, simulate
from estate import db, registry
from estate.mqtt import service_publisher
from estate.services import (
    Endpoints,
    mask_url,
    port_in_use,
)
from estate.settings import Settings
from fund import cases as fund_cases
from ingest.worker import Worker
from oversight import maintenance
from simulators import scenarios
from simulators.runner import build_fleet
from simulators.runner import run as run_simulation

TEMPO = 10
DEMO_AUTHOR = "demo"


@dataclass(frozen=True)
class DemoLogin:
    name: str
    role: Role
    org_code: str | None
    area_code: str | None
    what: str  # what this login sees, for the banner
    home: str | None = None  # an owner's home
    estate: str | None = None  # an owners' committee's estate


DEMO_LOGINS = (
    DemoLogin("admin", Role.ADMIN, None, None, "everything"),
    DemoLogin("pf-hx-duty", Role.OPERATOR, "PF-HX", None, "华祥苑 + 滨水雅苑 control room"),
    DemoLogin("pf-hx-manager", Role.MANAGER, "PF-HX", None, "the property firm's manager"),
    DemoLogin("em-ts", Role.MAINTENANCE, "EM-TS", None, "lift company: its orders"),
    DemoLogin("fire-inspector", Role.FIRE_INSPECTOR, None, "SFX", "fire systems, the county"),
    DemoLogin("market-inspector", Role.MARKET_INSPECTOR, None, "SFX", "lifts, the county"),
    DemoLogin("housing", Role.HOUSING_AUTHORITY, None, None, "fund decisions, reads all"),
    DemoLogin("cgjd-office", Role.STREET_OFFICE, None, "SFX-CG-CGJD", "城关街道"),
    DemoLogin(
        "owner-hxy-b1-101",
        Role.OWNER,
        None,
        None,
        "an owner: home HXY/B1/101's fund",
        home="HXY/B1/101",
    ),
    DemoLogin(
        "committee-hxy",
        Role.OWNERS_COMMITTEE,
        None,
        None,
        "华祥苑业委会: applies for the fund, accepts repairs",
        estate="HXY",
    ),
)


def _new_password(name: str) -> str:
    """A random password the policy accepts (a random one rarely is not; then draw again)."""
    while passwords.problem(candidate := secrets.token_urlsafe(9), context=(name,)):
        pass
    return candidate


def demo_logins(conn: db.Conn, var_dir: Path) -> list[tuple[DemoLogin, str]]:
    """Every demo login with its password; users missing from the database are created
    (with the password kept from an earlier run, or a new one)."""
    path = var_dir / "demo-logins.json"
    saved: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    out = []
    for login in DEMO_LOGINS:
        password = saved.get(login.name) or _new_password(login.name)
        saved[login.name] = password
        exists = user_exists(conn, login.name)
        if not exists:
            create_user(
                conn, login.name, login.role, password,
                org_code=login.org_code, area_code=login.area_code, display_name=login.what,
                home=login.home, estate_code=login.estate,
            )  # fmt: skip
        out.append((login, password))
    path.write_text(json.dumps(saved, indent=1))
    os.chmod(path, 0o600)
    return out


def tempo(
    rows: responsibility.ResponsibilityList, factor: int
) -> responsibility.ResponsibilityList:
    """``rows`` with every deadline (not the look-back window's length) divided by
    ``factor``."""
    data = rows.model_dump(mode="json")
    for row in data["rows"]:
        d = row.get("deadlines")
        if d:
            for k in ("acknowledge_s", "arrive_s", "resolve_s"):
                if d.get(k) is not None:
                    d[k] = d[k] / factor
            d["verify_s"] = d["verify_s"] / factor
    return responsibility.ResponsibilityList.model_validate(data)


def use_tempo(conn: db.Conn, now: dt.datetime) -> int | None:
    """Store the demo-tempo list as the newest version unless it is already in force;
    returns the new version, or None when nothing was stored."""
    wanted = tempo(responsibility.load(), TEMPO)
    have = responsibility.current(conn)
    if have.rows == wanted:
        return None
    return responsibility.save(
        conn, wanted, author=DEMO_AUTHOR, based_on=None, now=now,
        comment=f"demo tempo: the shipped list with every deadline ÷ {TEMPO}",
    )  # fmt: skip


def _banner(
    ep: Endpoints,
    settings: Settings,
    *,
    api_up: bool,
    logins: list[tuple[DemoLogin, str]],
    devices: int,
) -> None:
    common.echo("smart-estate demo is up")
    common.echo(f"  database  {mask_url(ep.database_url)}")
    common.echo(f"  broker    {mask_url(ep.mqtt_url)}")
    if api_up:
        base = f"http://{settings.api_host}:{settings.api_port}"
        common.echo(
            f"  console   {base}/console/   (owners, no login: {base}/console/#/public/HXY)"
        )
        common.echo(f"  API       {base}/api/v1 (docs: {base}/docs)")
        common.echo("  demo logins (passwords kept in var/demo-logins.json):")
        for login, password in logins:
            common.echo(f"    {login.role.value:<18} {login.name:<17} {password:<13} {login.what}")
    common.echo(f"  data in   {settings.var_dir}")
    common.echo(
        f"  the demo county's {devices} simulated devices publish in real time; every 10 minutes"
    )
    common.echo(
        "  a trapped passenger (华祥苑 1号梯), a smoke alarm, a hydrant leak, a failed sump pump,"
    )
    common.echo(
        "  an e-bike in a lift and a failed booster pump play out (simulators/demo_loop.yaml)."
    )
    common.echo(
        f"  Deadlines run at the demo tempo (responsibility list ÷ {TEMPO}): unacknowledged"
    )
    common.echo(
        "  orders escalate within a minute. CLI: `.venv/bin/estate alerts`, `estate orders`,"
    )
    common.echo("  `estate env`.")
    if api_up:
        duty = next((pw for login, pw in logins if login.role is Role.OPERATOR), "…")
        lifts = next((pw for login, pw in logins if login.role is Role.MAINTENANCE), "…")
        common.echo("Start here:")
        common.echo(
            f"  1. open {base}/console/ and log in as pf-hx-duty ({duty}), the control room;"
        )
        common.echo(
            "  2. at +15 s a trapped passenger in 华祥苑 1号梯 appears on 告警看板 (it blinks and"
        )
        common.echo("     rings): sign for it (签收); its work order goes to the lift company;")
        common.echo(
            f"  3. on a phone (or a narrow window) log in as em-ts ({lifts}) to take the order"
        )
        common.echo("     (接单, 到场, 处置完成); watch it escalate if nobody does.")
    common.echo(
        "Every 10 s a status line: readings and events stored, dead letters (messages refused,"
    )
    common.echo(
        "  with the reason: `estate deadletters`), devices online, open alerts by type, live"
    )
    common.echo("  work orders, deadline breaches and overdue maintenance items.")
    common.echo("Ctrl-C stops the demo and the private servers it started.")


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
    common.echo(f"fund: {len(accounts)} accounts with their opening deposits")


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
        common.echo_err(f"API not started: port {settings.api_port} is taken (set ESTATE_API_PORT)")
        return None
    config = uvicorn.Config(
        create_app(
            database_url,
            token_ttl_s=settings.api_token_ttl_s,
            session_max_s=settings.api_session_max_h * 3600,
            mqtt_url=mqtt_url,
        ),
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
    )
    return uvicorn.Server(config)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    stop = threading.Event()
    # Signals first: a Ctrl-C right after the banner must still stop everything cleanly.
    with (
        common.stop_on_signals(stop),
        common.servers(settings) as ep,
        contextlib.ExitStack() as stack,
    ):
        applied = db.upgrade(ep.database_url)
        common.echo(
            f"schema at version {db.current_version(ep.database_url)} "
            f"({len(applied)} migration(s) applied now)"
        )
        reg = registry.read(registry.demo_path())
        with db.connect(ep.database_url) as conn:
            common.echo(f"demo registry loaded: {registry.load(conn, reg)}")
            # the county's maintenance history, so only a few lifts are overdue
            seeded = maintenance.seed_demo(conn, dt.datetime.now(dt.UTC))
            if seeded:
                common.echo(f"demo maintenance records: {seeded} lift visits (2 lifts overdue)")
        _demo_fund(ep.database_url)
        with db.connect(ep.database_url, autocommit=True) as conn:
            logins = demo_logins(conn, settings.var_dir)
            version = use_tempo(conn, dt.datetime.now(dt.UTC))
        if version is not None:
            common.echo(
                f"responsibility list version {version}: the demo tempo (deadlines ÷ {TEMPO})"
            )
        worker = Worker(
            database_url=ep.database_url,
            mqtt_url=ep.mqtt_url,
            config=common.ingest_config(settings, settings.metrics_port),
            stage=AlertStage(rules_path=settings.alert_rules),
        )
        publisher = stack.enter_context(service_publisher(ep.mqtt_url, "demo-supervise"))
        threads = [
            threading.Thread(target=worker.run, args=(stop,), name="ingest"),
            threading.Thread(
                target=dispatch.supervisor(ep.database_url, publisher).run,
                args=(stop,),
                name="supervise",
            ),
        ]
        api = None if args.once else _api_server(ep.database_url, ep.mqtt_url, settings)
        if api is not None:
            threads.append(threading.Thread(target=api.run, name="api"))
        if not args.once:
            args.mode, args.connections = "device", 1
            pub = simulate.publisher(args, settings, ep, reg)
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
        _banner(ep, settings, api_up=api is not None, logins=logins,
                devices=sum(1 for _ in reg.devices()))  # fmt: skip
        sys.stdout.flush()
        if args.once:
            stop.set()
        while not stop.wait(10):
            common.echo(f"{common.local(common.now())[11:19]} {_demo_status(ep.database_url)}")
            sys.stdout.flush()
        stop.set()
        common.echo("stopping")
        if api is not None:
            api.should_exit = True
        for t in threads:
            t.join(60)
    return 0


def register(sub: common.SubParsers) -> None:
    """Add this module's commands to the ``estate`` parser."""
    s = sub.add_parser("demo", help="bring the stack up with the demo county; Ctrl-C stops it")
    s.add_argument("--once", action="store_true", help="set up, print the banner and stop")
    s.set_defaults(func=cmd_demo)
