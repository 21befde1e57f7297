"""The clustered path beside the single broker, in one run (issue 21).

    python -m bench.cluster [--messages 40000] [--devices 200] [--rate 2000] [--seconds 10]

On this machine's two cores the point is the cluster's overhead and its correctness, not a
speed-up (three NATS nodes, the workers, PostgreSQL and the publishers share the cores; the
capacity model in docs/scale.md carries the scaling claim). Each run is end to end: QoS 1
publications from two publisher processes (pre-encoded, bench/wire.py) until the rows are
committed, alert rules on.

- ``mosquitto, 1 worker``: the embedded default (private Mosquitto, `estate ingest`)
- ``cluster, N workers``: three NATS nodes (R3 log, 16 partitions), publishers on nodes 1
  and 2, ``N`` = 1, 2, 3 `estate ingest --cluster` workers sharing the partitions by lease
- each: throughput flat out, and publish-to-commit p50/p99 at a steady ``--rate``

Ends with ``key=value`` lines for ``bench.compare``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import psycopg

from bench.ingest import make_stream, measure_latency, measure_rate, prepare, workers
from estate.cluster import LocalCluster
from estate.mqtt import SERVICE_ACCOUNT
from estate.services import PrivateServices
from estate.settings import load_settings
from ingest.cluster import held_partitions

Workers = Callable[[int], AbstractContextManager[None]]


@contextmanager
def cluster_workers(url: str, n: int, partitions: int) -> Iterator[None]:
    """``n`` `estate ingest --cluster` processes, until they hold every partition."""
    child = {k: v for k, v in os.environ.items() if k != "MQTT_URL"}
    child["DATABASE_URL"] = url
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cli", "ingest", "--cluster", "--name", f"bench{k}"],
            env=child,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for k in range(n)
    ]
    deadline = time.monotonic() + 120
    while True:
        held = held_partitions(url)
        if len(held) == n and sum(len(p) for p in held.values()) == partitions:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the workers hold {held} after 120 s")
        time.sleep(0.2)
    time.sleep(1.0)  # each partition's worker connected to its consumer
    try:
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=40_000)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--rate", type=float, default=2000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--workers", default="1,2,3", help="cluster worker counts to run")
    args = ap.parse_args()
    settings = load_settings()
    run_id = f"bench-{os.getpid()}"
    rows: list[tuple[str, float, float, float]] = []
    with PrivateServices(settings).running() as ep:
        admin = ep.database_url.rsplit("/", 1)[0] + "/postgres"
        url, devices = prepare(admin, args.devices)
        msgs = make_stream(devices, args.messages, dt.datetime.now(dt.UTC))
        print(f"{len(msgs)} messages from {len(devices)} lifts, 2 publishers, QoS 1; latency at"
              f" {args.rate:.0f} msg/s for {args.seconds:.0f} s", flush=True)  # fmt: skip
        single: Workers = lambda n: workers(url, ep.mqtt_url, n, f"{run_id}-{n}w")  # noqa: E731
        rate = measure_rate(url, ep.mqtt_url, msgs, single(1))
        p50, p99, _ = measure_latency(url, ep.mqtt_url, devices, single(1), rate=args.rate,
                                      seconds=args.seconds)  # fmt: skip
        rows.append(("mosquitto, 1 worker", rate, p50, p99))
        print(f"  {rows[-1][0]}: {rate:.0f} msg/s, p50 {p50:.0f} ms, p99 {p99:.0f} ms", flush=True)
        cluster = LocalCluster(settings)
        with psycopg.connect(url) as conn:
            registered = [(str(e), str(k), str(c)) for e, k, c in conn.execute(
                "SELECT estate_code, kind, code FROM devices")]  # fmt: skip
        cluster.up(registered)
        password = cluster.service_password
        urls = [f"mqtt://{SERVICE_ACCOUNT}:{password}@127.0.0.1:{n.mqtt_port}"
                for n in cluster.nodes[:2]]  # fmt: skip
        try:
            for n in (int(x) for x in args.workers.split(",")):
                many: Workers = lambda k: cluster_workers(url, k, cluster.partitions)  # noqa: E731
                rate = measure_rate(url, urls, msgs, many(n))
                p50, p99, _ = measure_latency(url, urls[0], devices, many(n), rate=args.rate,
                                              seconds=args.seconds)  # fmt: skip
                rows.append((f"cluster (3 nodes, R3), {n} worker{'s' if n > 1 else ''}",
                             rate, p50, p99))  # fmt: skip
                print(f"  {rows[-1][0]}: {rate:.0f} msg/s, p50 {p50:.0f} ms, p99 {p99:.0f} ms",
                      flush=True)  # fmt: skip
        finally:
            cluster.down()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS bench_ingest WITH (FORCE)")
    base = rows[0][1]
    print(f"{'run':38} {'msgs/s':>8} {'x single':>9} {'p50 ms':>7} {'p99 ms':>7}")
    for name, r, p50, p99 in rows:
        print(f"{name:38} {r:8.0f} {r / base:9.2f} {p50:7.0f} {p99:7.0f}")
    for name, r, _, p99 in rows[1:]:
        count = name.split(", ")[-1].split()[0]
        print(f"cluster_{count}w_msgs_per_s={r:.0f}")
        print(f"cluster_{count}w_p99_ms={p99:.0f}")
    print(f"single_msgs_per_s={base:.0f}")


if __name__ == "__main__":
    main()
