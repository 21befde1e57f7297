"""Dispatch and supervision end to end with a controllable clock: simulated elevators
trap passengers, their messages go through the real decoder, writer and alert stage
into TimescaleDB, and the supervisor (dispatch, deadlines, look-back) runs after every
simulated second, as the service runs it every real second."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable
from typing import Any

import openpyxl
import pytest
from psycopg import sql

from alerts import dispatch, orders, responsibility, store
from alerts.supervise import Supervisor
from estate.db import Conn
from oversight import ledger
from simulators.scenarios import Scenario, Step
from tests.support.data import T0
from tests.support.pipeline import play

pytestmark = pytest.mark.integration


def at(s: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=s)


def trap_scenario(*steps: tuple[float, str, dict[str, Any]], duration_s: float) -> Scenario:
    return Scenario.model_validate(
        {
            "name": "dispatch",
            "title": "dispatch",
            "estate": "HXY",
            "devices": ["B1-L1", "B1-L2"],
            "duration_s": duration_s,
            "steps": [{"at_s": t, "device": "B1-L1", "action": a, "args": k} for t, a, k in steps],
        }
    )


def short_look_back(conn: Conn, verify_s: float) -> None:
    """The shipped list with a look-back window short enough to simulate."""
    shipped = responsibility.load()
    rows = [
        r.model_copy(update={"deadlines": r.deadlines.model_copy(update={"verify_s": verify_s})})
        if r.deadlines is not None
        else r
        for r in shipped.rows
    ]
    responsibility.save(
        conn,
        responsibility.ResponsibilityList(version=1, rows=rows),
        author="test",
        comment="short look-back",
        based_on=0,
        now=T0,
    )


class Script:
    """The supervisor every tick, and people's actions at given simulated times."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.supervisor = Supervisor()
        self.actions: list[tuple[dt.datetime, Callable[[dt.datetime], None]]] = []

    def at(self, s: float, fn: Callable[[dt.datetime], None]) -> None:
        self.actions.append((at(s), fn))

    def __call__(self, now: dt.datetime) -> None:
        due = [a for a in self.actions if a[0] <= now]
        for a in due:
            self.actions.remove(a)
            a[1](now)
        self.supervisor.round(self.conn, now)


def order_of(conn: Conn, device: str) -> dict[str, Any]:
    query = sql.SQL("SELECT {} FROM work_orders WHERE device_code = %s").format(
        sql.SQL(orders.COLUMNS)
    )
    cur = conn.execute(query, (device,))
    rows = cur.fetchall()
    assert len(rows) == 1, f"{len(rows)} orders for {device}"
    assert cur.description is not None
    return dict(zip([c.name for c in cur.description], rows[0], strict=True))


def events_of(conn: Conn, order_id: int) -> list[tuple[str, str, float]]:
    return [
        (change, actor, (t - T0).total_seconds())
        for change, actor, t in conn.execute(
            "SELECT change, actor, at FROM work_order_events WHERE order_id = %s ORDER BY at, id",
            (order_id,),
        )
    ]


def test_trapped_order_escalates_then_is_verified_and_closed(county: Conn) -> None:
    conn = county
    short_look_back(conn, verify_s=600)
    script = Script(conn)

    def do(action: str) -> Callable[[dt.datetime], None]:
        def run(now: dt.datetime) -> None:
            order = order_of(conn, "B1-L1")
            dispatch.act(conn, order["id"], action, actor="EM-TS:wang", now=now)

        return run

    # nobody acknowledges; the maintainer arrives at 600 s (inside 30 min), releases the
    # passengers at 700 s and resolves the order at 720 s
    script.at(600, do("arrive"))
    script.at(720, do("resolve"))
    s = trap_scenario((30, "trap", {"with_event": True}), (700, "release", {}), duration_s=2600)
    play(conn, s, on_tick=script)

    order = order_of(conn, "B1-L1")
    assert order["assignee"] == "EM-TS"  # the lift's maintenance company (registry)
    assert order["alert_type"] == "elevator.trapped"
    assert order["state"] == "closed"
    changes = events_of(conn, order["id"])
    names = [c[0] for c in changes]
    assert names == [
        "created", "dispatched", "breach", "on_site", "resolved", "verifying", "closed",
    ]  # fmt: skip
    created = changes[0][2]
    assert 30 <= created <= 32  # the trapped event, dispatched within a tick
    breach = next(c for c in changes if c[0] == "breach")
    assert breach[2] == pytest.approx(created + 300, abs=1.0)  # acknowledge deadline: 5 min
    b = conn.execute(
        "SELECT deadline, escalated_to FROM work_order_breaches WHERE order_id = %s",
        (order["id"],),
    ).fetchall()
    assert b == [("acknowledge", "PF-HX")]  # the estate's property firm, first in the chain
    assert order["notified_roles"] == ["maintenance_company", "property_firm"]
    assert order["severity"] == "critical"
    # arrived at 600 s: inside the 30-minute arrival deadline, so no second breach
    assert (order["arrived_at"] - T0).total_seconds() == pytest.approx(600, abs=1)
    # the passengers are out at 700 s (the telemetry pattern ends) but the controller's
    # alarm has no "released" code: it stays until the maintainer resolves the order at
    # 720 s, then the look-back starts and 600 s of normal later the order closes
    verifying = next(c for c in changes if c[0] == "verifying")[2]
    assert verifying == pytest.approx(720, abs=1)
    assert (order["closed_at"] - T0).total_seconds() == pytest.approx(verifying + 600, abs=1)
    # who was told: the maintenance company on dispatch and the lift's user (the property
    # firm) at once, not only on the breach; then the breach
    told = conn.execute(
        "SELECT org_code, event FROM notifications WHERE order_id = %s AND channel = 'mqtt'"
        " ORDER BY id",
        (order["id"],),
    ).fetchall()
    assert told == [
        ("EM-TS", "workorder.dispatched"),
        ("PF-HX", "workorder.informed"),
        ("PF-HX", "workorder.escalated"),
        ("EM-TS", "workorder.breach"),
    ]
    streamed = conn.execute(
        "SELECT count(*) FROM notifications WHERE order_id = %s AND channel = 'stream'"
        " AND target = %s",
        (order["id"], f"estate/v1/HXY/workorders/{order['id']}"),
    ).fetchone()
    assert streamed == (len(changes),)


def cable_scenario(*steps: tuple[float, str, dict[str, Any]], duration_s: float) -> Scenario:
    return Scenario.model_validate(
        {
            "name": "cable",
            "title": "cable",
            "estate": "HXY",
            "devices": ["B1-EF"],
            "duration_s": duration_s,
            "steps": [{"at_s": t, "device": "B1-EF", "action": a, "args": k} for t, a, k in steps],
        }
    )


def test_recurrence_during_verification_reopens_the_order(county: Conn) -> None:
    conn = county
    short_look_back(conn, verify_s=600)
    script = Script(conn)

    def do(action: str) -> Callable[[dt.datetime], None]:
        def run(now: dt.datetime) -> None:
            dispatch.act(conn, order_of(conn, "B1-EF")["id"], action, actor="FM-AQ", now=now)

        return run

    script.at(200, do("acknowledge"))
    script.at(250, do("arrive"))
    script.at(400, do("resolve"))
    # a cable over 70 °C for 30 s (a warning, not life safety; reported every 60 s): it
    # clears when the cable cools, and comes back during the look-back
    s = cable_scenario(
        (30, "overheat", {"extra_c": 45.0}),
        (300, "overheat", {"extra_c": 0.0}),
        (600, "overheat", {"extra_c": 45.0}),
        duration_s=900,
    )
    play(conn, s, on_tick=script)

    order = order_of(conn, "B1-EF")  # one order: the recurrence joined it
    names = [c[0] for c in events_of(conn, order["id"])]
    assert names == [
        "created", "dispatched", "acknowledged", "on_site", "resolved", "verifying", "reopened",
    ]  # fmt: skip
    assert order["state"] == "reopened"
    assert order["reopen_count"] == 1
    assert order["cycle"] == 1
    assert order["acknowledged_at"] is None  # the new cycle waits for its own response
    incidents = conn.execute(
        "SELECT count(*) FROM incidents WHERE work_order_id = %s", (order["id"],)
    ).fetchone()
    assert incidents == (2,)
    # the new cycle has fresh deadlines, counted from the new alarm's first evidence
    first = conn.execute(
        "SELECT max(first_seen) FROM alerts WHERE device_code = 'B1-EF'"
    ).fetchone()
    assert first is not None
    assert 600 <= (first[0] - T0).total_seconds() <= 661  # the first hot reading
    assert order["ack_due"] == first[0] + dt.timedelta(hours=1)

    # the ledger counts the reopening against the unit, in CSV and in Excel
    lines = ledger.lines(conn, start=T0, end=at(3600), unit="FM-AQ")
    assert [(x.order, x.reopenings, x.state) for x in lines] == [(order["id"], 1, "reopened")]
    csv_text = ledger.to_csv(lines)
    assert csv_text.splitlines()[0].startswith("order,estate,building,device,")
    book = openpyxl.load_workbook(io.BytesIO(ledger.to_xlsx(lines, title="t")))
    assert book.sheetnames == ["orders", "units"]
    units = list(book["units"].iter_rows(values_only=True))
    head = units[0]
    assert dict(zip(head, units[1], strict=True))["reopenings"] == 1
    assert dict(zip(head, units[1], strict=True))["unit"] == "FM-AQ"


def test_a_new_entrapment_after_the_rescue_is_a_new_order(county: Conn) -> None:
    # TSG T5002: every entrapment is a rescue of its own, counted in the statistics;
    # the first order's look-back failed (it is closed saying so)
    conn = county
    short_look_back(conn, verify_s=3600)
    script = Script(conn)

    def resolve_first(now: dt.datetime) -> None:
        order = conn.execute("SELECT min(id) FROM work_orders").fetchone()
        assert order is not None
        dispatch.act(conn, order[0], "resolve", actor="EM-TS", now=now)

    script.at(250, resolve_first)
    s = trap_scenario(
        (30, "trap", {"with_event": True}),
        (200, "release", {}),
        (400, "trap", {"with_event": True}),
        duration_s=600,
    )
    play(conn, s, on_tick=script)
    rows = conn.execute(
        "SELECT id, state, assignee, alarm_at, ack_due FROM work_orders"
        " WHERE device_code = 'B1-L1' ORDER BY id"
    ).fetchall()
    assert [(r[1], r[2]) for r in rows] == [("closed", "EM-TS"), ("dispatched", "EM-TS")]
    second = rows[1]
    assert 400 <= (second[3] - T0).total_seconds() <= 401  # counted from the alarm
    assert second[4] == second[3] + dt.timedelta(seconds=300)
    assert [c[0] for c in events_of(conn, rows[0][0])][-1] == "closed"
    failed = conn.execute(
        "SELECT detail FROM work_order_events WHERE order_id = %s AND change = 'closed'",
        (rows[0][0],),
    ).fetchone()
    assert failed is not None
    assert failed[0]["look_back"] == "failed"
    # two trapped alerts, the second new and unacknowledged, each with its own order
    alerts = conn.execute(
        "SELECT a.state, a.acknowledged_at, o.id FROM alerts a"
        " JOIN incidents i ON i.id = a.incident_id JOIN work_orders o ON o.incident_id = i.id"
        " WHERE a.alert_type = 'elevator.trapped' ORDER BY a.id"
    ).fetchall()
    assert [(a[0], a[1], a[2]) for a in alerts] == [
        ("cleared", None, rows[0][0]), ("open", None, rows[1][0]),
    ]  # fmt: skip


def test_a_recurrence_after_the_window_is_a_new_order(county: Conn) -> None:
    conn = county
    short_look_back(conn, verify_s=60)
    script = Script(conn)
    first: list[int] = []

    def resolve(now: dt.datetime) -> None:
        first.append(order_of(conn, "B1-L1")["id"])
        dispatch.act(conn, first[0], "resolve", actor="EM-TS", now=now)

    script.at(250, resolve)
    s = trap_scenario(
        (30, "trap", {"with_event": False}),
        (200, "release", {}),
        (400, "trap", {"with_event": False}),
        duration_s=520,
    )
    play(conn, s, on_tick=script)
    rows = conn.execute(
        "SELECT id, state, reopen_count FROM work_orders WHERE device_code = 'B1-L1' ORDER BY id"
    ).fetchall()
    assert [(r[1], r[2]) for r in rows] == [("closed", 0), ("dispatched", 0)]
    assert rows[0][0] == first[0]


def test_an_alert_the_list_does_not_cover_is_a_gap(county: Conn) -> None:
    conn = county
    # a list without the elevator rows: a trapped passenger is nobody's, by this list
    shipped = responsibility.load()
    rows = [r for r in shipped.rows if r.kind != "elevator"]
    responsibility.save(
        conn,
        responsibility.ResponsibilityList(version=1, rows=rows),
        author="test",
        comment="no elevators",
        based_on=0,
        now=T0,
    )
    script = Script(conn)
    play(conn, trap_scenario((30, "trap", {"with_event": True}), duration_s=60), on_tick=script)
    assert conn.execute("SELECT count(*) FROM work_orders").fetchone() == (0,)
    gaps = conn.execute(
        "SELECT estate_code, building_code, alert_type, severity, reason FROM dispatch_gaps"
    ).fetchall()
    assert len(gaps) == 1
    estate, building, alert, severity, reason = gaps[0]
    assert (estate, building, alert, severity) == ("HXY", "B1", "elevator.trapped", "critical")
    assert "no responsibility row covers elevator.trapped" in reason
    assert "add one to the responsibility list" in reason
    streamed = conn.execute(
        "SELECT payload->>'reason' FROM notifications WHERE event = 'dispatch.gap'"
    ).fetchall()
    assert streamed == [(reason,)]

    # the list is fixed (a new version): the waiting incident is dispatched at once
    responsibility.save(
        conn, shipped, author="test", comment="elevators back", based_on=1, now=at(61)
    )
    script.supervisor.round(conn, at(62))
    assert order_of(conn, "B1-L1")["assignee"] == "EM-TS"
    assert order_of(conn, "B1-L1")["list_version"] == 2


def fire_scenario(estate: str, building: str, *, duration_s: float) -> Scenario:
    return Scenario.model_validate(
        {
            "name": "fire",
            "title": "fire",
            "estate": estate,
            "devices": [f"{building}-SD1", f"{building}-SD2"],
            "duration_s": duration_s,
            "steps": [{"at_s": 30, "device": f"{building}-SD1", "action": "alarm"}],
        }
    )


def fire_order(conn: Conn) -> dict[str, Any]:
    return order_of(conn, "B3-SD1")


def test_an_unconfirmed_fire_alarm_reaches_the_fire_brigade_after_3_minutes(
    county: Conn,
) -> None:
    conn = county
    script = Script(conn)
    play(conn, fire_scenario("HXY", "B3", duration_s=240), on_tick=script)
    order = fire_order(conn)
    assert order["assignee"] == "PF-HX"  # the control room confirms first (GB 25201)
    assert "fire_brigade" in order["notified_roles"]
    b = conn.execute(
        "SELECT deadline, escalated_to, breached_at - due_at FROM work_order_breaches"
        " WHERE order_id = %s",
        (order["id"],),
    ).fetchall()
    assert [(d, to) for d, to, _ in b] == [("acknowledge", "FB-SFX")]
    assert b[0][2] <= dt.timedelta(seconds=1)  # seen within a round of the deadline
    breach_at = events_of(conn, order["id"])[2]
    assert breach_at[0] == "breach"
    assert breach_at[2] == pytest.approx(events_of(conn, order["id"])[0][2] + 180, abs=1)


@pytest.mark.parametrize("verdict", ["confirm", "false_alarm"])
def test_the_control_rooms_verdict_in_time_settles_the_order(county: Conn, verdict: str) -> None:
    conn = county
    script = Script(conn)

    def judge(now: dt.datetime) -> None:
        row = conn.execute(
            "SELECT id FROM alerts WHERE device_code = 'B3-SD1' AND alert_type = 'fire.alarm'"
        ).fetchone()
        assert row is not None
        cause = "cooking" if verdict == "false_alarm" else None
        dispatch.fire_verdict(conn, row[0], actor="PF-HX:li", now=now, false_alarm_cause=cause)

    script.at(90, judge)
    play(conn, fire_scenario("HXY", "B3", duration_s=240), on_tick=script)
    order = fire_order(conn)
    names = [c[0] for c in events_of(conn, order["id"])]
    assert "breach" not in names
    told = conn.execute(
        "SELECT org_code, event, channel, created_at FROM notifications"
        " WHERE order_id = %s AND event = 'workorder.fire_confirmed' ORDER BY id",
        (order["id"],),
    ).fetchall()
    if verdict == "confirm":
        # GB 25201: a confirmed fire is reported to 119 at once, and the duty roster told
        assert order["state"] == "acknowledged"
        assert names[-2:] == ["acknowledged", "fire_confirmed"]
        assert "fire_brigade" in order["notified_roles"]
        # (and on the live stream, and by webhook where the organisation registered one)
        assert {(o, ch) for o, _, ch, _ in told if ch == "mqtt"} == {
            ("FB-SFX", "mqtt"), ("PF-HX", "mqtt"),
        }  # fmt: skip
        assert any(ch == "stream" for _, _, ch, _ in told)
        assert all((t[3] - at(90)).total_seconds() < 1 for t in told)  # at once
    else:
        assert "fire_brigade" not in order["notified_roles"]
        assert told == []
        assert order["state"] == "cancelled"
        assert order["cancel_reason"] == "false alarm: cooking"


def test_a_false_alarm_needs_a_cause_from_the_list(county: Conn) -> None:
    conn = county
    play(conn, fire_scenario("HXY", "B3", duration_s=60), on_tick=Script(conn))
    (alert_id,) = conn.execute(
        "SELECT id FROM alerts WHERE alert_type = 'fire.alarm' AND device_code = 'B3-SD1'"
    ).fetchone() or (0,)
    for cause, note in (("burnt toast", None), ("other", None), ("other", " ")):
        with pytest.raises(store.AlertActionError):
            dispatch.fire_verdict(
                conn, alert_id, actor="PF-HX:li", now=at(70), false_alarm_cause=cause, note=note
            )
    dispatch.fire_verdict(
        conn, alert_id, actor="PF-HX:li", now=at(70), false_alarm_cause="other", note="装修焊接"
    )
    assert conn.execute(
        "SELECT false_alarm_cause, false_alarm_note FROM alerts WHERE id = %s", (alert_id,)
    ).fetchone() == ("other", "装修焊接")


def test_an_estate_without_a_property_firm_goes_to_the_next_party_and_is_a_gap(
    county: Conn,
) -> None:
    conn = county
    play(conn, fire_scenario("CGXC", "B1", duration_s=60), on_tick=Script(conn))
    order = order_of(conn, "B1-SD1")
    assert order["assignee"] == "FB-SFX"  # the next in the chain the registry names
    (reason,) = conn.execute("SELECT reason FROM dispatch_gaps").fetchone() or ("",)
    assert reason == (
        "the registry names no property_firm for CGXC/B1-SD1: order given to fire_brigade FB-SFX"
    )


def test_overdue_maintenance_and_inspection_become_items_for_market_supervision(
    county: Conn,
) -> None:
    conn = county
    sup = Supervisor(maintenance_days=15)
    now = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
    sup.round(conn, now)
    # the demo county has one lift left unmaintained since 20 October on purpose
    assert conn.execute(
        "SELECT estate_code, device_code, item, due FROM supervision_items"
    ).fetchall() == [("HXY", "B3-L2", "maintenance_overdue", dt.date(2026, 11, 4))]
    conn.execute("DELETE FROM notifications")
    conn.execute(
        "UPDATE devices SET last_maintenance = '2026-11-01' WHERE estate_code = 'HXY'"
        " AND code = 'B1-L1'"
    )
    conn.execute(
        "UPDATE devices SET inspection_due = '2026-11-19' WHERE estate_code = 'JXY'"
        " AND code = 'B1-L1'"
    )
    opened, closed = sup.overdue(conn, now)
    assert (opened, closed) == (2, 0)
    items = conn.execute(
        "SELECT estate_code, device_code, item, due, maintenance_code FROM supervision_items"
        " WHERE closed_at IS NULL AND device_code = 'B1-L1' ORDER BY item"
    ).fetchall()
    assert items == [
        ("JXY", "B1-L1", "inspection_overdue", dt.date(2026, 11, 19), "EM-XY"),
        ("HXY", "B1-L1", "maintenance_overdue", dt.date(2026, 11, 16), "EM-TS"),
    ]
    told = conn.execute(
        "SELECT org_code, event FROM notifications WHERE channel = 'mqtt' ORDER BY org_code"
    ).fetchall()
    assert sorted(told) == [
        ("EM-TS", "supervision.maintenance_overdue"),
        ("EM-XY", "supervision.inspection_overdue"),
        ("MS-SFX", "supervision.inspection_overdue"),
        ("MS-SFX", "supervision.maintenance_overdue"),
    ]
    assert sup.overdue(conn, now) == (0, 0)  # once per fall due, not once per round
    conn.execute(
        "UPDATE devices SET last_maintenance = '2026-11-19' WHERE estate_code = 'HXY'"
        " AND code = 'B1-L1'"
    )
    assert sup.overdue(conn, now) == (0, 1)  # maintained: the item closes


def test_a_detector_alarming_again_after_a_false_alarm_raises_a_new_alert(
    county: Conn,
) -> None:
    conn = county
    script = Script(conn)

    def false_alarm(now: dt.datetime) -> None:
        row = conn.execute("SELECT id FROM alerts WHERE device_code = 'B3-SD1'").fetchone()
        assert row is not None
        dispatch.fire_verdict(conn, row[0], actor="PF-HX", now=now, false_alarm_cause="steam")

    script.at(60, false_alarm)
    s = fire_scenario("HXY", "B3", duration_s=200).model_copy(
        update={
            "steps": [
                *fire_scenario("HXY", "B3", duration_s=200).steps,
                Step(at_s=120, device="B3-SD1", action="alarm"),
            ]
        }
    )
    play(conn, s, on_tick=script, checkpoint_s=0)
    alerts = conn.execute(
        "SELECT state, confirmation FROM alerts WHERE device_code = 'B3-SD1' ORDER BY id"
    ).fetchall()
    assert alerts == [("cleared", "false_alarm"), ("open", "to_be_confirmed")]
    orders = conn.execute(
        "SELECT state FROM work_orders WHERE device_code = 'B3-SD1' ORDER BY id"
    ).fetchall()
    assert orders == [("cancelled",), ("dispatched",)]
