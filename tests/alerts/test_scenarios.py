"""Every simulator scenario end to end with a controllable clock: the simulated devices'
messages go through the real decoder, writer and alert stage into TimescaleDB in
simulated time, and the alerts stored must be exactly what the scenario expects (by its
deadline) and none of the noise it must not raise.

The broker is left out on purpose: its part (delivery, acknowledgement, redelivery) is
covered by the ingest and alert worker tests; here the clock must be ours to move.
"""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from alerts import rules
from estate import registry
from estate.db import Conn
from simulators import scenarios
from simulators.scenarios import Expectation
from tests.support.data import T0
from tests.support.pipeline import play
from tests.support.stack import Stack, scratch_database

pytestmark = pytest.mark.integration


def raised(conn: Conn, e: Expectation, estate: str) -> list[dt.datetime]:
    """When the expected alert (in the expected confirmation state) came to be, unmuted."""
    rows = conn.execute(
        "SELECT c.at, c.change, c.detail->>'confirmation', a.confirmation, a.muted_by"
        " FROM alerts a JOIN alert_changes c ON c.alert_id = a.id"
        " WHERE a.estate_code = %s AND a.device_code = %s AND a.alert_type = %s"
        " AND c.change IN ('raise', 'confirm') ORDER BY c.at",
        (estate, e.device, e.alert),
    ).fetchall()
    out = []
    for at, change, conf_then, conf_now, muted in rows:
        if muted is not None:
            continue  # stored for the record, but muted: not raised to anyone
        if e.state is None or conf_then == e.state or (change == "raise" and conf_now == e.state):
            out.append(at)
    return out


@pytest.mark.parametrize("name", sorted(scenarios.load()))
def test_scenario_raises_what_it_expects_and_nothing_it_must_not(conn: Conn, name: str) -> None:
    s = scenarios.load()[name]
    registry.load(conn, registry.read(registry.demo_path()))
    play(conn, s)
    for e in s.expect:
        when = raised(conn, e, s.estate)
        assert when, f"{name}: {e.alert} on {e.device} ({e.state or 'any state'}) never raised"
        if e.within_s is not None:
            took = (when[0] - T0).total_seconds()
            assert took <= e.within_s, f"{name}: {e.alert} on {e.device} after {took:.0f} s"
    for e in s.must_not:
        assert not raised(conn, e, s.estate), (
            f"{name}: {e.alert} on {e.device} ({e.state or 'any state'}) must not be raised"
        )


def test_the_scenarios_raise_every_water_supply_rule(stack: Stack) -> None:
    """Every rule of the fourth kind (二次供水) is seen raising its alert in some scenario,
    so none of them is shipped untried."""
    book = rules.load()
    wanted = {r.id for r in book.rules if r.kind == "water_supply"}
    reg = registry.read(registry.demo_path())
    kinds = {(e.code, d.code): d.kind for e, _, d in reg.devices()}
    seen: set[str] = set()
    for s in scenarios.load().values():
        if not any(kinds[(s.estate, d)] == "water_supply" for d in s.devices):
            continue
        with scratch_database(stack, "water") as url, psycopg.connect(url, autocommit=True) as c:
            registry.load(c, reg)
            play(c, s)
            for rule_id, others in c.execute("SELECT rule_id, rules FROM alerts"):
                seen |= {rule_id, *others}
    assert wanted - seen == set(), f"no scenario raises {sorted(wanted - seen)}"
