"""A login flood against one API process: do other people's requests stay fast?

    python -m bench.login_flood [--seconds 10] [--flooders 8] [--probes 300]

A real uvicorn server over a scratch database with the demo county. ``GET /api/v1/auth/me``
(a logged-in user's cheapest call) is timed idle, then while ``--flooders`` threads post
wrong passwords as fast as the server answers, from one address (the throttle's case) for
``--seconds``. Reported: the probe's p50/p99 idle and under the flood, and what the flood
got back (401 checked, 429 refused before hashing).
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import threading
import time
import urllib.parse

import psycopg
import uvicorn

from api.app import create_app
from api.auth import Role, create_user
from bench import fresh_database, pct
from bench.ingest import free_port
from estate import registry
from estate.services import PrivateServices
from estate.settings import load_settings

DB = "bench_login"
PASSWORD = "tea kettle violin 7"  # noqa: S105 - a throw-away benchmark login


def probe(port: int, token: str, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", "/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status
        out.append((time.perf_counter() - t) * 1000)
        time.sleep(0.01)
    conn.close()
    return out


def flood(port: int, stop: threading.Event, got: collections.Counter[int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = urllib.parse.urlencode({"username": "li.op", "password": "a wrong guess 1"})
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    while not stop.is_set():
        conn.request("POST", "/api/v1/auth/token", body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        got[r.status] += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--flooders", type=int, default=8)
    ap.add_argument("--probes", type=int, default=300)
    args = ap.parse_args()
    with PrivateServices(load_settings()).running() as ep:
        url = fresh_database(ep.database_url, DB)
        with psycopg.connect(url, autocommit=True) as conn:
            registry.load(conn, registry.read(registry.demo_path()))
            create_user(conn, "li.op", Role.OPERATOR, PASSWORD, org_code="PF-HX")
            create_user(conn, "wang.op", Role.OPERATOR, PASSWORD + "x", org_code="PF-HX")
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(url), host="127.0.0.1", port=port, log_level="warning")
        )
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        c = http.client.HTTPConnection("127.0.0.1", port)
        form = urllib.parse.urlencode({"username": "wang.op", "password": PASSWORD + "x"})
        c.request("POST", "/api/v1/auth/token", body=form,
                  headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        token = json.loads(c.getresponse().read())["access_token"]
        idle = probe(port, token, args.probes)
        stop, got = threading.Event(), collections.Counter[int]()
        threads = [
            threading.Thread(target=flood, args=(port, stop, got), daemon=True)
            for _ in range(args.flooders)
        ]
        for t in threads:
            t.start()
        started = time.monotonic()
        busy = probe(port, token, args.probes)
        while time.monotonic() - started < args.seconds:
            time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join(30)
        elapsed = time.monotonic() - started
        server.should_exit = True
    total = sum(got.values())
    print(f"flood: {total} logins in {elapsed:.1f} s ({total / elapsed:.0f}/s) from one address:"
          f" {dict(sorted(got.items()))}")  # fmt: skip
    print(f"GET /api/v1/auth/me  idle p50 {pct(idle, 50):.1f} ms p99 {pct(idle, 99):.1f} ms;"
          f" under the flood p50 {pct(busy, 50):.1f} ms p99 {pct(busy, 99):.1f} ms")  # fmt: skip
    print(f"login_flood_me_p99_ms={pct(busy, 99):.1f}")


if __name__ == "__main__":
    main()
