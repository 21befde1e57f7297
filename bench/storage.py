"""Storage at city scale (issue 21, item 7): bytes per message on disk, the edition, and
how much of a city's telemetry is a device repeating its last reading.

    python -m bench.storage [--minutes 30] [--lifts 200]

Runs the simulators (the same behaviour `make demo` shows) for ``--minutes`` of simulated
time: ``--lifts`` passenger lifts and 20 of every other simulated subtype, each at its
reporting interval. Their telemetry goes through the real decode and writer into a scratch
database; printed:

- bytes on disk per telemetry row (heap, indexes and TOAST of the hypertable's chunks);
- the TimescaleDB edition (``timescaledb.license``): compression and continuous
  aggregates exist only in the Timescale edition; the Apache edition (the default here)
  keeps raw rows as they are;
- per kind, the share of messages whose values equal the device's previous message
  (an idle lift at a landing sends the same nine values every 2 s): what storing a run of
  unchanged readings once, with each repeat's timestamp and sequence, would save;
- a city's raw telemetry for the retention (``ESTATE_RETENTION_RAW_DAYS``) at the offered
  load of the capacity model, as stored today and with repeats as runs (a projection: the
  run layout is not built).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import random

import psycopg

from bench import fresh_database
from bench.capacity import city as city_model
from estate import registry
from estate.services import PrivateServices
from estate.settings import load_settings
from ingest import contract
from ingest.batch import Incoming, decode_batch
from ingest.contract import Bounds, Channel
from ingest.worker import Directory
from ingest.writer import Writer
from simulators.devices import SIMULATORS, make_sim

DB = "bench_storage"
REPEAT_BYTES = 6.0  # a repeat inside a run: its ms offset (int4) and seq delta (int2)


def world(lifts: int) -> tuple[str, list[tuple[str, str, str]]]:
    """A registry of one estate per subtype, ``lifts`` passenger lifts and 20 of the rest."""
    devices = []
    for j, (kind, sub) in enumerate(SIMULATORS):
        n = lifts if (kind, sub) == ("elevator", "passenger") else 20
        devices += [(kind, sub, f"D{j}-{i}") for i in range(n)]
    lines = [f"      - {{code: {c}, kind: {k}, subtype: {s}}}" for k, s, c in devices]
    text = (
        "version: 1\nareas:\n  - {code: C, name: 市, level: city}\n"
        "organisations: []\nestates:\n  - code: S\n    name: 样本小区\n    area: C\n"
        "    buildings:\n    - code: B1\n      name: 1号楼\n      floors: 18\n      devices:\n"
        + "\n".join(lines) + "\n"
    )  # fmt: skip
    return text, devices


Tally = collections.Counter[str]


def simulate(
    devices: list[tuple[str, str, str]], minutes: float
) -> tuple[list[Incoming], Tally, Tally]:
    """The simulators' telemetry for ``minutes`` ending now, and per kind how many
    messages there were and how many repeated the device's previous values."""
    rng = random.Random(7)
    sims = [make_sim(estate="S", code=c, kind=k, subtype=s, rng=rng) for k, s, c in devices]
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes)
    last: dict[str, str] = {}
    same: Tally = collections.Counter()
    total: Tally = collections.Counter()
    msgs: list[Incoming] = []
    for step in range(int(minutes * 60)):
        now = start + dt.timedelta(seconds=step)
        for sim in sims:
            for out in sim.step(now, 1.0):
                if out.channel != Channel.TELEMETRY:
                    continue
                values = json.dumps(out.payload["values"], sort_keys=True)
                total[sim.kind] += 1
                same[sim.kind] += int(last.get(sim.code) == values)
                last[sim.code] = values
                msgs.append(Incoming(sim.topic(out.channel), contract.dumps(out.payload),
                                     0, 1, 0, now))  # fmt: skip
    return msgs, total, same


def store(registry_text: str, msgs: list[Incoming]) -> tuple[int, int, str]:
    """(rows, bytes on disk, edition) after the real writer stored ``msgs``."""
    with PrivateServices(load_settings()).running() as ep:
        admin = ep.database_url.rsplit("/", 1)[0] + "/postgres"
        url = fresh_database(admin, DB)
        with psycopg.connect(url, autocommit=True) as conn:
            registry.load(conn, registry.parse(registry_text))
            directory = Directory()
            directory.load(conn)
            writer = Writer(conn)
            bounds = Bounds(past=dt.timedelta(days=1))
            for i in range(0, len(msgs), 5000):
                writer.write(decode_batch(msgs[i : i + 5000], directory.lookup, bounds=bounds))
            conn.execute("VACUUM ANALYZE telemetry")
            row = conn.execute(
                "SELECT (SELECT count(*) FROM telemetry),"
                " (SELECT sum(total_bytes) FROM chunks_detailed_size('telemetry')),"
                " current_setting('timescaledb.license', true)"
            ).fetchone()
            assert row is not None
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    return int(row[0]), int(row[1] or 0), str(row[2])


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--lifts", type=int, default=200)
    args = ap.parse_args()
    text, devices = world(args.lifts)
    msgs, total, same = simulate(devices, args.minutes)
    rows, size, edition = store(text, msgs)
    per_row = size / rows
    print(f"{len(msgs)} telemetry messages from {len(devices)} simulated devices,"
          f" {args.minutes:g} simulated minutes; {rows} rows stored")  # fmt: skip
    print(f"on disk: {per_row:.0f} B a row (heap, indexes, TOAST of the chunks)")
    print(
        f"TimescaleDB edition: {edition}"
        + ("" if edition == "timescale" else " (no compression, no continuous aggregates)")
    )
    print(f"{'kind':14} {'messages':>9} {'repeats':>8}")
    for kind in sorted(total):
        print(f"{kind:14} {total[kind]:9d} {same[kind] / total[kind]:8.0%}")
    c = city_model(2318)  # seed 003's city, as the capacity model
    by_kind: dict[str, float] = collections.defaultdict(float)
    for (kind, sub), count in c.devices.items():
        by_kind[kind] += count / SIMULATORS[(kind, sub)][1]
    city = sum(by_kind.values())
    repeat = sum(r * same[k] / total[k] for k, r in by_kind.items() if total[k]) / city
    days = load_settings().retention_raw_days
    today = city * 86_400 * days * per_row / 1e12
    runs = city * 86_400 * days * (per_row * (1 - repeat) + REPEAT_BYTES * repeat) / 1e12
    print(f"a city ({city:,.0f} msg/s): {repeat:.0%} of its messages repeat the device's last"
          f" reading; {days:g} days of raw telemetry: {today:.1f} TB as stored,"
          f" {runs:.1f} TB with repeats as runs (projected)")  # fmt: skip
    print(f"storage_bytes_per_row={per_row:.0f}")
    print(f"storage_city_repeat_share={repeat:.2f}")
    print(f"storage_city_raw_tb={today:.1f}")
    print(f"storage_city_raw_runs_tb={runs:.1f}")


if __name__ == "__main__":
    main()
