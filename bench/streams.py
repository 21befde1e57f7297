"""Hundreds of live streams on one API process: does everything else stay fast, and does
every screen get every change?

    python -m bench.streams [--streams 500] [--events 5] [--probes 300]

The API as ``estate api`` runs it (a process of its own), the real broker and a scratch
database with the demo county. First ``/healthz`` is timed with no stream open; then
``--streams`` server-sent event streams are opened (operators of 华祥苑's property firm,
50 per login, the default per-principal limit) and held; ``/healthz`` and
``/api/v1/alerts`` are timed again, and ``--events`` alert changes are published on MQTT
as the workers would. Reported: request latency p50/p99 idle and with the streams open,
how many streams received every event, and how long the last one took.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.client
import json
import os
import subprocess
import sys
import threading
import time

import psycopg

from alerts import store
from alerts.judge import Op
from alerts.rules import Severity
from api.auth import Role, create_key
from bench import fresh_database, pct
from bench.ingest import free_port
from estate import registry
from estate.mqtt import service_publisher
from estate.services import PrivateServices
from estate.settings import load_settings

DB = "bench_streams"
NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
PER_LOGIN = 50


def up(port: int) -> None:
    """Wait for the API to answer /healthz."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the API did not start")


def timed_gets(port: int, path: str, n: int, headers: dict[str, str]) -> list[float]:
    """Milliseconds of ``n`` sequential GETs on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        r.read()
        assert r.status == 200, (path, r.status)
        out.append((time.perf_counter() - t) * 1000)
    conn.close()
    return out


class Streams:
    """``n`` SSE connections read by one asyncio loop in a thread; counts events per stream."""

    def __init__(self, port: int, keys: list[str], n: int) -> None:
        self.port, self.keys, self.n = port, keys, n
        self.counts = [0] * n
        self.last_at = [0.0] * n
        self.opened = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.tasks = [asyncio.run_coroutine_threadsafe(self._one(i), self.loop) for i in range(n)]

    async def _one(self, i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        key = self.keys[i // PER_LOGIN]
        writer.write(
            f"GET /api/v1/stream HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        await writer.drain()
        status = await reader.readline()
        assert b" 200 " in status, status
        self.opened += 1
        try:
            while line := await reader.readline():
                if line.startswith(b"event: alert"):
                    self.counts[i] += 1
                    self.last_at[i] = time.perf_counter()
        finally:
            writer.close()

    def close(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def prepare(
    admin_url: str, n_streams: int, n_events: int
) -> tuple[str, str, list[str], list[store.AlertEvent]]:
    """The scratch database: the demo county, an admin key, a login per 50 streams, and
    ``n_events`` open alerts whose changes the workers would publish."""
    url = fresh_database(admin_url, DB)
    with psycopg.connect(url, autocommit=True) as conn:
        registry.load(conn, registry.read(registry.demo_path()))
        admin = create_key(conn, "bench-admin", Role.ADMIN)
        logins = -(-n_streams // PER_LOGIN)
        keys = [
            create_key(conn, f"wall-{i}", Role.OPERATOR, org_code="PF-HX") for i in range(logins)
        ]
        devs = {(d.estate, d.code): d for d in store.devices(conn)}
        lifts = [d for (e, _), d in devs.items() if e == "HXY" and d.kind == "elevator"]
        ops = [  # one alert on each of the first lifts
            Op("raise", (lift.id, "elevator.overspeed"), "elevator.overspeed",
               Severity.CRITICAL, NOW.timestamp())
            for lift in lifts[: n_events]
        ]  # fmt: skip
        changes = store.apply(conn, ops, {d.id: d for d in devs.values()})
    return url, admin, keys, changes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=500)
    ap.add_argument("--events", type=int, default=5)
    ap.add_argument("--probes", type=int, default=300)
    args = ap.parse_args()
    settings = load_settings()
    with PrivateServices(settings).running() as ep:
        url, admin, keys, changes = prepare(ep.database_url, args.streams, args.events)
        port = free_port()
        # the API in a process of its own, as deployed (`estate api`)
        env = {**os.environ, "DATABASE_URL": url, "MQTT_URL": ep.mqtt_url}
        server = subprocess.Popen(
            [sys.executable, "-m", "cli", "api", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        up(port)
        auth = {"Authorization": f"Bearer {admin}"}
        idle = timed_gets(port, "/healthz", args.probes, {})
        idle_api = timed_gets(port, "/api/v1/alerts?limit=20", args.probes // 3, auth)
        streams = Streams(port, keys, args.streams)
        deadline = time.monotonic() + 120
        while streams.opened < args.streams and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the last ones registered with the hub
        held = streams.opened
        busy = timed_gets(port, "/healthz", args.probes, {})
        busy_api = timed_gets(port, "/api/v1/alerts?limit=20", args.probes // 3, auth)
        sent = time.perf_counter()
        with service_publisher(ep.mqtt_url, "bench-streams") as publish:
            for e in changes:
                publish(e.topic, json.dumps(e.payload()).encode())
        deadline = time.monotonic() + 120
        while min(streams.counts) < len(changes) and time.monotonic() < deadline:
            time.sleep(0.05)
        complete = sum(c == len(changes) for c in streams.counts)
        last = max(streams.last_at) - sent if complete else float("nan")
        streams.close()
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
    print(f"{held} streams held open ({args.streams} asked, {PER_LOGIN} per login)")
    print(f"{'request':24} {'idle p50':>9} {'idle p99':>9} {'streams p50':>12} {'p99':>7} ms")
    for name, a, b in (("/healthz", idle, busy), ("/api/v1/alerts", idle_api, busy_api)):
        print(f"{name:24} {pct(a, 50):9.1f} {pct(a, 99):9.1f} {pct(b, 50):12.1f} {pct(b, 99):7.1f}")
    print(f"{complete}/{args.streams} streams received all {len(changes)} alert changes;"
          f" the last one {last * 1000:.0f} ms after publishing")  # fmt: skip
    print(f"streams_healthz_p99_ms={pct(busy, 99):.1f}")
    print(f"streams_complete={complete}")


if __name__ == "__main__":
    main()
