"""The capacity model: what a city and a province offer and what the deployment must be.

    python -m bench.capacity [--estates 2318] [--cities 10 20] [--markdown]

Computed, not guessed: the device inventory of a synthetic city of ``--estates`` estates
(``estate.generate``, the proportions of seed 003), each device's reporting interval (the
simulators', ``simulators.devices.SIMULATORS``: the contract's defaults), and the measured
cost of each stage per message on this machine (``STAGES``, from ``bench.ingest`` and the
worker's profile in docs/benchmarks.md; pass ``--stage NAME=µs`` to use your own) and the
bytes a message takes on disk (``bench.telemetry_layout``). What is assumed rather than
measured here is marked so (``ASSUMED``). Partition skew is computed from the real
estate sizes hashed the way ingest shards them (``ingest.batch.shard_of``).
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from estate.generate import generate
from ingest.batch import shard_of
from simulators.devices import SIMULATORS

# µs of one worker core per telemetry message, by stage, from one run (2026-12-06): a
# worker with its rules under py-spy stored 100,000 messages from 2,000 elevators at
# 17,490 msg/s (57.2 µs a message; bench.ingest's 200 elevators gave 29,223, but the alert
# stage works per device and a city has many), split by that profile (docs/benchmarks.md:
# decode 42 %, the alert stage 30 %, the writer 7 %, the MQTT receiver 6 %, the rest 15 %)
STAGES: dict[str, float] = {
    "receive (ingest.receiver)": 3.7,
    "decode": 24.1,
    "alert rules": 16.9,
    "write (COPY)": 4.1,
    "other": 8.4,
}
BYTES_PER_MSG = 195  # wide layout on disk, bench.telemetry_layout (docs/ingest.md)
RUNS_BYTES_PER_MSG = 88  # a city's mix kept as runs (ingest.runs), bench.storage
RUNS_AFTER_DAYS = 2  # ESTATE_RUNS_AFTER_DAYS as docs/scale.md advises for a city
EVENT_SHARE = 0.002  # events per telemetry message in normal running (simulated day)
# Not measurable on two shared cores; stated so the model can be redone with real figures:
ASSUMED = {
    "connections_per_broker_node": 100_000,  # MQTT sessions a broker node holds
    "msgs_per_broker_node": 60_000,  # QoS 1 msg/s a node stores replicated (R3)
    "wal_factor": 2.0,  # WAL bytes per byte of table and index written
    "lease_s": 10.0,  # a dead worker's partitions are taken over after its lease
    "resume_per_partition_s": 0.05,  # a new owner loads a partition's alert state
    "target_load": 0.5,  # workers run at half their capacity: alarms need headroom
}


@dataclass(frozen=True)
class City:
    estates: int
    devices: Counter[tuple[str, str]]
    per_estate: dict[str, float]  # offered msg/s per estate
    largest_building_detectors: int
    largest_district_devices: int

    @property
    def msgs_per_s(self) -> float:
        return sum(self.per_estate.values())

    @property
    def device_count(self) -> int:
        return sum(self.devices.values())


def _rate(kind: str, subtype: str) -> float:
    return 1.0 / SIMULATORS[(kind, subtype)][1]


def city(estates: int, seed: int = 1, doc: dict[str, Any] | None = None) -> City:
    """The inventory and offered load of a registry document (default: a synthetic city
    of ``estates`` estates)."""
    doc = doc if doc is not None else generate(estates, seed=seed)
    estates = len(doc["estates"])
    devices: Counter[tuple[str, str]] = Counter()
    per_estate: dict[str, float] = {}
    detectors, by_area = 0, Counter[str]()
    for e in doc["estates"]:
        load = 0.0
        groups = [e.get("devices", [])] + [b.get("devices", []) for b in e["buildings"]]
        for group in groups:
            smoke = 0
            for d in group:
                key = (d["kind"], d["subtype"])
                devices[key] += 1
                load += _rate(*key)
                smoke += d["subtype"] in ("smoke_detector", "manual_call_point")
            detectors = max(detectors, smoke)
        per_estate[e["code"]] = load
        by_area[e["area"]] += sum(len(g) for g in groups)
    districts = Counter[str]()
    parents = {a["code"]: a.get("parent") for a in doc["areas"]}
    for area, n in by_area.items():
        districts[parents.get(area) or area] += n
    return City(estates, devices, per_estate, detectors, max(districts.values(), default=0))


def skew(per_estate: dict[str, float], partitions: int) -> float:
    """The busiest partition's load over the mean, estates hashed as ingest shards them."""
    load = [0.0] * partitions
    for estate, rate in per_estate.items():
        load[shard_of(estate, partitions)] += rate
    mean = sum(load) / partitions
    return max(load) / mean if mean else 1.0


def plan(c: City, scale: int, stages: dict[str, float]) -> dict[str, Any]:
    """The deployment for ``scale`` cities like ``c``."""
    a = ASSUMED
    us = sum(stages.values())
    per_worker = 1e6 / us
    avg = c.msgs_per_s * scale * (1 + EVENT_SHARE)
    # storms: a building's fire alarm (every detector reports within ten seconds, each an
    # alarm and a status), and a district's power coming back (every device reconnects
    # and sends its state and a reading within a minute) on top of the average
    fire_storm = c.largest_building_detectors * 2 / 10
    power_storm = c.largest_district_devices * 3 / 60
    peak = avg + max(fire_storm, power_storm)
    partitions = max(16, 2 ** math.ceil(math.log2(max(1.0, peak / (per_worker * 0.25)))))
    sk = (
        skew(c.per_estate, partitions)
        if scale == 1
        else skew(
            {f"{k}-{i}": v for i in range(scale) for k, v in c.per_estate.items()}, partitions
        )
    )
    workers = math.ceil(peak * sk / (per_worker * a["target_load"]))
    bytes_day = avg * 86400 * BYTES_PER_MSG
    return {
        "devices": c.device_count * scale,
        "avg_msgs_s": avg,
        "fire_storm_msgs_s": fire_storm,
        "power_storm_msgs_s": power_storm,
        "peak_msgs_s": peak,
        "worker_msgs_s": per_worker,
        "partitions": partitions,
        "skew": sk,
        "workers": workers,
        "broker_nodes": max(3, math.ceil(c.device_count * scale / a["connections_per_broker_node"]),
                            math.ceil(peak / a["msgs_per_broker_node"])),
        "storage_gb_day": bytes_day / 1e9,
        "storage_tb_30d": bytes_day * 30 / 1e12,
        "storage_runs_tb_30d": avg * 86400 / 1e12 * (
            RUNS_AFTER_DAYS * BYTES_PER_MSG + (30 - RUNS_AFTER_DAYS) * RUNS_BYTES_PER_MSG
        ),
        "replica_mb_s": avg * BYTES_PER_MSG * a["wal_factor"] / 1e6,
        "failover_s": a["lease_s"] + partitions / max(1, workers) * a["resume_per_partition_s"],
    }  # fmt: skip


ROWS = (
    ("devices", "devices", "{:,.0f}"),
    ("avg_msgs_s", "offered msg/s (average)", "{:,.0f}"),
    ("fire_storm_msgs_s", "storm: a building's fire alarm, msg/s", "{:,.0f}"),
    ("power_storm_msgs_s", "storm: a district's power returns, msg/s", "{:,.0f}"),
    ("peak_msgs_s", "peak msg/s (average + worst storm)", "{:,.0f}"),
    ("worker_msgs_s", "one worker core, msg/s (measured)", "{:,.0f}"),
    ("partitions", "partitions (estate = key)", "{:,}"),
    ("skew", "busiest partition / mean", "{:.2f}"),
    ("workers", "ingest workers at 50 % load", "{:,}"),
    ("broker_nodes", "broker nodes (R3)", "{:,}"),
    ("storage_gb_day", "raw telemetry, GB/day", "{:,.0f}"),
    ("storage_tb_30d", "raw telemetry, 30 days, TB", "{:,.1f}"),
    ("storage_runs_tb_30d", "30 days with runs after 2 days, TB", "{:,.1f}"),
    ("replica_mb_s", "replica WAL stream, MB/s", "{:,.1f}"),
    ("failover_s", "partition takeover, s", "{:.1f}"),
)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--estates", type=int, default=2318, help="estates in one city (seed 003)")
    ap.add_argument("--registry", type=Path,
                    help="a registry YAML (your city) instead of a synthetic one")  # fmt: skip
    ap.add_argument("--cities", type=int, nargs="*", default=[10, 20], help="province sizes")
    ap.add_argument("--stage", action="append", default=[], metavar="NAME=US",
                    help="override a stage's µs per message")  # fmt: skip
    ap.add_argument("--markdown", action="store_true", help="print a table for the docs")
    args = ap.parse_args(argv)
    stages = dict(STAGES)
    for s in args.stage:
        name, _, value = s.partition("=")
        stages[name] = float(value)
    doc = yaml.safe_load(args.registry.read_text(encoding="utf-8")) if args.registry else None
    c = city(args.estates, doc=doc)
    print(report(c, args.cities, stages, markdown=args.markdown))


def report(c: City, cities: list[int], stages: dict[str, float], *, markdown: bool) -> str:
    """The plan for one city and for provinces of ``cities`` cities, as text or a table."""
    scales = [1, *cities]
    plans = [plan(c, n, stages) for n in scales]
    heads = ["", "city", *(f"province ({n} cities)" for n in cities)]
    lines = []
    if markdown:
        lines.append("| " + " | ".join(heads) + " |")
        lines.append("|---|" + "---:|" * len(scales))
    for key, label, fmt in ROWS:
        cells = [fmt.format(p[key]) for p in plans]
        lines.append(f"| {label} | " + " | ".join(cells) + " |" if markdown
                     else f"{label:44} " + "".join(f"{x:>22}" for x in cells))  # fmt: skip
    lines.append("")
    lines.append(f"Inventory of one city ({c.estates:,} estates): " + ", ".join(
        f"{k}/{s} {n:,}" for (k, s), n in c.devices.most_common()) + ".")  # fmt: skip
    lines.append(
        "Stages, µs per message: " + ", ".join(f"{k} {v:g}" for k, v in stages.items()) + "."
    )
    lines.append("Assumed: " + ", ".join(f"{k} {v:g}" for k, v in ASSUMED.items()) + ".")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
