"""Fault injection: the bad, odd and hostile messages a real fleet produces.

Each fault yields ``Injected`` messages that say what a correct ingest must do with them:
reject with a given reason (dead letter), store once (duplicates, replays), or store as
usual (late, out of order, bursts). Some rejections need the registry (unknown device,
kind mismatch); the contract alone decides the rest.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ingest import contract
from ingest.contract import Channel, Reason
from simulators.devices import DeviceSim

Outcome = Literal["reject", "store", "store_once"]


@dataclass(frozen=True)
class Injected:
    topic: str
    payload: bytes
    outcome: Outcome
    reason: Reason | None
    fault: str


def _tel(sim: DeviceSim, now: dt.datetime, seq: int | None = None) -> dict[str, object]:
    values = sim.values() or {"level_m": 1.0}
    return contract.telemetry(now, sim.seq if seq is None else seq, values)


def _next(sim: DeviceSim) -> int:
    s = sim.seq
    sim.seq = (sim.seq + 1) % (contract.SEQ_MAX + 1)
    return s


def malformed_json(sim: DeviceSim, now: dt.datetime, rng: random.Random) -> list[Injected]:
    good = contract.dumps(_tel(sim, now, _next(sim)))
    cut = good[: rng.randint(1, len(good) - 2)]
    return [
        Injected(sim.topic(Channel.TELEMETRY), cut, "reject", Reason.NOT_JSON, "truncated JSON"),
        Injected(
            sim.topic(Channel.TELEMETRY),
            b"\xff\xfe\x00garbage",
            "reject",
            Reason.NOT_JSON,
            "not UTF-8",
        ),
    ]


def wrong_types(sim: DeviceSim, now: dt.datetime, rng: random.Random) -> list[Injected]:
    bad: list[dict[str, object]] = [
        {"ts": contract.format_ts(now), "seq": "12", "values": {"floor": 1}},
        {"ts": contract.format_ts(now), "seq": _next(sim), "values": {"floor": "twelve"}},
        {"ts": True, "seq": _next(sim), "values": {"floor": 1}},
        {"ts": contract.format_ts(now), "seq": -1, "values": {"floor": 1}},
        {"ts": contract.format_ts(now), "seq": contract.SEQ_MAX + 1, "values": {"floor": 1}},
        {"ts": now.replace(tzinfo=None).isoformat(), "seq": _next(sim), "values": {"floor": 1}},
        {"ts": contract.format_ts(now), "seq": _next(sim), "values": {"floor": None}},
        {"ts": contract.format_ts(now), "seq": _next(sim), "values": {}},
    ]
    return [
        Injected(
            sim.topic(Channel.TELEMETRY),
            json.dumps(p).encode(),
            "reject",
            Reason.SCHEMA,
            "wrong types",
        )
        for p in bad
    ]


def missing_fields(sim: DeviceSim, now: dt.datetime, rng: random.Random) -> list[Injected]:
    return [
        Injected(
            sim.topic(Channel.TELEMETRY),
            b'{"seq": 1, "values": {"floor": 1}}',
            "reject",
            Reason.SCHEMA,
            "no ts",
        ),
        Injected(
            sim.topic(Channel.EVENT),
            json.dumps({"ts": contract.format_ts(now), "seq": _next(sim)}).encode(),
            "reject",
            Reason.SCHEMA,
            "event without code",
        ),
        Injected(
            sim.topic(Channel.STATUS), b"{}", "reject", Reason.SCHEMA, "status without online"
        ),
    ]


def unknown_event(sim: DeviceSim, now: dt.datetime, rng: random.Random) -> list[Injected]:
    payload = contract.dumps(contract.event(now, _next(sim), "self_destruct"))
    return [
        Injected(
            sim.topic(Channel.EVENT),
            payload,
            "reject",
            Reason.UNKNOWN_EVENT,
            "event code outside the vocabulary",
        )
    ]


def out_of_bounds(sim: DeviceSim, now: dt.datetime, rng: random.Random) -> list[Injected]:
    past = contract.dumps(_tel(sim, now - dt.timedelta(days=400), _next(sim)))
    future = contract.dumps(_tel(sim, now + dt.timedelta(hours=3), _next(sim)))
    return [
        Injected(
            sim.topic(Channel.TELEMETRY),
            past,
            "reject",
            Reason.TS_OUT_OF_BOUNDS,
            "clock reset to 2025",
        ),
        Injected(
            sim.topic(Channel.TELEMETRY),
            future,
            "reject",
            Reason.TS_OUT_OF_BOUNDS,
            "clock 3 h ahead",
        ),
    ]


def oversized(sim: DeviceSim, now: dt.datetime, rng: random.Random) -> list[Injected]:
    p = contract.event(
        now,
        _next(sim),
        "fault" if sim.kind == "fire" else "power_loss",
        {"dump": "x" * (contract.MAX_PAYLOAD_BYTES + 1)},
    )
    return [
        Injected(
            sim.topic(Channel.EVENT),
            contract.dumps(p),
            "reject",
            Reason.OVERSIZED,
            "oversized payload",
        )
    ]


def unknown_device(sim: DeviceSim, now: dt.datetime, rng: random.Random) -> list[Injected]:
    topic = f"{contract.ROOT}/{sim.estate}/{sim.kind}/NOSUCH-{rng.randint(1, 9999)}/telemetry"
    return [
        Injected(
            topic,
            contract.dumps(_tel(sim, now, 1)),
            "reject",
            Reason.UNKNOWN_DEVICE,
            "device not in the registry",
        )
    ]


def kind_mismatch(sim: DeviceSim, now: dt.datetime, rng: random.Random) -> list[Injected]:
    other = next(k for k in contract.KINDS if k != sim.kind)
    topic = f"{contract.ROOT}/{sim.estate}/{other}/{sim.code}/telemetry"
    return [
        Injected(
            topic,
            contract.dumps(_tel(sim, now, _next(sim))),
            "reject",
            Reason.KIND_MISMATCH,
            f"{sim.kind} device publishing as {other}",
        )
    ]


def bad_topic(sim: DeviceSim, now: dt.datetime, rng: random.Random) -> list[Injected]:
    payload = contract.dumps(_tel(sim, now, _next(sim)))
    return [
        Injected(
            f"{contract.ROOT}/{sim.estate}/{sim.kind}/{sim.code}/commands",
            payload,
            "reject",
            Reason.BAD_TOPIC,
            "unknown channel",
        ),
        Injected(
            f"estate/v9/{sim.estate}/{sim.kind}/{sim.code}/telemetry",
            payload,
            "reject",
            Reason.BAD_TOPIC,
            "unknown contract version",
        ),
    ]


def duplicate(sim: DeviceSim, now: dt.datetime, rng: random.Random) -> list[Injected]:
    p = contract.dumps(_tel(sim, now, _next(sim)))
    t = sim.topic(Channel.TELEMETRY)
    return [
        Injected(t, p, "store_once", None, "duplicate"),
        Injected(t, p, "store_once", None, "duplicate"),
    ]


def out_of_order(sim: DeviceSim, now: dt.datetime, rng: random.Random) -> list[Injected]:
    a = contract.dumps(_tel(sim, now, _next(sim)))
    b = contract.dumps(_tel(sim, now + dt.timedelta(seconds=1), _next(sim)))
    t = sim.topic(Channel.TELEMETRY)
    return [
        Injected(t, b, "store", None, "out of order"),
        Injected(t, a, "store", None, "out of order"),
    ]


def late(sim: DeviceSim, now: dt.datetime, rng: random.Random) -> list[Injected]:
    p = contract.dumps(_tel(sim, now - dt.timedelta(hours=2), _next(sim)))
    return [Injected(sim.topic(Channel.TELEMETRY), p, "store", None, "two hours late")]


def burst(sim: DeviceSim, now: dt.datetime, rng: random.Random) -> list[Injected]:
    t = sim.topic(Channel.TELEMETRY)
    return [
        Injected(
            t,
            contract.dumps(_tel(sim, now + dt.timedelta(milliseconds=i), _next(sim))),
            "store",
            None,
            "burst",
        )
        for i in range(200)
    ]


def gateway_batch(sim: DeviceSim, now: dt.datetime, rng: random.Random) -> list[Injected]:
    batch = [_tel(sim, now + dt.timedelta(milliseconds=i), _next(sim)) for i in range(20)]
    return [
        Injected(
            sim.topic(Channel.TELEMETRY),
            contract.dumps(batch),
            "store",
            None,
            "gateway array of 20",
        )
    ]


def reconnect_replay(sim: DeviceSim, now: dt.datetime, rng: random.Random) -> list[Injected]:
    """A device back from an outage replays its backlog, including what it had already sent."""
    t = sim.topic(Channel.TELEMETRY)
    backlog = [
        contract.dumps(_tel(sim, now - dt.timedelta(seconds=60 - i), _next(sim))) for i in range(30)
    ]
    already_sent = [
        Injected(t, p, "store_once", None, "sent before the outage") for p in backlog[:10]
    ]
    replay = [Injected(t, p, "store_once", None, "replayed backlog") for p in backlog]
    return already_sent + replay


FAULTS: dict[str, Callable[[DeviceSim, dt.datetime, random.Random], list[Injected]]] = {
    "malformed_json": malformed_json,
    "wrong_types": wrong_types,
    "missing_fields": missing_fields,
    "unknown_event": unknown_event,
    "out_of_bounds": out_of_bounds,
    "oversized": oversized,
    "unknown_device": unknown_device,
    "kind_mismatch": kind_mismatch,
    "bad_topic": bad_topic,
    "duplicate": duplicate,
    "out_of_order": out_of_order,
    "late": late,
    "burst": burst,
    "gateway_batch": gateway_batch,
    "reconnect_replay": reconnect_replay,
}
# Faults whose verdict needs the registry, not only the contract.
NEEDS_REGISTRY = frozenset({"unknown_device", "kind_mismatch"})
