"""Every simulator scenario end to end with a controllable clock: the simulated devices'
messages go through the real decoder, writer and alert stage into TimescaleDB in
simulated time, and the alerts stored must be exactly what the scenario expects (by its
deadline) and none of the noise it must not raise.

The broker is left out on purpose: its part (delivery, acknowledgement, redelivery) is
covered by the ingest and alert worker tests; here the clock must be ours to move.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import psycopg
import pytest

from alerts.stage import AlertStage
from estate import registry
from ingest.batch import Incoming, decode_batch
from ingest.contract import Bounds
from ingest.worker import Directory
from ingest.writer import Writer
from simulators import runner, scenarios
from simulators.scenarios import Expectation, Scenario

pytestmark = pytest.mark.integration
Conn = psycopg.Connection[tuple[Any, ...]]
T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)


def _time_of(payload: bytes, previous: dt.datetime) -> dt.datetime:
    """A message's time: its own timestamp, or (a status, a Last Will) the one before."""
    body = json.loads(payload)
    first = body[0] if isinstance(body, list) and body else body
    ts = first.get("ts") if isinstance(first, dict) else None
    return dt.datetime.fromisoformat(ts) if isinstance(ts, str) else previous


def play(conn: Conn, s: Scenario) -> None:
    """Simulate the scenario, then feed what the devices sent through ingest and the alert
    stage, one tick at a time, in simulated time."""
    reg = registry.read(registry.demo_path())
    fleet = runner.build_fleet(reg, seed=1, estates=[s.estate], devices=s.devices)
    pub = runner.RecordingPublisher()
    runner.run(fleet, pub, start=T0, duration_s=s.duration_s, tick_s=s.tick_s, scenario=s)
    directory = Directory()
    directory.load(conn)
    writer = Writer(conn)
    stage = AlertStage(checkpoint_s=3600)
    stage.start(conn, owns=lambda e: e == s.estate, publish=None, now=T0)
    t = T0
    pending: list[Incoming] = []
    end_of_tick = T0 + dt.timedelta(seconds=s.tick_s)

    def flush(now: dt.datetime) -> None:
        rows = decode_batch(pending, directory.lookup, bounds=Bounds())
        assert not rows.dead, rows.dead[:3]
        writer.write(rows)
        stage.batch(conn, rows, now)
        stage.tick(conn, now)
        pending.clear()

    for topic, payload, _ in pub.sent:
        t = _time_of(payload, t)
        while t >= end_of_tick:
            flush(end_of_tick)
            end_of_tick += dt.timedelta(seconds=s.tick_s)
        pending.append(Incoming(topic, payload, 0, 1, 0, t))
    # time goes on to the end of the scenario, whether devices speak or not
    while end_of_tick <= T0 + dt.timedelta(seconds=s.duration_s):
        flush(end_of_tick)
        end_of_tick += dt.timedelta(seconds=s.tick_s)


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
