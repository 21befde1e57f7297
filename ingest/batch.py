"""From received MQTT messages to rows: decode, validate and resolve one batch at a time.

Nothing here touches the network or the database; the directory of devices is passed in,
so the whole step is a pure function of (messages, directory, bounds) and tested as such.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ingest import contract
from ingest.contract import Bounds, Decoded, Reason, Rejection, Topic

# Telemetry columns of the wide table (migration 0002), in COPY order after ts, device, seq.
METRIC_COLUMNS: tuple[str, ...] = (
    "floor",
    "speed_mps",
    "direction",
    "door_open",
    "in_door_zone",
    "occupied",
    "load_pct",
    "mode",
    "running",
    "pressure_mpa",
    "level_m",
    "fault",
    "open",
    "residual_current_ma",
    "cable_temp_c",
    "pump_running",
    "pump_fault",
    "water_detected",
    "closed",
)
BOOL_COLUMNS = frozenset(
    m.name for k in contract.KINDS.values() for m in k.metrics.values() if m.type == "boolean"
)
TELEMETRY_TYPES: tuple[str, ...] = (
    "timestamptz",
    "int4",
    "int8",
    *("bool" if c in BOOL_COLUMNS else "float8" for c in METRIC_COLUMNS),
    "jsonb",
)
_COLUMN_INDEX = {c: i for i, c in enumerate(METRIC_COLUMNS)}


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message as the subscriber hands it over."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # the connection it arrived on: acks go back on that one only
    received_at: dt.datetime


@dataclass(frozen=True, slots=True)
class DeviceRef:
    id: int
    estate: str
    code: str
    kind: str


Lookup = Callable[[str, str], DeviceRef | None]


@dataclass
class DeviceSeen:
    """The newest of what one batch says about one device."""

    last_seen: dt.datetime
    last_ts: dt.datetime | None = None
    last_seq: int | None = None
    latest: dict[str, float | bool] = field(default_factory=dict)
    online: bool | None = None  # set when a status message arrived


@dataclass
class Rows:
    """What one batch writes, table by table."""

    telemetry: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    dead: list[tuple[Any, ...]] = field(default_factory=list)
    devices: dict[int, DeviceSeen] = field(default_factory=dict)
    dead_reasons: Counter[str] = field(default_factory=Counter)
    unknown_metrics: Counter[str] = field(default_factory=Counter)


def shard_of(estate: str, shards: int) -> int:
    """The worker that owns ``estate``: stable across processes and restarts (CRC-32)."""
    return zlib.crc32(estate.encode()) % shards


def _dead(
    rows: Rows,
    m: Incoming,
    reason: Reason,
    detail: str,
    *,
    estate: str | None = None,
    device: str | None = None,
) -> None:
    rows.dead.append((m.received_at, m.topic, m.payload, str(reason), detail, estate, device))
    rows.dead_reasons[str(reason)] += 1


def _telemetry_row(
    ts: dt.datetime, device_id: int, seq: int, values: dict[str, float | bool]
) -> tuple[Any, ...]:
    cols: list[Any] = [None] * len(METRIC_COLUMNS)
    extra: dict[str, float | bool] | None = None
    for name, v in values.items():
        i = _COLUMN_INDEX.get(name)
        if i is None:
            extra = extra or {}
            extra[name] = v
        elif (METRIC_COLUMNS[i] in BOOL_COLUMNS) == isinstance(v, bool):
            cols[i] = v
        else:
            # A known metric with the other type (a boolean where a number belongs): keep it
            # in extra rather than coerce it, so nothing is silently changed.
            extra = extra or {}
            extra[name] = v
    return (ts, device_id, seq, *cols, extra)


def decode_batch(messages: Sequence[Incoming], lookup: Lookup, *, bounds: Bounds) -> Rows:
    """Decode, validate and resolve ``messages``; every one ends in exactly one place."""
    rows = Rows()
    for m in messages:
        try:
            topic = Topic.parse(m.topic)
        except contract.ContractError as err:
            _dead(rows, m, Reason.BAD_TOPIC, str(err))
            continue
        ref = lookup(topic.estate, topic.device)
        if ref is None:
            _dead(
                rows,
                m,
                Reason.UNKNOWN_DEVICE,
                f"no device {topic.device!r} in estate {topic.estate!r} in the registry "
                "(add it, then `estate deadletters replay --reason unknown_device`)",
                estate=topic.estate,
                device=topic.device,
            )
            continue
        if ref.kind != topic.kind:
            _dead(
                rows,
                m,
                Reason.KIND_MISMATCH,
                f"device {topic.estate}/{topic.device} is a {ref.kind} in the registry but "
                f"published as {topic.kind}",
                estate=topic.estate,
                device=topic.device,
            )
            continue
        result = contract.decode(topic, m.payload, received_at=m.received_at, bounds=bounds)
        if isinstance(result, Rejection):
            _dead(rows, m, result.reason, result.detail, estate=topic.estate, device=topic.device)
            continue
        _accept(rows, m, ref, result)
    return rows


def _accept(rows: Rows, m: Incoming, ref: DeviceRef, d: Decoded) -> None:
    seen = rows.devices.get(ref.id)
    if seen is None:
        seen = rows.devices[ref.id] = DeviceSeen(last_seen=m.received_at)
    seen.last_seen = max(seen.last_seen, m.received_at)
    for name in d.unknown_metrics:
        rows.unknown_metrics[name] += 1
    for r in d.records:
        if isinstance(r, contract.StatusMessage):
            seen.online = r.online
            continue
        if isinstance(r, contract.TelemetryMessage):
            rows.telemetry.append(_telemetry_row(r.ts, ref.id, r.seq, r.values))
        else:
            rows.events.append((r.ts, ref.id, r.seq, r.code, r.detail))
        if seen.last_ts is None or r.ts >= seen.last_ts:
            seen.last_ts, seen.last_seq = r.ts, r.seq
            if isinstance(r, contract.TelemetryMessage):
                seen.latest.update(r.values)
        elif isinstance(r, contract.TelemetryMessage):
            # an older reading only fills metrics the newer ones did not carry
            for k, v in r.values.items():
                seen.latest.setdefault(k, v)
