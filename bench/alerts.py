"""Publish-to-alert latency, idle and under background load.

    python -m bench.alerts [--probes 100] [--load 10000] [--devices 2000]

Runs `estate ingest` (with its alert stage) against the private servers in a scratch
database. A probe is an ``overspeed`` event from an elevator that has no open alert,
published at QoS 1; its latency is measured to two points:

- ``stored``: the alert row is committed (polled every 2 ms);
- ``streamed``: the alert's MQTT message reaches a subscriber (published by the worker
  after the commit: what a console or a notifier sees).

Probes go out every 100 ms, first on an idle system, then while two publisher processes
send ``--load`` telemetry messages/s (pre-encoded, bench/wire.py) from other elevators.
Ends with ``alert_p99_ms=N``: the streamed p99 under load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import threading
import time
import uuid
from multiprocessing.synchronize import Event as MpEvent

import numpy as np
import paho.mqtt.client as mqtt
import psycopg

from bench.ingest import DB, make_stream, prepare, split, workers
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


def probe(
    url: str,
    mqtt_url: str,
    stream: Stream,
    devices: list[DeviceRef],
    *,
    every_s: float = 0.1,
) -> tuple[list[float], list[float]]:
    """(stored ms, streamed ms) for one overspeed event from each of ``devices``."""
    pub = WirePublisher(mqtt_url, f"bench-probe-{os.getpid()}")
    sent: dict[tuple[str, str], int] = {}
    stored: dict[tuple[str, str], int] = {}
    wanted = {(d.estate, d.code): d for d in devices}
    stop = threading.Event()

    def poll() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            last = 0
            while not stop.is_set():
                rows = conn.execute(
                    "SELECT id, estate_code, device_code FROM alerts WHERE id > %s"
                    " AND rule_id = 'elevator.overspeed' ORDER BY id",
                    (last,),
                ).fetchall()
                now = time.time_ns()
                for i, estate, code in rows:
                    stored.setdefault((estate, code), now)
                    last = max(last, int(i))
                time.sleep(0.002)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    for seq, d in enumerate(devices):
        ts = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        body = json.dumps({"ts": ts, "seq": 10_000_000 + seq, "code": "overspeed"})
        packet = WirePublisher.encode(
            [(f"estate/v1/{d.estate}/elevator/{d.code}/event", body.encode())]
        )
        sent[(d.estate, d.code)] = time.time_ns()
        pub.send(packet)
        time.sleep(every_s)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (
        set(wanted) <= set(stored) and set(wanted) <= set(stream.got)
    ):
        time.sleep(0.05)
    stop.set()
    poller.join(5)
    pub.close()
    missing = sorted(set(wanted) - set(stream.got))
    if missing:
        raise RuntimeError(f"{len(missing)} probes never produced an alert, e.g. {missing[:3]}")
    st = [(stored[c] - sent[c]) / 1e6 for c in wanted]
    sm = [(stream.got[c] - sent[c]) / 1e6 for c in wanted]
    return st, sm


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--probes", type=int, default=100)
    ap.add_argument("--load", type=float, default=10_000, help="background messages/s")
    ap.add_argument("--devices", type=int, default=2000, help="elevators sending the load")
    args = ap.parse_args()
    run_id = f"bench-alerts-{os.getpid()}"
    with PrivateServices(load_settings()).running() as ep:
        admin = ep.database_url.rsplit("/", 1)[0] + "/postgres"
        url, devices = prepare(admin, args.devices + 2 * args.probes)
        probes_idle = devices[: args.probes]
        probes_load = devices[args.probes : 2 * args.probes]
        background = devices[2 * args.probes :]
        # fresh readings for the whole loaded phase (warm-up, probes, drain): nothing the
        # engine could skip as already seen
        seconds = 3 + args.probes * 0.1 + 10
        load_msgs = make_stream(background, int(args.load * seconds), dt.datetime.now(dt.UTC))
        print(
            f"{len(devices)} elevators; probes: an overspeed event every 100 ms; "
            f"load: {args.load:.0f} telemetry msgs/s from {len(background)} elevators",
            flush=True,
        )
        results: dict[str, tuple[list[float], list[float]]] = {}
        with workers(url, ep.mqtt_url, 1, run_id):
            stream = Stream(ep.mqtt_url)
            try:
                results["idle"] = probe(url, ep.mqtt_url, stream, probes_idle)
                ctx = mp.get_context("spawn")
                stop = ctx.Event()
                procs = [
                    ctx.Process(target=_load, args=(ep.mqtt_url, part, args.load / 2, stop))
                    for part in split(load_msgs, 2)
                ]
                for p in procs:
                    p.start()
                time.sleep(3)  # let the load reach its pace
                results[f"{args.load:.0f} msg/s load"] = probe(
                    url, ep.mqtt_url, stream, probes_load
                )
                stop.set()
                for p in procs:
                    p.join(30)
            finally:
                stream.close()
            with psycopg.connect(url) as conn:
                row = conn.execute("SELECT count(*) FROM telemetry").fetchone()
                stored_rows = int(row[0]) if row else 0
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    print(f"(background rows stored: {stored_rows})")
    print(f"{'phase':22} {'stored p50':>11} {'p99':>7} {'streamed p50':>13} {'p99':>7}  ms")
    for name, (st, sm) in results.items():
        print(
            f"{name:22} {np.percentile(st, 50):11.0f} {np.percentile(st, 99):7.0f}"
            f" {np.percentile(sm, 50):13.0f} {np.percentile(sm, 99):7.0f}"
        )
    loaded = results[f"{args.load:.0f} msg/s load"][1]
    print(f"alert_p99_ms={np.percentile(loaded, 99):.0f}")


if __name__ == "__main__":
    main()
