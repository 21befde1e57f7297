"""The responsibility list: the most specific row wins, gaps are reported, and the shipped
list covers every alert the shipped rules can raise."""

from __future__ import annotations

import pytest

from alerts import responsibility, rules
from alerts.responsibility import Gap, Parties, ResponsibilityError, Row
from alerts.rules import Severity

LIST = """
version: 1
rows:
  - kind: elevator
    min_severity: warning
    responsible: maintenance_company
    deadlines: {acknowledge_s: 3600, resolve_s: 86400}
    escalation: [property_firm]
  - kind: elevator
    alerts: [elevator.trapped]
    responsible: maintenance_company
    deadlines: {acknowledge_s: 300, arrive_s: 1800, resolve_s: 7200}
    escalation: [property_firm, street_office]
  - scope: {estate: HXY}
    kind: elevator
    responsible: HXY-LIFTS
    deadlines: {acknowledge_s: 600, resolve_s: 86400}
    escalation: [property_firm]
  - scope: {estate: HXY, building: B1}
    kind: elevator
    alerts: [elevator.trapped]
    responsible: maintenance_company
    deadlines: {acknowledge_s: 120, arrive_s: 900, resolve_s: 3600}
    escalation: [property_firm]
  - kind: elevator
    alerts: [elevator.maintenance_mode]
    dispatch: false
"""


def decide(estate: str, building: str | None, alert: str, severity: str) -> Row | Gap:
    book = responsibility.parse(LIST)
    return book.decide(
        estate=estate,
        building=building,
        kind="elevator",
        alert=alert,
        severity=Severity.parse(severity),
    )


@pytest.mark.parametrize(
    ("estate", "building", "alert", "severity", "ack"),
    [
        ("JXY", "B1", "elevator.trapped", "critical", 300),  # city, the alert named
        ("JXY", "B1", "elevator.ebike", "warning", 3600),  # city, the whole kind
        ("HXY", "B2", "elevator.ebike", "warning", 600),  # estate beats city
        ("HXY", "B2", "elevator.trapped", "critical", 600),  # estate beats a named alert
        ("HXY", "B1", "elevator.trapped", "critical", 120),  # building beats estate
        ("HXY", "B1", "elevator.ebike", "warning", 600),  # building row names other alerts
    ],
    ids=["city named", "city kind", "estate", "estate over named", "building", "fallback"],
)
def test_the_most_specific_row_wins(
    estate: str, building: str, alert: str, severity: str, ack: float
) -> None:
    row = decide(estate, building, alert, severity)
    assert isinstance(row, Row)
    assert row.deadlines is not None
    assert row.deadlines.acknowledge_s == ack


def test_an_uncovered_alert_is_a_gap_with_a_message() -> None:
    gap = decide("JXY", "B1", "elevator.power_loss", "info")  # below every min_severity
    assert isinstance(gap, Gap)
    assert "no responsibility row covers elevator.power_loss (info, elevator) in JXY/B1" in str(gap)
    fire = responsibility.parse(LIST).decide(
        estate="JXY", building=None, kind="fire", alert="fire.alarm", severity=Severity.CRITICAL
    )
    assert isinstance(fire, Gap)


def test_a_covered_alert_may_need_no_work_order() -> None:
    row = decide("JXY", "B1", "elevator.maintenance_mode", "info")
    assert isinstance(row, Row)
    assert row.dispatch is False


def test_parties_resolve_to_organisations() -> None:
    p = Parties("EM1", "PF1", "ST1", "FB", "MS", "HA")
    assert p.resolve("maintenance_company") == "EM1"
    assert p.resolve("street_office") == "ST1"
    assert p.resolve("HXY-LIFTS") == "HXY-LIFTS"  # an organisation named directly
    assert Parties(None, "PF1", None, None, None, None).resolve("maintenance_company") is None


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("  - scope: {building: B1}\n    kind: fire\n    dispatch: false\n", "needs its estate"),
        ("  - kind: fire\n    responsible: property_firm\n", "needs responsible, deadlines"),
        ("  - kind: lift\n    dispatch: false\n", "'drainage' or 'water_supply'"),
    ],
    ids=["building without estate", "dispatch without deadlines", "unknown kind"],
)
def test_bad_rows_are_refused(bad: str, says: str) -> None:
    with pytest.raises(ResponsibilityError) as info:
        responsibility.parse(LIST + bad, source="list.yaml")
    assert says in str(info.value)
    assert "list.yaml" in str(info.value)


def test_the_shipped_list_covers_every_shipped_rule_without_gaps() -> None:
    book = responsibility.load()
    for rule in rules.load().rules:
        for level in _severities(rule):
            got = book.decide(
                estate="ANY", building="B1", kind=rule.kind, alert=rule.alert, severity=level
            )
            assert isinstance(got, Row), f"{rule.id}: {got}"


@pytest.mark.parametrize(
    ("areas", "arrive_s"),
    [
        (["SFX-CG-CGJD", "SFX-CG", "SFX"], 1800),  # 示范县: run as a city with districts
        (["OTHER-STREET", "OTHER-COUNTY"], 3600),  # elsewhere: 1 hour (TSG T5002)
        ([], 3600),
    ],
)
def test_trapped_passengers_go_to_the_maintenance_company_within_30_minutes_or_1_hour(
    areas: list[str], arrive_s: float
) -> None:
    for alert in ("elevator.trapped", "elevator.power_loss_occupied"):
        row = responsibility.load().decide(
            estate="ANY",
            building="B1",
            kind="elevator",
            alert=alert,
            severity=Severity.CRITICAL,
            areas=areas,
        )
        assert isinstance(row, Row)
        assert row.responsible == "maintenance_company"
        assert row.inform == ["property_firm"]  # the lift's user hears of it at once
        assert row.deadlines is not None
        assert row.deadlines.arrive_s == arrive_s
        assert row.escalation[-1] == "market_supervision"


def test_the_nearest_area_row_wins_over_a_farther_one() -> None:
    book = responsibility.parse(
        """
version: 1
rows:
  - {kind: fire, responsible: A, deadlines: {acknowledge_s: 1, resolve_s: 1}, escalation: [X]}
  - {scope: {area: CITY}, kind: fire, responsible: B,
     deadlines: {acknowledge_s: 1, resolve_s: 1}, escalation: [X]}
  - {scope: {area: DISTRICT}, kind: fire, responsible: C,
     deadlines: {acknowledge_s: 1, resolve_s: 1}, escalation: [X]}
  - {scope: {estate: E1}, kind: fire, responsible: D,
     deadlines: {acknowledge_s: 1, resolve_s: 1}, escalation: [X]}
"""
    )

    def who(estate: str, areas: list[str]) -> str | None:
        row = book.decide(
            estate=estate, building=None, kind="fire", alert="fire.fault",
            severity=Severity.WARNING, areas=areas,
        )  # fmt: skip
        assert isinstance(row, Row)
        return row.responsible

    assert who("E2", ["STREET", "DISTRICT", "CITY"]) == "C"
    assert who("E2", ["STREET", "CITY"]) == "B"
    assert who("E2", ["ELSEWHERE"]) == "A"
    assert who("E1", ["STREET", "DISTRICT", "CITY"]) == "D"


def _severities(rule: rules.Rule) -> list[Severity]:
    if isinstance(rule, rules.ThresholdRule):
        return [Severity.parse(lv.severity) for lv in rule.levels]
    return [Severity.parse(rule.severity)]
