"""``estate orders``, ``webhook``, ``ledger``, ``responsibility`` and ``supervise``: work
orders, who gets them, and the supervisor loop."""

from __future__ import annotations

import argparse
import datetime as dt
import secrets
import threading
from collections.abc import Callable
from pathlib import Path

from alerts import dispatch, notify, orders, responsibility
from alerts.notify import MqttSender, Notifier, WebhookSender
from alerts.supervise import SupervisorService
from cli import common
from estate.cluster import LocalCluster
from estate.mqtt import service_publisher
from estate.services import PrivateServices
from estate.settings import Settings, SettingsError
from fund import cases as fund_cases
from oversight import ledger, notices


def cmd_orders(args: argparse.Namespace, settings: Settings) -> int:
    """Live work orders (or all), or a person's step on one."""
    now = dt.datetime.now(dt.UTC)
    with common.database(settings) as conn:
        if args.action != "list":
            if args.id is None:
                raise SettingsError(f"estate orders {args.action} needs --id")
            try:
                state = dispatch.act(
                    conn, args.id, args.action, actor=common.actor(args), now=now, note=args.note
                )
            except dispatch.OrderActionError as err:
                raise SettingsError(str(err)) from None
            conn.commit()
            common.echo(f"work order {args.id}: {state}")
            return 0
        found = orders.lines(conn, include_done=args.all, estate=args.estate, limit=args.limit)
    for o in found:
        dues = " ".join(
            f"{name} {common.local(t)[11:19]}"
            for name, t in (
                ("ack", o.ack_due),
                ("arrive", o.arrive_due),
                ("resolve", o.resolve_due),
            )
            if t is not None
        )
        where = f"{o.estate_code}/{o.building_code or '-'}/{o.device_code}"
        common.echo(
            f"{o.id:6d} {common.local(o.created_at)} {o.severity:8} {o.state:12}"
            f" {o.alert_type:26} {where} → {o.assignee or '-'} (escalation {o.escalation_level})"
            f" due: {dues}"
        )
    return 0


def cmd_webhook(args: argparse.Namespace, settings: Settings) -> int:
    """Register an organisation's webhook (its signing secret is shown once) or list them."""
    with common.database(settings) as conn:
        if args.action == "add":
            if not (args.org and args.url):
                raise SettingsError("estate webhook add needs --org and --url")
            secret = secrets.token_urlsafe(32)
            try:
                notify.add_webhook(conn, org=args.org, url=args.url, secret=secret)
            except notify.WebhookError as err:
                raise SettingsError(str(err)) from None
            conn.commit()
            common.echo(
                f"webhook for {args.org}: {args.url}\nsigning secret (shown once): {secret}"
            )
            return 0
        for org, url, active in notify.webhooks(conn):
            common.echo(f"{org:12} {url} {'' if active else '(inactive)'}".rstrip())
    return 0


def cmd_ledger(args: argparse.Namespace, settings: Settings) -> int:
    """Write the ledger of a period as CSV or Excel (by the output file's extension)."""
    start = common.parse_local(args.start)
    end = common.parse_local(args.end)
    out = Path(args.output)
    if out.suffix not in (".csv", ".xlsx"):
        raise SettingsError(f"{out}: the ledger is written as .csv or .xlsx")
    with common.database(settings) as conn:
        lines = ledger.lines(conn, start=start, end=end, estate=args.estate, unit=args.unit)
    if out.suffix == ".csv":
        out.write_text(ledger.to_csv(lines), encoding="utf-8-sig")
    else:
        out.write_bytes(ledger.to_xlsx(lines, title=f"ledger {args.start} to {args.end}"))
    common.echo(f"{out}: {len(lines)} work orders")
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
            common.echo(f"{args.file}: {len(rows.rows)} rows, valid")
            return 0
    with common.database(settings) as conn:
        if args.action == "push":
            if not args.comment:
                raise SettingsError("estate responsibility push needs --comment (what changed)")
            number = responsibility.save(
                conn, rows, author=common.actor(args), comment=args.comment, based_on=None,
                now=dt.datetime.now(dt.UTC),
            )  # fmt: skip
            conn.commit()
            common.echo(f"responsibility list version {number} saved (in force within a second)")
        elif args.action == "history":
            for v in responsibility.history(conn):
                made = common.local(v.created_at, seconds=False)
                common.echo(f"v{v.version} {made} {v.author}: {v.comment}")
        else:
            v = responsibility.current(conn)
            common.echo(f"# version {v.version} ({v.author}: {v.comment})")
            for r in v.rows.rows:
                where = "/".join(x for x in (r.scope.estate, r.scope.building) if x) or "city"
                what = ",".join(r.alerts) if r.alerts else "*"
                who = r.responsible if r.dispatch else "(recorded, not dispatched)"
                common.echo(f"{where:10} {r.kind:9} {what:50} ≥{r.min_severity:8} → {who}")
    return 0


def cmd_supervise(args: argparse.Namespace, settings: Settings) -> int:
    """Dispatch, deadlines, escalation, look-back and notification delivery until stopped."""
    if args.cluster:
        # the local cluster's: its database (`estate cluster up` or DATABASE_URL), and its
        # notifications published through the cluster's MQTT (any live node) as the
        # service account
        database_url = PrivateServices(settings).endpoints().database_url
        stop = threading.Event()
        with (
            common.stop_on_signals(stop),
            service_publisher(LocalCluster(settings).service_mqtt_url, "supervise") as publish,
        ):
            supervisor(database_url, publish).run(stop)
        return 0
    with common.servers(settings, upgrade=True) as ep:
        stop = threading.Event()
        with (
            common.stop_on_signals(stop),
            service_publisher(ep.mqtt_url, "supervise") as publish,
        ):
            supervisor(ep.database_url, publish).run(stop)
    return 0


def supervisor(database_url: str, publish: Callable[[str, bytes], None]) -> SupervisorService:
    mqtt_sender = MqttSender(publish)
    return SupervisorService(
        database_url,
        Notifier({"mqtt": mqtt_sender, "stream": mqtt_sender, "webhook": WebhookSender()}),
        extra_rounds=(notices.supervise, fund_cases.close_disclosed),
    )


def register(sub: common.SubParsers) -> None:
    """Add this module's commands to the ``estate`` parser."""
    s = sub.add_parser(
        "supervise", help="run dispatch, deadlines, escalation and notifications until stopped"
    )
    s.add_argument("--cluster", action="store_true",
                   help="for the local cluster (estate cluster up starts one)")  # fmt: skip
    s.set_defaults(func=cmd_supervise)
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
    s.add_argument(
        "--start",
        required=True,
        help="date or time, e.g. 2026-11-01 (ESTATE_TIMEZONE unless it names a zone)",
    )
    s.add_argument("--end", required=True, help="exclusive, like --start")
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
