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
  (an idle lift at a landing sends the same nine values every 2 s);
- the same telemetry rewritten as runs by ``ingest.runs.compact`` (a device's unchanged
  readings stored once with each repeat's time and sequence; verified lossless by the
  compaction itself and again here): bytes on disk per message after;
- a city's raw telemetry for the retention (``ESTATE_RETENTION_RAW_DAYS``) at the offered
  load of the capacity model, as stored raw and as runs (both from the measured bytes per
  message; the city's mix of kinds weighted as the capacity model's inventory).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import random
import time
from dataclasses import dataclass

import psycopg

from bench import fresh_database
from bench.capacity import city as city_model
from estate import registry
from estate.services import PrivateServices
from estate.settings import load_settings
from ingest import contract
from ingest.batch import Incoming, decode_batch
from ingest.contract import Bounds, Channel
from ingest.rollup import roll_up
from ingest.runs import compact
from ingest.worker import Directory
from ingest.writer import Writer
from simulators.devices import SIMULATORS, make_sim

DB = "bench_storage"


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


def store(registry_text: str, msgs: list[Incoming]) -> Stored:
    """Store ``msgs`` with the real writer, measure, rewrite them as runs, measure again."""
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
            everything = (
                "SELECT count(*), sum(hashtextextended(t::text, 0))"
                " FROM telemetry_between('-infinity', 'infinity') t"
            )
            before = conn.execute(everything).fetchone()
            # as the maintainer would two days on, once every minute is rolled up
            later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
            roll_up(conn, later)
            t0 = time.perf_counter()
            made = compact(conn, later, dt.timedelta(days=2), limit=10)
            took = time.perf_counter() - t0
            conn.execute("VACUUM ANALYZE telemetry_runs")
            after = conn.execute(everything).fetchone()
            assert before == after, f"runs changed the readings: {before} != {after}"
            runs_size = conn.execute(
                "SELECT sum(total_bytes) FROM chunks_detailed_size('telemetry_runs')"
            ).fetchone()
            assert runs_size is not None
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    return Stored(
        int(row[0]), int(row[1] or 0), str(row[2]), made.runs, int(runs_size[0] or 0), took
    )


@dataclass(frozen=True)
class Stored:
    rows: int
    size: int  # bytes on disk, raw
    edition: str
    runs: int
    runs_size: int  # bytes on disk once stored as runs
    compact_s: float


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--lifts", type=int, default=200)
    args = ap.parse_args()
    text, devices = world(args.lifts)
    msgs, total, same = simulate(devices, args.minutes)
    st = store(text, msgs)
    per_row = st.size / st.rows
    per_msg_runs = st.runs_size / st.rows
    print(f"{len(msgs)} telemetry messages from {len(devices)} simulated devices,"
          f" {args.minutes:g} simulated minutes; {st.rows} rows stored")  # fmt: skip
    print(f"on disk: {per_row:.0f} B a row (heap, indexes, TOAST of the chunks)")
    print(
        f"TimescaleDB edition: {st.edition}"
        + ("" if st.edition == "timescale" else " (no compression, no continuous aggregates)")
    )
    print(f"{'kind':14} {'messages':>9} {'repeats':>8}")
    for kind in sorted(total):
        print(f"{kind:14} {total[kind]:9d} {same[kind] / total[kind]:8.0%}")
    print(f"as runs (ingest.runs): {st.runs} rows for {st.rows} readings, {per_msg_runs:.0f} B"
          f" a message on disk ({per_msg_runs / per_row:.0%} of raw), every reading given"
          f" back unchanged (count and checksum); compaction {st.rows / st.compact_s:,.0f}"
          " readings/s")  # fmt: skip
    c = city_model(2318)  # seed 003's city, as the capacity model
    by_kind: dict[str, float] = collections.defaultdict(float)
    for (kind, sub), count in c.devices.items():
        by_kind[kind] += count / SIMULATORS[(kind, sub)][1]
    city = sum(by_kind.values())
    repeat = sum(r * same[k] / total[k] for k, r in by_kind.items() if total[k]) / city
    # the city's mix differs from the sample's: scale the saving by its share of repeats
    sample_repeat = sum(same.values()) / sum(total.values())
    city_runs_b = per_row - (per_row - per_msg_runs) * repeat / sample_repeat
    days = load_settings().retention_raw_days
    today = city * 86_400 * days * per_row / 1e12
    runs = city * 86_400 * days * city_runs_b / 1e12
    print(f"a city ({city:,.0f} msg/s): {repeat:.0%} of its messages repeat the device's last"
          f" reading; {days:g} days of raw telemetry: {today:.1f} TB as stored,"
          f" {runs:.1f} TB as runs (~{city_runs_b:.0f} B a message)")  # fmt: skip
    print(f"storage_bytes_per_row={per_row:.0f}")
    print(f"storage_runs_bytes_per_msg={per_msg_runs:.0f}")
    print(f"storage_city_repeat_share={repeat:.2f}")
    print(f"storage_city_raw_tb={today:.1f}")
    print(f"storage_city_raw_runs_tb={runs:.1f}")


if __name__ == "__main__":
    main()
