"""The fund's process as owners, committees and the housing authority run it (issue 18):
votes by 民法典 art. 278, the standing authorisation only where owners voted it, no party
approving or accepting its own estimate, payment only for an accepted repair and within
the estimate's margin or a second party's cost review, every cap checked again on the
amount paid, manual cases with photos, one case per failure, and per-home accounts that
reconcile to the ledger to the fen."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from estate import registry
from estate.db import Conn
from fund import cases, ledger
from tests.fund.test_cases import raise_alert, vote_for_standing
from tests.support.data import T0

pytestmark = pytest.mark.integration
SO, HA, PF = "street_office:SFX-CG-CGJD", "housing_authority:HA-SFX", "operator:PF-HX"
CO = cases.committee("HXY")  # HXY's owners' committee (业委会)


@pytest.fixture
def county(conn: Conn) -> Conn:
    registry.load(conn, registry.read(registry.demo_path()))
    cases.open_accounts(conn, T0)
    cases.deposit(conn, cases.account_of(conn, "HXY", "B1"), 300_000_000, kind="deposit",
                  key="p-dep", actor="HA", now=T0)  # fmt: skip
    return conn


def two_photos(conn: Conn, case: int) -> None:
    """Two photos of the failure, as the API's upload stores them (tests/api/test_fund.py
    uploads real ones)."""
    for n in (1, 2):
        conn.execute(
            "INSERT INTO attachments (subject, part, filename, content_type, size, sha256, data,"
            " uploaded_by, uploaded_at) VALUES (%s, 'evidence', 'p.png', 'image/png', 1, %s,"
            " 'x', 'PF', %s)",
            (f"fund_case:{case}", f"{n:064x}", T0),
        )


def _accepted(conn: Conn, *, est: int, standing: bool, device: str = "B1-L1") -> int:
    case = cases.open_case(conn, item="elevator_danger",
                           alert_id=raise_alert(conn, "HXY", device, "elevator.overspeed"),
                           actor="PF", now=T0)  # fmt: skip
    cases.estimate(conn, case, est, actor="PF", now=T0, party=PF)
    if standing:
        cases.approve(conn, case, by="standing", actor="PF", now=T0, party=PF)
    else:
        cases.approve(conn, case, by=CO, actor="CO", now=T0, party=CO)
    cases.repaired(conn, case, note="done", actor="PF", now=T0)
    cases.accept(conn, case, party=CO, note="ok", actor="x", now=T0)
    return case


@pytest.mark.parametrize(
    ("rule", "part", "yes", "passes"),
    [
        ("civil_code", (Decimal(200), 2), (Decimal(101), 2), True),  # 2/3 take part, > half
        ("civil_code", (Decimal(199), 2), (Decimal(199), 2), False),  # under 2/3 of the area
        ("civil_code", (Decimal(300), 3), (Decimal(150), 2), False),  # half is not more
        ("two_thirds", (Decimal(300), 3), (Decimal(200), 2), True),  # 2/3 of all consent
        ("two_thirds", (Decimal(300), 3), (Decimal(199), 2), False),
    ],
)
def test_votes_are_judged_by_the_citys_rule(
    rule: str, part: tuple[Decimal, int], yes: tuple[Decimal, int], passes: bool
) -> None:
    total = (Decimal(300), 3)
    assert cases.vote_passes(rule, total=total, part=part, yes=yes) is passes


def test_the_standing_authorisation_needs_a_vote_and_its_caps_hold_on_the_amount_paid(
    county: Conn,
) -> None:
    conn = county
    case = cases.open_case(conn, item="elevator_danger",
                           alert_id=raise_alert(conn, "HXY", "B1-L1", "elevator.overspeed"),
                           actor="PF", now=T0)  # fmt: skip
    cases.estimate(conn, case, 100, actor="PF", now=T0, party=PF)  # 1 yuan
    with pytest.raises(cases.CaseError, match="have not voted"):
        cases.approve(conn, case, by="standing", actor="PF", now=T0, party=PF)
    # a vote that failed gives nothing
    (area, homes), *_ = conn.execute(
        "SELECT sum(u.area_m2), count(*) FROM units u JOIN buildings b ON b.id = u.building_id"
        " WHERE b.estate_code = 'HXY'"
    ).fetchall()
    _, passed = cases.record_vote(
        conn, "HXY", held_on=T0.date(), valid_until=T0.date() + dt.timedelta(days=1095),
        participating=(area / 2, homes // 2), consenting=(area / 2, homes // 2), actor="SO",
        now=T0,
    )  # fmt: skip
    assert not passed
    with pytest.raises(cases.CaseError, match="have not voted"):
        cases.approve(conn, case, by="standing", actor="PF", now=T0, party=PF)
    vote_for_standing(conn, "HXY", T0)
    cases.approve(conn, case, by="standing", actor="PF", now=T0, party=PF)
    cases.repaired(conn, case, note="done", actor="PF", now=T0)
    cases.accept(conn, case, party=CO, note="ok", actor="CO", now=T0)
    # estimated at 1 yuan, billed 300,000 yuan: over the estimate, then over the cap
    with pytest.raises(cases.CaseError, match="needs a cost review"):
        cases.settle(conn, case, cost_fen=30_000_000, invoice_ref="I1", key="s1", actor="HA",
                     now=T0)  # fmt: skip
    cases.review(conn, case, 30_000_000, reason="发现钢丝绳断股，更换全部曳引绳", party=HA,
                 actor="HA", now=T0)  # fmt: skip
    with pytest.raises(cases.CaseError, match="over the 10000000 fen cap per item"):
        cases.settle(conn, case, cost_fen=30_000_000, invoice_ref="I1", key="s2", actor="HA",
                     now=T0)  # fmt: skip
    (state,) = conn.execute("SELECT state FROM fund_cases WHERE id = %s", (case,)).fetchone() or (
        "",
    )
    assert state == "accepted"  # nothing paid
    assert ledger.verify(conn).ok


def test_a_cost_over_the_margin_needs_a_review_by_a_second_party(county: Conn) -> None:
    conn = county
    case = _accepted(conn, est=100_000, standing=False)
    with pytest.raises(cases.CaseError, match="by more than 10%"):
        cases.settle(conn, case, cost_fen=120_000, invoice_ref="I2", key="r1", actor="HA", now=T0)
    for who in (PF, CO):  # who estimated, who approved
        with pytest.raises(cases.CaseError, match="a second party reviews"):
            cases.review(conn, case, 120_000, reason="x", party=who, actor="x", now=T0)
    with pytest.raises(cases.CaseError, match="say why"):
        cases.review(conn, case, 120_000, reason=" ", party=HA, actor="HA", now=T0)
    cases.review(conn, case, 115_000, reason="增项：门机更换", party=HA, actor="HA", now=T0)
    with pytest.raises(cases.CaseError, match="over the reviewed 115000 fen"):
        cases.settle(conn, case, cost_fen=120_000, invoice_ref="I2", key="r2", actor="HA", now=T0)
    cases.settle(conn, case, cost_fen=115_000, invoice_ref="I2", key="r3", actor="HA", now=T0)
    # within the margin no review is needed
    other = _accepted(conn, est=100_000, standing=False, device="B1-L2")
    cases.settle(conn, other, cost_fen=110_000, invoice_ref="I3", key="r4", actor="HA", now=T0)


def test_manual_cases_need_their_photos_and_one_case_per_failure(county: Conn) -> None:
    conn = county
    with pytest.raises(cases.CaseError, match="reported by sensors"):
        cases.open_manual(conn, item="elevator_danger", estate="HXY", building="B1",
                          description="x", actor="PF", now=T0)  # fmt: skip
    with pytest.raises(cases.CaseError, match="describe the failure"):
        cases.open_manual(conn, item="roof_leak", estate="HXY", building="B1", description=" ",
                          actor="PF", now=T0)  # fmt: skip
    leak = "顶层 2601 室屋面渗水，雨天滴漏"
    case = cases.open_manual(conn, item="roof_leak", estate="HXY", building="B1",
                             description=leak, actor="PF", now=T0)  # fmt: skip
    with pytest.raises(cases.CaseError, match="open for this failure already"):
        cases.open_manual(conn, item="roof_leak", estate="HXY", building="B1",
                          description="again", actor="PF", now=T0)  # fmt: skip
    with pytest.raises(cases.CaseError, match="needs 2 photos"):
        cases.estimate(conn, case, 500_000, actor="PF", now=T0, party=PF)
    two_photos(conn, case)
    cases.estimate(conn, case, 500_000, actor="PF", now=T0, party=PF)
    # a trapped car raises more than one alert: one case for the device's failure
    first = raise_alert(conn, "HXY", "B2-L1", "elevator.trapped")
    second = raise_alert(conn, "HXY", "B2-L1", "elevator.power_loss_occupied")
    cases.open_case(conn, item="elevator_danger", alert_id=first, actor="PF", now=T0)
    with pytest.raises(cases.CaseError, match="open for this failure already"):
        cases.open_case(conn, item="elevator_danger", alert_id=second, actor="PF", now=T0)


def _manual_accepted(conn: Conn, *, est: int, tag: str) -> int:
    """A roof leak of building 1, photographed, estimated, approved, repaired, accepted."""
    case = cases.open_manual(conn, item="roof_leak", estate="HXY", building="B1",
                             description=f"屋面渗漏 {tag}", actor="PF", now=T0)  # fmt: skip
    two_photos(conn, case)
    cases.estimate(conn, case, est, actor="PF", now=T0, party=PF)
    cases.approve(conn, case, by=CO, actor="CO", now=T0, party=CO)
    cases.repaired(conn, case, note="done", actor="PF", now=T0)
    cases.accept(conn, case, party=CO, note="ok", actor="CO", now=T0)
    return case


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["deposit", "interest", "repair"]), st.integers(1, 5_000_000)),
        min_size=1, max_size=8,
    )
)  # fmt: skip
def test_home_accounts_always_sum_to_the_ledger(county: Conn, steps: list[tuple[str, int]]) -> None:
    """Any sequence of deposits, interest and repairs: the per-home balances (分户账) sum
    exactly to the account's balance, and the ledger verifies."""
    conn = county
    account = cases.account_of(conn, "HXY", "B1")
    run = conn.execute("SELECT count(*) FROM fund_journal").fetchone()
    base = int(run[0]) if run else 0
    for i, (kind, amount) in enumerate(steps):
        key = f"h{base}-{i}"
        if kind != "repair":
            cases.deposit(conn, account, amount, kind=kind, key=key, actor="HA", now=T0)
            continue
        balance = conn.execute(
            "SELECT balance_fen FROM fund_accounts WHERE id = %s", (account,)
        ).fetchone()
        assert balance is not None
        cost = min(amount, int(balance[0]))  # the fund pays what it holds (overdraft: elsewhere)
        if cost == 0:
            continue
        case = _manual_accepted(conn, est=cost, tag=key)
        cases.settle(conn, case, cost_fen=cost, invoice_ref=f"I{key}", key=key, actor="HA",
                     now=T0)  # fmt: skip
    homes = cases.homes(conn, account)
    (balance,) = conn.execute(
        "SELECT balance_fen FROM fund_accounts WHERE id = %s", (account,)
    ).fetchone() or (0,)
    assert sum(h.balance_fen for h in homes) == balance
    assert all(h.balance_fen >= 0 for h in homes)
    assert ledger.verify(conn).ok
    # the yearly report per home adds up, and the homes' reports add up to the account's
    years = [cases.home_year(h, T0.year) for h in homes]
    for y, h in zip(years, homes, strict=True):
        assert y.opening_fen + y.deposits_fen + y.interest_fen - y.repairs_fen + y.other_fen == (
            y.closing_fen
        )
        assert y.closing_fen == h.balance_fen
    (acc,) = [r for r in cases.yearly_report(conn, "HXY", T0.year) if r["account"] == account]
    for field in ("opening", "deposits", "interest", "repairs", "closing"):
        assert sum(getattr(y, f"{field}_fen") for y in years) == acc[f"{field}_fen"], field
