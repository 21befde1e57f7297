"""Ingest throughput and latency, with the raw limits and a naive baseline side by side.

    python -m bench.ingest [--messages 100000] [--devices 200] [--naive-messages 10000]
                           [--nodered-messages 20000] [--no-nodered]

Runs against the private servers (or DATABASE_URL / MQTT_URL), in a scratch database
``bench_ingest`` that it recreates. Every figure is end to end: QoS 1 publications from
two publisher processes until the rows are committed. The publishers send pre-encoded
packets (bench/wire.py), so that the load generator, which in reality runs on thousands
of devices elsewhere, takes as little as possible of the 2 cores the system runs on.

- ``mqtt raw``: mosquitto_sub receiving the same stream at QoS 1 (the broker's limit here)
- ``copy raw``: the same rows decoded and written by the ingest writer, no MQTT
- ``ingest 1w`` / ``ingest 2w``: `estate ingest` with one worker, and two shards
- ``naive``: paho + one INSERT per message, autocommit (what a first version would do)
- ``Node-RED``: the peer to beat, installed from npm into bench/.node (bench/nodered.py)
- ``latency``: publish-to-commit at a steady 5,000 msg/s with one worker, p50 and p99

Ends with ``ingest_msgs_per_s=N`` (the best end-to-end rate), ``ingest_p99_ms``, the
broker's raw rate and the best rate over it and over Node-RED's (``key=value`` lines that
``bench.compare`` collects).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from multiprocessing.queues import Queue as MpQueue
from multiprocessing.synchronize import Event as MpEvent
from urllib.parse import unquote, urlsplit

import numpy as np
import paho.mqtt.client as mqtt
import psycopg

from bench import county_with_lifts, fresh_database, nodered
from bench.wire import WirePublisher
from estate import registry
from estate.mqtt import Address, close, new_client
from estate.services import PrivateServices
from estate.settings import load_settings
from ingest.batch import DeviceRef, Incoming, decode_batch
from ingest.contract import Bounds
from ingest.writer import Writer

DB = "bench_ingest"
Msg = tuple[str, bytes]


def _client(mqtt_url: str, client_id: str, *, clean: bool = True) -> mqtt.Client:
    address = Address.parse(mqtt_url)
    c = new_client(address, client_id, clean_session=clean)
    c.max_inflight_messages_set(2000)
    c.max_queued_messages_set(0)
    c.connect(address.host, address.port)
    c.loop_start()
    return c


def _publisher(
    mqtt_url: str, msgs: list[Msg], rate: float, go: MpEvent, out: MpQueue[tuple[list[int], int]]
) -> None:
    """Child process: publish ``msgs`` at QoS 1 (``rate`` msg/s, 0 = flat out) with the
    pre-encoded wire publisher; report per-message send times (wall clock: comparable
    across processes) and the time the last PUBACK arrived."""
    pub = WirePublisher(mqtt_url, f"bench-pub-{os.getpid()}")
    packets = WirePublisher.encode(msgs)
    go.wait()
    sent_ns = pub.send(packets, rate=rate)
    last_ack = pub.wait_acked(len(packets))
    out.put((sent_ns, last_ack))
    pub.close()


def publish(
    mqtt_url: str | list[str], parts: list[list[Msg]], *, rate: float = 0.0
) -> tuple[list[list[int]], int]:
    """Publish each part from its own process (part i to ``mqtt_url[i % n]`` when given
    several brokers); return per-part send times and last ack."""
    urls = [mqtt_url] if isinstance(mqtt_url, str) else mqtt_url
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    out: MpQueue[tuple[list[int], int]] = ctx.Queue()
    procs = [
        ctx.Process(target=_publisher, args=(urls[i % len(urls)], p, rate / len(parts), go, out))
        for i, p in enumerate(parts)
    ]
    for p in procs:
        p.start()
    time.sleep(1.5)  # let every publisher connect before the clock starts
    go.set()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(30)
    return [r[0] for r in results], max(r[1] for r in results)


# --------------------------------------------------------------------------- set-up


def make_stream(devices: list[DeviceRef], n: int, start: dt.datetime) -> list[Msg]:
    """n elevator telemetry messages, round-robin over ``devices``, ts/seq increasing."""
    out = []
    for i in range(n):
        d = devices[i % len(devices)]
        seq = i // len(devices)
        ts = start + dt.timedelta(milliseconds=seq * 10)
        body = {
            "ts": ts.isoformat(timespec="milliseconds"),
            "seq": seq,
            "values": {
                "floor": float(seq % 20 + 1),
                "speed_mps": 1.5,
                "direction": 1.0,
                "door_open": False,
                "in_door_zone": False,
                "occupied": True,
                "load_pct": 30.0,
                "mode": 0.0,
                "running": True,
            },
        }
        out.append(
            (
                f"estate/v1/{d.estate}/elevator/{d.code}/telemetry",
                json.dumps(body, separators=(",", ":")).encode(),
            )
        )
    return out


def prepare(admin_url: str, n_devices: int) -> tuple[str, list[DeviceRef]]:
    url = fresh_database(admin_url, DB)
    reg = county_with_lifts(n_devices)
    lifts = [(e.code, d.code) for e, _, d in reg.devices() if d.kind == "elevator"]
    with psycopg.connect(url) as conn:
        registry.load(conn, reg)
        wanted = set(lifts[:n_devices])
        refs = [
            DeviceRef(int(i), e, c, k)
            for i, e, c, k in conn.execute(
                "SELECT id, estate_code, code, kind FROM devices WHERE kind = 'elevator'"
            )
            if (e, c) in wanted
        ]
    return url, refs


def rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        r = conn.execute("SELECT count(*) FROM telemetry").fetchone()
        return int(r[0]) if r else 0


def truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE telemetry, device_state, dead_letters")


def wait_rows(url: str, n: int, timeout: float = 600) -> int:
    """Wall-clock ns when ``n`` rows are committed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rows(url) >= n:
            return time.time_ns()
        time.sleep(0.05)
    raise RuntimeError(f"only {rows(url)} of {n} rows after {timeout:.0f} s")


@contextmanager
def workers(
    url: str, mqtt_url: str, n: int, run_id: str, *, env: dict[str, str] | None = None
) -> Iterator[None]:
    """``n`` shards of `estate ingest` (``env``: settings on top of the run's own)."""
    child = {k: v for k, v in os.environ.items() if not k.startswith("ESTATE_")}
    child.update(
        DATABASE_URL=url,
        MQTT_URL=mqtt_url,
        ESTATE_INGEST_CLIENT_PREFIX=run_id,
        ESTATE_INGEST_CATCH_ALL="estate/v1/#",
        **(env or {}),
    )
    procs = []
    for k in range(n):
        p = subprocess.Popen(
            [sys.executable, "-m", "cli", "ingest", "--shard", f"{k}/{n}"],
            env=child,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert p.stderr is not None
        for line in p.stderr:
            if b"ingest shard" in line:
                break
        threading.Thread(target=p.stderr.read, daemon=True).start()  # keep the pipe drained
        procs.append(p)
    time.sleep(0.5)
    try:
        yield
    finally:
        for p in procs:
            p.terminate()  # our own children: SIGTERM, they flush and exit
        for p in procs:
            p.wait(60)
        for k in range(n):  # delete the persistent sessions (the event lane's too)
            for cid in (f"{run_id}-{k}of{n}", f"{run_id}-{k}of{n}-events"):
                c = _client(mqtt_url, cid)
                time.sleep(0.1)
                close(c)


def split(msgs: list[Msg], parts: int) -> list[list[Msg]]:
    """Split by device (topic), so each device's messages stay in order in one publisher."""
    out: list[list[Msg]] = [[] for _ in range(parts)]
    for m in msgs:
        out[hash(m[0]) % parts].append(m)
    return out


# --------------------------------------------------------------------------- the runs


def run_ingest(url: str, mqtt_url: str, msgs: list[Msg], n_workers: int, run_id: str) -> float:
    return measure_rate(
        url, mqtt_url, msgs, workers(url, mqtt_url, n_workers, f"{run_id}-{n_workers}w")
    )


def measure_rate(
    url: str, mqtt_url: str | list[str], msgs: list[Msg], run: AbstractContextManager[None]
) -> float:
    """msg/s from the first publication to the last row committed, with the workers ``run``
    starts (two publishers; several brokers: part i to broker i)."""
    truncate(url)
    with run:
        sent, _ = publish(mqtt_url, split(msgs, 2))
        done = wait_rows(url, len(msgs))
    first = min(s[0] for s in sent if s)
    return len(msgs) / ((done - first) / 1e9)


def run_mqtt_raw(mqtt_url: str, msgs: list[Msg]) -> float:
    u = urlsplit(mqtt_url)
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            u.hostname or "127.0.0.1",
            "-p",
            str(u.port),
            "-u",
            unquote(u.username or ""),
            "-P",
            unquote(u.password or ""),
            "-q",
            "1",
            "-t",
            "estate/v1/#",
            "-C",
            str(len(msgs)),
        ],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    sent, _ = publish(mqtt_url, split(msgs, 2))
    sub.wait(600)
    done = time.time_ns()
    first = min(s[0] for s in sent if s)
    return len(msgs) / ((done - first) / 1e9)


def run_copy_raw(url: str, msgs: list[Msg], devices: list[DeviceRef]) -> tuple[float, float]:
    """(decode msgs/s, decode+write msgs/s) for the same messages, no MQTT."""
    truncate(url)
    by_key = {(d.estate, d.code): d for d in devices}
    now = dt.datetime.now(dt.UTC)
    incoming = [Incoming(t, p, 0, 1, 0, now) for t, p in msgs]
    t0 = time.perf_counter()
    batches = [
        decode_batch(
            incoming[i : i + 5000],
            lambda e, c: by_key.get((e, c)),
            bounds=Bounds(past=dt.timedelta(days=30)),
        )
        for i in range(0, len(incoming), 5000)
    ]
    t1 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        w = Writer(conn)
        for b in batches:
            w.write(b)
    t2 = time.perf_counter()
    return len(msgs) / (t1 - t0), len(msgs) / (t2 - t0)


def _naive(url: str, mqtt_url: str, n: int, ready: MpEvent) -> None:
    """Child process: paho + one INSERT per message, the obvious first version."""
    conn = psycopg.connect(url, autocommit=True)
    ids = {(e, c): int(i) for i, e, c in conn.execute("SELECT id, estate_code, code FROM devices")}
    got = threading.Event()
    count = [0]

    def on_message(_c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        _, _, estate, _, device, _ = m.topic.split("/")
        body = json.loads(m.payload)
        v = body["values"]
        conn.execute(
            "INSERT INTO telemetry (ts, device_id, seq, floor, speed_mps, door_open)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (
                body["ts"],
                ids[(estate, device)],
                body["seq"],
                v["floor"],
                v["speed_mps"],
                v["door_open"],
            ),
        )
        count[0] += 1
        if count[0] >= n:
            got.set()

    c = _client(mqtt_url, f"bench-naive-{os.getpid()}")
    c.on_message = on_message
    c.subscribe("estate/v1/#", qos=1)
    time.sleep(0.5)
    ready.set()
    got.wait(900)
    c.disconnect()
    c.loop_stop()


def run_naive(url: str, mqtt_url: str, msgs: list[Msg]) -> float:
    truncate(url)
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    p = ctx.Process(target=_naive, args=(url, mqtt_url, len(msgs), ready))
    p.start()
    ready.wait(60)
    sent, _ = publish(mqtt_url, split(msgs, 2))
    done = wait_rows(url, len(msgs), timeout=900)
    p.join(60)
    first = min(s[0] for s in sent if s)
    return len(msgs) / ((done - first) / 1e9)


def run_nodered(url: str, mqtt_url: str, msgs: list[Msg], devices: list[DeviceRef]) -> float:
    truncate(url)
    ids = {f"{d.estate}/{d.code}": d.id for d in devices}
    with nodered.running(
        mqtt_url, url, ids, ui_port=free_port(), topic="estate/v1/+/elevator/+/telemetry"
    ):
        sent, _ = publish(mqtt_url, split(msgs, 2))
        done = wait_rows(url, len(msgs), timeout=900)
    first = min(s[0] for s in sent if s)
    return len(msgs) / ((done - first) / 1e9)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_latency(
    url: str, mqtt_url: str, devices: list[DeviceRef], run_id: str, *, rate: float, seconds: float
) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, achieved msg/s) publish-to-commit at a steady ``rate``, one worker."""
    run = workers(url, mqtt_url, 1, f"{run_id}-lat")
    return measure_latency(url, mqtt_url, devices, run, rate=rate, seconds=seconds)


def measure_latency(
    url: str, mqtt_url: str, devices: list[DeviceRef], run: AbstractContextManager[None],
    *, rate: float, seconds: float,
) -> tuple[float, float, float]:  # fmt: skip
    """(p50 ms, p99 ms, achieved msg/s) publish-to-commit at a steady ``rate`` from 20
    devices, with the workers ``run`` starts."""
    truncate(url)
    devs = devices[:20]
    n = int(rate * seconds)
    msgs = make_stream(devs, n, dt.datetime.now(dt.UTC))
    # commit times: poll each device's newest committed seq (index lookups) every 5 ms
    committed: dict[int, list[tuple[int, int]]] = {d.id: [] for d in devs}
    stop = threading.Event()

    def poll() -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            q = (
                "SELECT d, (SELECT seq FROM telemetry WHERE device_id = d ORDER BY ts DESC"
                " LIMIT 1) FROM unnest(%s::int[]) d"
            )
            last = {d.id: -1 for d in devs}
            while not stop.is_set():
                now = time.time_ns()
                for dev, seq in conn.execute(q, ([d.id for d in devs],)):
                    if seq is not None and seq > last[dev]:
                        committed[dev].append((int(seq), now))
                        last[dev] = int(seq)
                time.sleep(0.005)

    with run:
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        sent, _ = publish(mqtt_url, [msgs], rate=rate)
        wait_rows(url, n)
        time.sleep(0.2)
        stop.set()
        poller.join(10)
    lat = []
    for i, t_sent in enumerate(sent[0]):
        dev = devs[i % len(devs)].id
        seq = i // len(devs)
        for s, t in committed[dev]:  # first poll that saw a seq >= this one
            if s >= seq:
                lat.append((t - t_sent) / 1e6)
                break
    achieved = n / ((max(sent[0]) - min(sent[0])) / 1e9)
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), achieved


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--naive-messages", type=int, default=10_000)
    ap.add_argument("--nodered-messages", type=int, default=20_000)
    ap.add_argument("--no-nodered", action="store_true", help="skip the Node-RED peer")
    ap.add_argument("--latency-rate", type=float, default=5000)
    ap.add_argument("--latency-seconds", type=float, default=10)
    args = ap.parse_args()
    run_id = f"bench-{os.getpid()}"
    with PrivateServices(load_settings()).running() as ep:
        admin = ep.database_url.rsplit("/", 1)[0] + "/postgres"
        url, devices = prepare(admin, args.devices)
        start = dt.datetime.now(dt.UTC)
        msgs = make_stream(devices, args.messages, start)
        print(
            f"{args.messages} messages (elevator telemetry, 9 values, ~{len(msgs[0][1])} B) "
            f"from {len(devices)} devices; 2 publisher processes at QoS 1",
            flush=True,
        )
        results: dict[str, float] = {}
        results["mqtt raw (mosquitto_sub)"] = run_mqtt_raw(ep.mqtt_url, msgs)
        decode_rate, copy_rate = run_copy_raw(url, msgs, devices)
        results["decode only (no MQTT, no DB)"] = decode_rate
        results["copy raw (decode + write, no MQTT)"] = copy_rate
        results["ingest, 1 worker"] = run_ingest(url, ep.mqtt_url, msgs, 1, run_id)
        results["ingest, 2 workers"] = run_ingest(url, ep.mqtt_url, msgs, 2, run_id)
        naive_msgs = make_stream(devices, args.naive_messages, start)
        results["naive (paho + INSERT per message)"] = run_naive(url, ep.mqtt_url, naive_msgs)
        if not args.no_nodered:
            peer_msgs = make_stream(devices, args.nodered_messages, start)
            results["Node-RED 4 (mqtt in + pg INSERT)"] = run_nodered(
                url, ep.mqtt_url, peer_msgs, devices
            )
        p50, p99, achieved = run_latency(
            url, ep.mqtt_url, devices, run_id, rate=args.latency_rate, seconds=args.latency_seconds
        )
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    naive = results["naive (paho + INSERT per message)"]
    peer = results.get("Node-RED 4 (mqtt in + pg INSERT)")
    print(f"{'run':40} {'msgs/s':>10} {'x naive':>8}" + (f" {'x Node-RED':>11}" if peer else ""))
    for name, r in results.items():
        line = f"{name:40} {r:10.0f} {r / naive:8.1f}"
        print(line + (f" {r / peer:11.1f}" if peer else ""))
    print(
        f"latency publish->commit at {achieved:.0f} msg/s, 1 worker: "
        f"p50 {p50:.0f} ms, p99 {p99:.0f} ms"
    )
    best = max(results["ingest, 1 worker"], results["ingest, 2 workers"])
    raw = results["mqtt raw (mosquitto_sub)"]
    print(f"ingest_p99_ms={p99:.0f}")
    print(f"ingest_msgs_per_s={best:.0f}")
    print(f"mqtt_raw_msgs_per_s={raw:.0f}")
    print(f"ingest_over_mqtt_raw={best / raw:.2f}")  # issue 22's target: at least 0.40
    if peer:
        print(f"ingest_over_nodered={best / peer:.1f}")  # and at least 5


if __name__ == "__main__":
    main()
