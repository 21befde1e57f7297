"""What supervision costs when a whole city has trouble at once.

    python -m bench.dispatch [--orders 2000]

In a scratch database with a generated city, ``--orders`` elevators raise a trapped
alert in the same second (a storm, a power cut; lifts of one building share an incident,
so one order). Then, timed:

- ``dispatch``: the supervisor round that turns the incidents into orders (one order,
  events, notifications each);
- ``quiet round``: a round with every order live and nothing due (the steady state, paid
  every second);
- ``breach round``: the round in which every acknowledge deadline has passed (a breach,
  an escalation and two notifications each);
- ``deliver``: the notifier sending every queued notification to the real broker at QoS 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import psycopg

from alerts import store
from alerts.judge import Op
from alerts.notify import MqttSender, Notifier
from alerts.rules import Severity
from alerts.supervise import Supervisor
from bench import county_with_lifts, fresh_database
from estate import registry
from estate.mqtt import service_publisher
from estate.services import PrivateServices
from estate.settings import load_settings

DB = "bench_dispatch"
T0 = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC)


def prepare(admin_url: str, n: int) -> str:
    url = fresh_database(admin_url, DB)
    with psycopg.connect(url) as conn:
        registry.load(conn, county_with_lifts(n))
    return url


def timed(what: str, fn: object, n: int) -> float:
    assert callable(fn)
    t = time.perf_counter()
    fn()
    s = time.perf_counter() - t
    print(f"{what:14} {s * 1000:9.1f} ms  ({s / max(n, 1) * 1e6:7.0f} µs per order)")
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=2000)
    args = ap.parse_args()
    settings = load_settings()
    with PrivateServices(settings).running() as ep:
        url = prepare(ep.database_url, args.orders)
        with psycopg.connect(url, autocommit=True) as conn:
            lifts = [d for d in store.devices(conn) if d.kind == "elevator"][: args.orders]
            t = T0.timestamp()
            ops = [
                Op("raise", (d.id, "elevator.trapped_event"), "elevator.trapped",
                   Severity.CRITICAL, t, {"event": {"code": "trapped"}})
                for d in lifts
            ]  # fmt: skip
            sup = Supervisor()
            sup.round(conn, T0 - dt.timedelta(seconds=1))  # loads the list and the registry
            store.apply(conn, ops, {d.id: d for d in lifts})
            row = conn.execute("SELECT count(*) FROM incidents").fetchone()
            assert row is not None
            n = int(row[0])  # lifts of one building share an incident
            print(
                f"{len(lifts)} trapped alerts: {n} incidents (one per building) in"
                f" {len({d.estate for d in lifts})} estates"
            )
            timed("dispatch", lambda: sup.round(conn, T0), n)
            live = conn.execute("SELECT count(*) FROM work_orders").fetchone()
            assert live == (n,), live
            timed("quiet round", lambda: sup.round(conn, T0 + dt.timedelta(seconds=1)), n)
            timed("breach round", lambda: sup.round(conn, T0 + dt.timedelta(seconds=301)), n)
            breaches = conn.execute("SELECT count(*) FROM work_order_breaches").fetchone()
            assert breaches == (n,), breaches
            queued = conn.execute("SELECT count(*) FROM notifications").fetchone()
            assert queued is not None
            with service_publisher(ep.mqtt_url, "bench-dispatch") as publish:
                sender = MqttSender(publish)
                notifier = Notifier({"mqtt": sender, "stream": sender})

                def deliver() -> None:
                    now = T0 + dt.timedelta(seconds=302)
                    while notifier.deliver(conn, now, limit=500):
                        pass

                s = timed("deliver", deliver, n)
            print(
                f"delivered {notifier.counts['sent']} of {queued[0]} notifications: "
                f"{notifier.counts['sent'] / s:,.0f}/s"
            )


if __name__ == "__main__":
    main()
