"""``estate alerts``, ``estate silence`` and ``estate rules``: alerts as the control room sees
them, silences for maintenance work, the rules file."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path

from psycopg import sql

from alerts import dispatch, silences
from alerts import rules as alert_rules
from alerts import store as alert_store
from alerts.rules import parse as parse_rules
from cli import common
from estate.settings import Settings, SettingsError


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
        with common.database(settings) as conn:
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
        common.echo(f"alert {args.id}: {'false alarm' if cause else 'confirmed'}")
        return 0
    with common.database(settings) as conn:
        found = alert_store.lines(
            conn, include_cleared=args.all, estate=args.estate, limit=args.limit
        )
    for a in found:
        muted = f"muted by {a.muted_by}" if a.muted_by else ""
        extra = " ".join(x for x in (a.confirmation or "", muted) if x)
        where = f"{a.estate_code}/{a.building_code or '-'}/{a.device_code}"
        common.echo(
            f"{a.id:6d} {common.local(a.first_seen)} {a.severity:8} {a.alert_type:28}"
            f" {where} {a.state} x{a.occurrences} incident {a.incident_id or '-'} {extra}".rstrip()
        )
    return 0


def cmd_silence(args: argparse.Namespace, settings: Settings) -> int:
    """Mute matching alerts for maintenance work (they are still stored)."""
    now = common.now()
    with common.database(settings) as conn:
        if args.action == "add":
            if not (args.estate and args.reason and args.hours):
                raise SettingsError("estate silence add needs --estate, --hours and --reason")
            unknown = silences.unknown_target(
                conn, estate=args.estate, building=args.building, device=args.device
            )
            if unknown is not None:
                raise SettingsError(unknown)
            try:
                made = silences.add(
                    conn,
                    book=alert_rules.load(settings.alert_rules),
                    estate=args.estate,
                    building=args.building,
                    device=args.device,
                    alert_type=args.alert,
                    starts=now,
                    ends=now + dt.timedelta(hours=args.hours),
                    author=args.author or os.environ.get("USER", "cli"),
                    reason=args.reason,
                )
            except silences.SilenceError as err:
                raise SettingsError(str(err)) from None
            conn.commit()
            common.echo(f"silence {made.id} until {common.local(made.ends_at, seconds=False)}")
            return 0
        found = silences.listing(conn, sql.SQL("true"), now=now, active_only=True)
    for s in sorted(found, key=lambda s: s.ends_at):
        where = "/".join((s.estate_code, s.building_code or "*", s.device_code or "*"))
        until = common.local(s.ends_at, seconds=False)
        common.echo(
            f"{s.id:5d} {where} {s.alert_type or '*'} until {until} by {s.author}: {s.reason}"
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
    common.echo(f"{path}: {len(book.rules)} rules ({summary}), {len(book.overrides)} overrides,")
    common.echo(
        f"  {len(book.inhibit)} inhibit rules; fire alarms confirmed within "
        f"{book.fire_confirmation.window_s:g} s"
    )
    return 0


def register(sub: common.SubParsers) -> None:
    """Add this module's commands to the ``estate`` parser."""
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
