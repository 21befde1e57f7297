"""Publish-to-alert and publish-to-order latency, with the load stated as a share of
the worker's capacity measured in the same run.

    python -m bench.alerts [--probes 100] [--devices 2000] [--capacity-messages 60000]
                           [--shares 0.5,0.8] [--no-event-lane]

Runs `estate ingest` (with its alert stage) and `estate supervise` against the private
servers in a scratch database. First the worker's capacity: ``--capacity-messages``
telemetry messages published flat out, timed from the first send to the last row
committed. Then each phase (idle, and background telemetry at each share of that
capacity, from two pre-encoded publisher processes) sends, every 100 ms, two probes at
QoS 1 from elevators with nothing open:

- an ``overspeed`` event, measured to ``stored`` (the alert row committed, polled every
  2 ms) and ``streamed`` (the worker's alert message reaching a subscriber);
- a ``trapped`` event, measured to ``order``: its work order committed with the lift
  company as assignee (what the company's console and API show; dispatch included).

Ends with ``alert_p99_ms=N`` (streamed p99 at the highest share) and
``order_p99_ms=N``. ``--no-event-lane`` runs the same with events on the telemetry path,
the baseline side by side.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.synchronize import Event as MpEvent

import paho.mqtt.client as mqtt
import psycopg

from bench import pct
from bench.ingest import DB, make_stream, prepare, publish, rows, split, wait_rows, workers
from bench.wire import WirePublisher
from estate.mqtt import Address, new_client
from estate.services import PrivateServices
from estate.settings import load_settings
from ingest.batch import DeviceRef


class Stream:
    """Receipt times of alert messages, by (estate, device)."""

    def __init__(self, mqtt_url: str) -> None:
        address = Address.parse(mqtt_url)
        self.got: dict[tuple[str, str], int] = {}
        ready = threading.Event()
        c = new_client(address, f"bench-alerts-{uuid.uuid4().hex[:6]}")

        def on_message(_c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
            body = json.loads(m.payload)
            if body["change"] == "raise" and body["alert"] == "elevator.overspeed":
                self.got.setdefault((body["estate"], body["device"]), time.time_ns())

        c.on_message = on_message
        c.on_subscribe = lambda *_a: ready.set()
        c.connect(address.host, address.port)
        c.subscribe("estate/v1/+/alerts/#", qos=0)
        c.loop_start()
        if not ready.wait(10):
            raise RuntimeError("could not subscribe to the alert topics")
        self.client = c

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _load(mqtt_url: str, msgs: list[tuple[str, bytes]], rate: float, stop: MpEvent) -> None:
    """Child process: publish ``msgs`` (all new readings) at ``rate``/s until done or
    ``stop``."""
    pub = WirePublisher(mqtt_url, f"bench-load-{os.getpid()}")
    packets = WirePublisher.encode(msgs)
    chunk = max(1, int(rate))  # a second's worth at a time, so that stop is heard
    for i in range(0, len(packets), chunk):
        if stop.is_set():
            break
        pub.send(packets[i : i + chunk], rate=rate)
    pub.close()


class Probes:
    """When each probe was sent, its alert stored, and its work order committed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sent: dict[tuple[str, str], int] = {}
        self.stored: dict[tuple[str, str], int] = {}
        self.ordered: dict[tuple[str, str], int] = {}
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            last_alert = last_order = 0
            while not self._stop.is_set():
                alerts = conn.execute(
                    "SELECT a.id, d.estate_code, d.code FROM alerts a JOIN devices d"
                    " ON d.id = a.device_id WHERE a.id > %s"
                    " AND a.rule_id = 'elevator.overspeed' ORDER BY a.id",
                    (last_alert,),
                ).fetchall()
                orders = conn.execute(
                    "SELECT id, estate_code, device_code FROM work_orders WHERE id > %s"
                    " AND alert_type = 'elevator.trapped' AND assignee IS NOT NULL ORDER BY id",
                    (last_order,),
                ).fetchall()
                now = time.time_ns()
                for i, estate, code in alerts:
                    self.stored.setdefault((estate, code), now)
                    last_alert = max(last_alert, int(i))
                for i, estate, code in orders:
                    self.ordered.setdefault((estate, code), now)
                    last_order = max(last_order, int(i))
                time.sleep(0.002)

    def close(self) -> None:
        self._stop.set()
        self._poller.join(5)


Result = dict[str, list[float]]


def probe(
    mqtt_url: str,
    probes: Probes,
    stream: Stream,
    overspeed: list[DeviceRef],
    trapped: list[DeviceRef],
    *,
    every_s: float = 0.1,
) -> Result:
    """stored / streamed ms of one overspeed event from each of ``overspeed``, order ms
    of one trapped event from each of ``trapped``, interleaved every ``every_s``."""
    pub = WirePublisher(mqtt_url, f"bench-probe-{os.getpid()}-{uuid.uuid4().hex[:4]}")
    for i, (o, t) in enumerate(zip(overspeed, trapped, strict=True)):
        for d, code in ((o, "overspeed"), (t, "trapped")):
            ts = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
            body = json.dumps({"ts": ts, "seq": 10_000_000 + i, "code": code})
            packet = WirePublisher.encode(
                [(f"estate/v1/{d.estate}/elevator/{d.code}/event", body.encode())]
            )
            probes.sent[(d.estate, d.code)] = time.time_ns()
            pub.send(packet)
        time.sleep(every_s)
    want_o = {(d.estate, d.code) for d in overspeed}
    want_t = {(d.estate, d.code) for d in trapped}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
        want_o <= set(probes.stored) and want_o <= set(stream.got) and want_t <= set(probes.ordered)
    ):
        time.sleep(0.05)
    pub.close()
    for what, got, want in (
        ("alert", stream.got, want_o),
        ("stored alert", probes.stored, want_o),
        ("work order", probes.ordered, want_t),
    ):
        missing = sorted(want - set(got))
        if missing:
            raise RuntimeError(f"{len(missing)} probes never produced a {what}, e.g. {missing[:3]}")
    return {
        "stored": [(probes.stored[c] - probes.sent[c]) / 1e6 for c in want_o],
        "streamed": [(stream.got[c] - probes.sent[c]) / 1e6 for c in want_o],
        "order": [(probes.ordered[c] - probes.sent[c]) / 1e6 for c in want_t],
    }


@contextmanager
def supervisor(url: str, mqtt_url: str) -> Iterator[None]:
    """`estate supervise` (dispatch, deadlines, notifications) as its own process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESTATE_")}
    env.update(DATABASE_URL=url, MQTT_URL=mqtt_url)
    p = subprocess.Popen(
        [sys.executable, "-m", "cli", "supervise"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        p.terminate()  # our own child
        p.wait(30)


def capacity(url: str, mqtt_url: str, devices: list[DeviceRef], n: int) -> float:
    """Messages/s the running worker stores when ``n`` arrive flat out."""
    before = rows(url)
    msgs = make_stream(devices, n, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30))
    sent, _ = publish(mqtt_url, split(msgs, 2))
    done = wait_rows(url, before + n)
    first = min(t[0] for t in sent if t)
    return n / ((done - first) / 1e9)


@contextmanager
def loaded(
    url: str, mqtt_url: str, background: list[DeviceRef], rate: float, seconds: float
) -> Iterator[None]:
    """Background telemetry at ``rate``/s for the duration of the block (fresh readings)."""
    msgs = make_stream(background, int(rate * seconds), dt.datetime.now(dt.UTC))
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    procs = [
        ctx.Process(target=_load, args=(mqtt_url, part, rate / 2, stop)) for part in split(msgs, 2)
    ]
    for p in procs:
        p.start()
    time.sleep(4)  # connected and at pace
    try:
        yield
    finally:
        stop.set()
        for p in procs:
            p.join(30)
        settled = rows(url)
        while True:  # let the worker catch up before the next phase
            time.sleep(1)
            now = rows(url)
            if now == settled:
                break
            settled = now


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--probes", type=int, default=100)
    ap.add_argument("--devices", type=int, default=2000, help="elevators sending the load")
    ap.add_argument("--capacity-messages", type=int, default=60_000)
    ap.add_argument("--shares", default="0.5,0.8", help="load as shares of the capacity")
    ap.add_argument("--no-event-lane", action="store_true", help="the baseline")
    args = ap.parse_args()
    shares = [float(x) for x in args.shares.split(",")]
    run_id = f"bench-alerts-{os.getpid()}"
    phases = 1 + len(shares)
    with PrivateServices(load_settings()).running() as ep:
        admin = ep.database_url.rsplit("/", 1)[0] + "/postgres"
        url, devices = prepare(admin, args.devices + 2 * phases * args.probes)
        k = args.probes
        probe_sets = [
            (devices[2 * p * k : (2 * p + 1) * k], devices[(2 * p + 1) * k : (2 * p + 2) * k])
            for p in range(phases)
        ]
        background = devices[2 * phases * k :]
        print(
            f"{len(devices)} elevators; probes every 100 ms: an overspeed and a trapped event;"
            f" load from {len(background)} elevators; event lane "
            f"{'off' if args.no_event_lane else 'on'}",
            flush=True,
        )
        results: dict[str, Result] = {}
        seconds = 4 + args.probes * 0.1 + 5
        lane = {"ESTATE_INGEST_EVENT_LANE": "false"} if args.no_event_lane else {}
        with workers(url, ep.mqtt_url, 1, run_id, env=lane), supervisor(url, ep.mqtt_url):
            cap = capacity(url, ep.mqtt_url, background, args.capacity_messages)
            print(f"capacity: {cap:,.0f} msg/s (one worker with alerts)", flush=True)
            stream = Stream(ep.mqtt_url)
            probes = Probes(url)
            try:
                results["idle"] = probe(ep.mqtt_url, probes, stream, *probe_sets[0])
                for i, share in enumerate(shares, start=1):
                    rate = share * cap
                    with loaded(url, ep.mqtt_url, background, rate, seconds):
                        name = f"{share:.0%} ({rate:,.0f} msg/s)"
                        results[name] = probe(ep.mqtt_url, probes, stream, *probe_sets[i])
            finally:
                probes.close()
                stream.close()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    print(f"{'phase':24} {'stored p50':>10} {'p99':>6} {'streamed p50':>13} {'p99':>6}"
          f" {'order p50':>10} {'p99':>6}  ms")  # fmt: skip
    for name, r in results.items():
        print(
            f"{name:24} {pct(r['stored'], 50):10.0f} {pct(r['stored'], 99):6.0f}"
            f" {pct(r['streamed'], 50):13.0f} {pct(r['streamed'], 99):6.0f}"
            f" {pct(r['order'], 50):10.0f} {pct(r['order'], 99):6.0f}"
        )
    last = list(results.values())[-1]
    print(f"alert_p99_ms={pct(last['streamed'], 99):.0f}")
    print(f"order_p99_ms={pct(last['order'], 99):.0f}")


if __name__ == "__main__":
    main()
