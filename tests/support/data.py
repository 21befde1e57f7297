"""A small registry to load, the demo county populated with alerts, orders and the fund,
and reading a count back."""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg

from alerts import store
from alerts.judge import Op
from alerts.rules import Severity
from alerts.supervise import Supervisor
from estate import registry
from estate.db import Conn
from fund import cases as fund_cases
from oversight import notices

T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)  # simulated time starts here


REGISTRY = """
version: 1
areas: [{{code: C, name: c, level: city}}]
organisations:
  - {{code: EM, name: em, roles: [elevator_maintenance]}}
estates:
{estates}
"""


ESTATE = """
  - code: {code}
    name: e
    area: C
    buildings:
      - code: B1
        name: b
        floors: 10
        devices:
          - {{code: L1, kind: elevator, subtype: passenger, maintenance: EM}}
          - {{code: HP, kind: fire, subtype: hydrant_pressure}}
    devices:
      - {{code: SUMP, kind: drainage, subtype: sump_pit}}
"""


def load_registry(url: str, *codes: str, extra_device: str = "") -> None:
    text = REGISTRY.format(estates="".join(ESTATE.format(code=c) for c in codes))
    if extra_device:
        text += f"      - {{code: {extra_device}, kind: drainage, subtype: manhole}}\n"
    with psycopg.connect(url) as conn:
        registry.load(conn, registry.parse(text))


def count(url: str, sql: str, *params: object) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()
        assert row is not None
        return int(row[0])


@dataclass
class World:
    ids: dict[str, int]


def county_world(conn: Conn, t0: dt.datetime, now: dt.datetime) -> World:
    """The demo county with alerts, work orders (every deadline breached), notices and dead
    letters in 华祥苑 (HXY, inside most scopes) and 城关新村 (CGXC, outside them)."""
    registry.load(conn, registry.read(registry.demo_path()))
    devs = {(d.estate, d.code): d for d in store.devices(conn)}
    t = t0.timestamp()

    def op(estate: str, code: str, rule: str, **kw: Any) -> Op:
        return Op("raise", (devs[(estate, code)].id, rule), rule, Severity.CRITICAL, t, **kw)

    fire = {"confirmation": "to_be_confirmed"}
    store.apply(
        conn,
        [
            op("HXY", "B1-L1", "elevator.overspeed"),
            op("HXY", "B1-SD1", "fire.alarm", **fire),
            op("CGXC", "B1-SD1", "fire.alarm", **fire),
        ],
        {d.id: d for d in devs.values()},
    )
    sup = Supervisor()
    for later in (0, 600, 7200, 86400 * 2):  # every deadline breached: the chains told
        sup.round(conn, t0 + dt.timedelta(seconds=later))
    for estate, area in (("HXY", "SFX-CG-CGJD"), ("CGXC", "SFX-CG-BHJD")):
        notices.issue(
            conn, authority="fire", area_code=area, estate=estate, recipient_org=None,
            problems=[notices.ProblemIn(problem="p", deadline=now.date())], actor="t", now=t0,
        )  # fmt: skip
        # a silence matching no device (it mutes nothing), for the silence routes
        conn.execute(
            "INSERT INTO silences (estate_code, device_code, starts_at, ends_at, author, reason)"
            " VALUES (%s, 'NONE', %s, %s, 't', 'world')",
            (estate, t0, now + dt.timedelta(days=1)),
        )
        conn.execute(
            "INSERT INTO dead_letters (received_at, topic, payload, reason, detail, estate_code)"
            " VALUES (%s, %s, 'x', 'not_json', 'd', %s)",
            (t0, f"estate/v1/{estate}/fire/X/telemetry", estate),
        )

    # the fund: an account each, a case inside (eligible) and one outside (refused)
    fund_cases.open_accounts(conn, t0)
    for estate in ("HXY", "CGXC"):
        account = fund_cases.account_of(conn, estate, "B1")
        fund_cases.deposit(conn, account, 1_000_000, kind="deposit", key=f"world-{estate}",
                           actor="t", now=t0)  # fmt: skip
    lift_alert = conn.execute(
        "SELECT id FROM alerts WHERE estate_code = 'HXY' AND kind = 'elevator'"
    ).fetchone()
    assert lift_alert is not None
    fund_cases.open_case(conn, item="elevator_danger", alert_id=int(lift_alert[0]), actor="t",
                         now=t0)  # fmt: skip
    out_alert = conn.execute("SELECT id FROM alerts WHERE estate_code = 'CGXC'").fetchone()
    assert out_alert is not None
    with contextlib.suppress(fund_cases.CaseError):  # fire.alarm is not eligible: refused
        fund_cases.open_case(conn, item="fire_system_failure", alert_id=int(out_alert[0]),
                             actor="t", now=t0)  # fmt: skip

    def one(q: str, *a: object) -> int:
        row = conn.execute(q, a).fetchone()
        assert row is not None, q
        return int(row[0])

    ids = {
        "alert": one("SELECT id FROM alerts WHERE estate_code = 'HXY' AND kind = 'elevator'"),
        "alert_out": one("SELECT id FROM alerts WHERE estate_code = 'CGXC'"),
        "fire_alert": one("SELECT id FROM alerts WHERE estate_code = 'HXY' AND kind = 'fire'"),
        "lift_order": one("SELECT id FROM work_orders WHERE estate_code = 'HXY'"
                          " AND category = 'elevator'"),
        "fire_order": one("SELECT id FROM work_orders WHERE estate_code = 'HXY'"
                          " AND category = 'fire'"),
        "order_out": one("SELECT id FROM work_orders WHERE estate_code = 'CGXC'"),
        "notice": one("SELECT id FROM notices WHERE estate_code = 'HXY'"),
        "notice_out": one("SELECT id FROM notices WHERE estate_code = 'CGXC'"),
        "dead": one("SELECT id FROM dead_letters WHERE estate_code = 'HXY'"),
        "dead_out": one("SELECT id FROM dead_letters WHERE estate_code = 'CGXC'"),
        "fund_case": one("SELECT id FROM fund_cases WHERE estate_code = 'HXY'"),
        "fund_case_out": one("SELECT id FROM fund_cases WHERE estate_code = 'CGXC'"),
        "silence": one("SELECT id FROM silences WHERE estate_code = 'HXY'"),
        "silence_out": one("SELECT id FROM silences WHERE estate_code = 'CGXC'"),
        "device": one("SELECT id FROM devices WHERE estate_code = 'HXY' AND code = 'B1-L1'"),
        "device_out": one("SELECT id FROM devices WHERE estate_code = 'CGXC'"
                          " AND code = 'B1-SD1'"),
        "account": one("SELECT id FROM fund_accounts WHERE estate_code = 'HXY'"
                       " AND building_code = 'B1'"),
        "account_out": one("SELECT id FROM fund_accounts WHERE estate_code = 'CGXC'"
                           " AND building_code = 'B1'"),
    }  # fmt: skip
    return World(ids)


def verified(conn: Conn, order_id: int, resolved_at: dt.datetime) -> dt.datetime:
    """Let a resolved work order pass its look-back (回头看) as the system does: its alerts
    clear (the device reads normal again), the supervisor starts the window and, once it
    has passed, closes the order. Returns when it closed."""
    rows = conn.execute(
        "SELECT a.device_id, a.alert_type, a.severity FROM alerts a"
        " JOIN incidents i ON i.id = a.incident_id WHERE i.work_order_id = %s"
        " AND a.state = 'open'",
        (order_id,),
    ).fetchall()
    devs = {d.id: d for d in store.devices(conn)}
    t = resolved_at.timestamp()
    store.apply(conn, [Op("clear", (int(d), str(a)), str(a), Severity.parse(str(s)), t)
                       for d, a, s in rows],
                devs)  # fmt: skip
    sup = Supervisor()
    for later in (0, 86400 * 2):
        sup.round(conn, resolved_at + dt.timedelta(seconds=later))
    row = conn.execute(
        "SELECT state, closed_at FROM work_orders WHERE id = %s", (order_id,)
    ).fetchone()
    assert row is not None
    assert row[0] == "closed", row
    closed: dt.datetime = row[1]
    return closed
