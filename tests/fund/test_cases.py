"""The special maintenance fund: from a simulated elevator failure to the owners'
disclosure; eligibility; no overdraft under concurrency; exact apportionment; tampering
found by verify."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts import dispatch, store
from alerts.judge import Op
from alerts.rules import Severity
from alerts.supervise import Supervisor
from estate import registry
from estate.db import Conn
from fund import cases, ledger
from simulators.scenarios import Scenario
from tests.support.cli import estate_env, run_estate
from tests.support.data import T0
from tests.support.pipeline import play
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def county(conn: Conn) -> Conn:
    registry.load(conn, registry.read(registry.demo_path()))
    cases.open_accounts(conn, T0)
    return conn


def test_from_a_trapped_passenger_to_the_owners_disclosure(county: Conn) -> None:
    conn = county
    sup = Supervisor()
    s = Scenario.model_validate(
        {
            "name": "t", "title": "t", "estate": "HXY", "devices": ["B1-L1"],
            "duration_s": 300, "steps": [{"at_s": 30, "device": "B1-L1", "action": "trap"},
                                         {"at_s": 150, "device": "B1-L1", "action": "release"}],
        }
    )  # fmt: skip

    def tick(now: dt.datetime) -> None:
        sup.round(conn, now)

    play(conn, s, on_tick=tick)
    (order_id,) = conn.execute("SELECT id FROM work_orders").fetchone() or (0,)
    account = cases.account_of(conn, "HXY", "B1")
    # the owners' deposits (idempotent: the same request twice is one entry) and interest
    first = cases.deposit(conn, account, 5_000_000, kind="deposit", key="dep-2026-1",
                          actor="HA-SFX", now=T0)  # fmt: skip
    again = cases.deposit(conn, account, 5_000_000, kind="deposit", key="dep-2026-1",
                          actor="HA-SFX", now=T0)  # fmt: skip
    assert first == again
    with pytest.raises(ledger.LedgerError, match="used for another request"):
        cases.deposit(conn, account, 1, kind="deposit", key="dep-2026-1", actor="x", now=T0)
    cases.deposit(conn, account, 12_345, kind="interest", key="int-2026", actor="bank", now=T0)

    later = T0 + dt.timedelta(hours=3)
    case = cases.open_case(conn, item="elevator_danger", order_id=order_id, actor="PF-HX:li",
                           now=later)  # fmt: skip
    (evidence,) = conn.execute(
        "SELECT evidence FROM fund_cases WHERE id = %s", (case,)
    ).fetchone() or ({},)
    assert evidence["alert"]["type"] == "elevator.trapped"
    assert len(evidence["readings"]) > 10  # the lift's telemetry around the alarm
    assert [e["change"] for e in evidence["work_order"]][:2] == ["created", "dispatched"]

    cases.estimate(conn, case, 1_234_567, actor="PF-HX:li", now=later, party="operator:PF-HX")
    # no vote, no standing authorisation
    with pytest.raises(cases.CaseError, match="have not voted a standing authorisation"):
        cases.approve(conn, case, by="standing", actor="PF-HX:li", now=later)
    vote_for_standing(conn, "HXY", later)
    # 5 % of the fund is 250,617 fen: the standing authorisation cannot cover it
    with pytest.raises(cases.CaseError, match="would pass 5% of the fund"):
        cases.approve(conn, case, by="standing", actor="PF-HX:li", now=later)
    with pytest.raises(cases.CaseError, match="cannot approve it too"):
        cases.approve(conn, case, by="street_office:x", actor="x", now=later,
                      party="operator:PF-HX")  # fmt: skip
    # HXY has an owners' committee: it applies, the street office does not act for it
    with pytest.raises(cases.CaseError, match="HXY has an owners' committee"):
        cases.approve(conn, case, by="street_office:SO-CG", actor="SO-CG:zhao", now=later,
                      party="street_office:SFX-CG-CGJD")  # fmt: skip
    cases.approve(conn, case, by=cases.committee("HXY"), actor="HXY:chen", now=later,
                  party=cases.committee("HXY"))  # fmt: skip
    # 先修后报 is paid once the work order says the repair is done
    with pytest.raises(cases.CaseError, match="the repair is paid once it is resolved"):
        cases.repaired(conn, case, note="主机板更换", actor="EM-TS", now=later)
    dispatch.act(conn, order_id, "resolve", actor="EM-TS", now=later)
    cases.repaired(conn, case, note="主机板更换 / controller board replaced", actor="EM-TS",
                   now=later)  # fmt: skip
    with pytest.raises(cases.CaseError, match="not possible now"):
        cases.settle(conn, case, cost_fen=1_200_001, invoice_ref="INV-88", key="early",
                     actor="HA-SFX:qian", now=later)  # fmt: skip
    with pytest.raises(cases.CaseError, match="cannot accept it too"):
        cases.accept(conn, case, party="operator:PF-HX", note="", actor="x", now=later)
    # acceptance waits for the look-back: the lift stayed normal and the order closed
    with pytest.raises(cases.CaseError, match="look-back"):
        cases.accept(conn, case, party=cases.committee("HXY"), note="验收合格", actor="HXY",
                     now=later)  # fmt: skip
    for h in (0, 1, 24, 48):
        sup.round(conn, later + dt.timedelta(hours=h))
    assert conn.execute("SELECT state FROM work_orders WHERE id = %s", (order_id,)).fetchone() == (
        "closed",
    )
    with pytest.raises(cases.CaseError, match="HXY has an owners' committee"):
        cases.accept(conn, case, party="street_office:SFX-CG-CGJD", note="验收合格",
                     actor="SO-CG", now=later)  # fmt: skip
    cases.accept(conn, case, party=cases.committee("HXY"), note="验收合格", actor="HXY",
                 now=later)  # fmt: skip
    jid = cases.settle(conn, case, cost_fen=1_200_001, invoice_ref="INV-88", key="settle-1",
                       actor="HA-SFX:qian", now=later)  # fmt: skip
    assert (
        cases.settle(
            conn,
            case,
            cost_fen=1_200_001,
            invoice_ref="INV-88",
            key="settle-1",
            actor="HA-SFX:qian",
            now=later,
        )
        == jid
    )  # a retry: the same answer
    with pytest.raises(cases.CaseError, match="paid twice"):
        cases.settle(conn, case, cost_fen=1_200_001, invoice_ref="INV-88", key="settle-2",
                     actor="HA-SFX:qian", now=later)  # fmt: skip

    (balance,) = conn.execute(
        "SELECT balance_fen FROM fund_accounts WHERE id = %s", (account,)
    ).fetchone() or (0,)
    assert balance == 5_000_000 + 12_345 - 1_200_001
    shown = cases.disclosure(conn, "HXY")
    assert [(d.case_id, d.cost_fen, d.invoice_ref) for d in shown] == [(case, 1_200_001, "INV-88")]
    shares = shown[0].shares
    (units,) = conn.execute(
        "SELECT count(*) FROM units u JOIN buildings b ON b.id = u.building_id"
        " WHERE b.estate_code = 'HXY' AND b.code = 'B1'"
    ).fetchone() or (0,)
    assert len(shares) == units > 0
    assert sum(x.share_fen for x in shares) == 1_200_001  # exactly the cost
    report = cases.yearly_report(conn, "HXY", 2026)
    b1 = next(r for r in report if r["building"] == "B1")
    assert (b1["deposits_fen"], b1["interest_fen"], b1["repairs_fen"]) == (5_000_000, 12_345,
                                                                           1_200_001)  # fmt: skip
    assert b1["closing_fen"] == balance
    changes = [c for (c,) in conn.execute(
        "SELECT change FROM fund_case_events WHERE case_id = %s ORDER BY id", (case,))]  # fmt: skip
    assert changes == ["opened", "estimated", "standing_refused", "standing_refused",
                       "approved", "repaired", "accepted", "settled"]  # fmt: skip
    assert ledger.verify(conn).ok


def test_a_failed_booster_pump_reaches_the_property_firm_and_the_fund(county: Conn) -> None:
    """Secondary water supply (二次供水) end to end: the simulated pump fails, the alert is
    dispatched to the estate's property firm with the water-supply deadlines, escalating to
    the street office and the housing authority, and the repair is on the emergency list."""
    conn = county
    sup = Supervisor()
    s = Scenario.model_validate(
        {
            "name": "t", "title": "t", "estate": "HXY", "devices": ["WP1"],
            "duration_s": 150, "steps": [{"at_s": 30, "device": "WP1", "action": "fail_pump"}],
        }
    )  # fmt: skip

    def tick(now: dt.datetime) -> None:
        sup.round(conn, now)

    play(conn, s, on_tick=tick)
    orders = conn.execute(
        "SELECT id, alert_type, assignee, chain, extract(epoch FROM arrive_due - created_at)"
        " FROM work_orders WHERE estate_code = 'HXY' AND device_code = 'WP1'"
    ).fetchall()
    assert len(orders) == 1, orders  # the pump fault and the low pressure are one failure
    order_id, alert_type, assignee, chain, arrive_s = orders[0]
    assert alert_type.startswith("water_supply.")
    assert assignee == "PF-HX"
    assert [c["party"] for c in chain][-2:] == ["street_office", "housing_authority"]
    assert arrive_s == pytest.approx(3600, abs=60)
    case = cases.open_case(
        conn, item="water_supply_failure", order_id=order_id, actor="PF-HX:li", now=T0
    )
    (item,) = conn.execute("SELECT item FROM fund_cases WHERE id = %s", (case,)).fetchone() or ("",)
    assert item == "water_supply_failure"
    lift = raise_alert(conn, "HXY", "B1-L1", "elevator.overspeed")
    with pytest.raises(cases.CaseError, match="does not make water_supply_failure"):
        cases.open_case(conn, item="water_supply_failure", alert_id=lift, actor="x", now=T0)


def raise_alert(conn: Conn, estate: str, device: str, rule: str) -> int:
    devs = {(d.estate, d.code): d for d in store.devices(conn)}
    d = devs[(estate, device)]
    events = store.apply(
        conn, [Op("raise", (d.id, rule), rule, Severity.CRITICAL, T0.timestamp())], {d.id: d}
    )
    return events[0].alert_id


def test_ineligible_cases_are_refused_with_the_reason(county: Conn) -> None:
    conn = county
    lift = raise_alert(conn, "HXY", "B1-L1", "elevator.overspeed")
    with pytest.raises(cases.CaseError, match=r"elevator.overspeed does not make drainage_failure"):
        cases.open_case(conn, item="drainage_failure", alert_id=lift, actor="x", now=T0)
    pressure = raise_alert(conn, "HXY", "B1-HP", "fire.pressure_low")
    with pytest.raises(cases.CaseError, match="needs the fire authority's open rectification"):
        cases.open_case(conn, item="fire_system_failure", alert_id=pressure, actor="x", now=T0)
    with pytest.raises(cases.CaseError, match="not on SFX's emergency repair list"):
        cases.open_case(conn, item="garden_fence", alert_id=lift, actor="x", now=T0)
    refused = conn.execute(
        "SELECT count(*) FROM fund_cases WHERE state = 'refused' AND refused_reason <> ''"
    ).fetchone()
    assert refused == (3,)  # on the record, with their reasons


def _repaired_case(conn: Conn, device: str, rule: str, est: int) -> int:
    """An accepted repair, ready to be paid (its alert has no work order here)."""
    alert = raise_alert(conn, "HXY", device, rule)
    case = cases.open_case(conn, item="elevator_danger", alert_id=alert, actor="x", now=T0)
    cases.estimate(conn, case, est, actor="x", now=T0, party="operator:PF-HX")
    cases.approve(conn, case, by="housing_authority:HA-SFX", actor="y", now=T0,
                  party="housing_authority:HA-SFX")  # fmt: skip
    cases.repaired(conn, case, note="done", actor="x", now=T0)
    cases.accept(conn, case, party=cases.committee("HXY"), note="ok", actor="z", now=T0)
    return case


def vote_for_standing(conn: Conn, estate: str, now: dt.datetime) -> None:
    """A standing authorisation the owners voted: 80 % take part, half of all agree."""
    (area, homes), *_ = conn.execute(
        "SELECT sum(u.area_m2), count(*) FROM units u JOIN buildings b ON b.id = u.building_id"
        " WHERE b.estate_code = %s",
        (estate,),
    ).fetchall()
    _, passed = cases.record_vote(
        conn, estate, held_on=now.date(), valid_until=now.date() + dt.timedelta(days=1095),
        participating=(area * Decimal("0.8"), int(homes * 0.8)),
        consenting=(area * Decimal("0.5"), int(homes * 0.5)), actor="SO-CG", now=now,
    )  # fmt: skip
    assert passed


def test_concurrent_settlements_cannot_overdraw(county: Conn, database_url: str) -> None:
    conn = county
    account = cases.account_of(conn, "HXY", "B1")
    cases.deposit(conn, account, 1_000, kind="deposit", key="d", actor="x", now=T0)
    a = _repaired_case(conn, "B1-L1", "elevator.overspeed", 700)
    b = _repaired_case(conn, "B1-L2", "elevator.overspeed", 700)
    start = threading.Barrier(2)
    results: dict[int, str] = {}

    def pay(case: int) -> None:
        with psycopg.connect(database_url, autocommit=True) as c:
            start.wait()
            try:
                cases.settle(c, case, cost_fen=700, invoice_ref="I", key=f"k{case}", actor="x",
                             now=T0)  # fmt: skip
                results[case] = "paid"
            except ledger.LedgerError as err:
                results[case] = str(err)

    threads = [threading.Thread(target=pay, args=(c,)) for c in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    paid, refused = sorted(results.values())  # "paid" sorts before "refused: …"
    assert paid == "paid"
    assert f"fund:{account} would go below zero" in refused
    (balance,) = conn.execute(
        "SELECT balance_fen FROM fund_accounts WHERE id = %s", (account,)
    ).fetchone() or (-1,)
    assert balance == 300
    assert ledger.verify(conn).ok


@given(
    cost=st.integers(min_value=1, max_value=10**10),
    areas=st.lists(
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal("999.99"), places=2),
        min_size=1,
        max_size=60,
    ),
)
def test_apportionment_sums_exactly_to_the_cost(cost: int, areas: list[Decimal]) -> None:
    shares = cases.apportion(cost, list(enumerate(areas)))
    assert sum(shares.values()) == cost
    total = sum(areas)
    for u, a in enumerate(areas):
        exact = Decimal(cost) * a / total
        assert abs(shares[u] - exact) < 1  # never more than a fen from the exact share


def test_a_ledger_row_changed_behind_the_services_back_is_found(
    county: Conn, stack: Stack, database_url: str
) -> None:
    conn = county
    account = cases.account_of(conn, "HXY", "B1")
    for i in range(3):
        cases.deposit(conn, account, 1_000 + i, kind="deposit", key=f"d{i}", actor="x", now=T0)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        conn.execute("UPDATE fund_legs SET amount_fen = amount_fen + 1")
    env = estate_env(
        stack.settings.var_dir,
        stack.settings.pg_port,
        stack.settings.mqtt_port,
        stack.settings.mqtt_device_port,
    )
    env["DATABASE_URL"] = database_url
    clean = run_estate(["fund", "verify"], env)
    assert clean.returncode == 0, clean.stderr
    assert "3 entries, chain intact" in clean.stdout
    # someone with the table owner's rights goes around the trigger
    with conn.transaction():
        conn.execute("ALTER TABLE fund_journal DISABLE TRIGGER fund_journal_append_only")
        conn.execute("UPDATE fund_journal SET memo = 'nothing to see' WHERE id = 2")
        conn.execute("ALTER TABLE fund_journal ENABLE TRIGGER fund_journal_append_only")
    found = run_estate(["fund", "verify"], env)
    assert found.returncode == 3
    assert "entry 2: its content does not match its hash" in found.stdout
