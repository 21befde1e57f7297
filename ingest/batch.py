"""From received MQTT messages to rows: decode, validate and resolve one batch at a time.

Nothing here touches the network or the database; the directory of devices is passed in,
so the whole step is a pure function of (messages, directory, bounds) and tested as such.
Every message ends in exactly one place: rows to store, or a dead letter whose text
PostgreSQL can hold (``pg_text``). What a device's newest values are is decided by
``settle`` once the writer knows which rows were really stored: a redelivered or a
conflicting message changes nothing.
"""

from __future__ import annotations

import datetime as dt
import functools
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
    # secondary water supply (migration 0013)
    "overflow",
    "chlorine_mg_l",
    "turbidity_ntu",
)
BOOL_COLUMNS = frozenset(
    m.name for k in contract.KINDS.values() for m in k.metrics.values() if m.type == "boolean"
)
# the telemetry table's columns as the writer stages them; TELEMETRY_TYPES are their types
TELEMETRY_COLUMNS: tuple[str, ...] = ("ts", "device_id", "seq", *METRIC_COLUMNS, "extra")
TELEMETRY_TYPES: tuple[str, ...] = (
    "timestamptz",
    "int4",
    "int8",
    *("bool" if c in BOOL_COLUMNS else "float8" for c in METRIC_COLUMNS),
    "jsonb",
)
_COLUMN_INDEX = {c: i for i, c in enumerate(METRIC_COLUMNS)}
_IS_BOOL = tuple(c in BOOL_COLUMNS for c in METRIC_COLUMNS)
_WIDTH = len(METRIC_COLUMNS)


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
    subtype: str | None = None  # known: telemetry from an event-only subtype is refused


Lookup = Callable[[str, str], DeviceRef | None]


@dataclass
class DeviceSeen:
    """The newest of what one batch says about one device (values: of its stored rows)."""

    last_seen: dt.datetime
    last_ts: dt.datetime | None = None
    last_seq: int | None = None
    latest: dict[str, float | bool] = field(default_factory=dict)
    online: bool | None = None  # set when a status message arrived


@dataclass
class Rows:
    """What one batch writes, table by table; ``*_from`` the message of each row (a row
    that conflicts with a stored one is dead-lettered as that message)."""

    telemetry: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    dead: list[tuple[Any, ...]] = field(default_factory=list)
    devices: dict[int, DeviceSeen] = field(default_factory=dict)
    dead_reasons: Counter[str] = field(default_factory=Counter)
    unknown_metrics: Counter[str] = field(default_factory=Counter)
    telemetry_from: list[Incoming] = field(default_factory=list)
    telemetry_values: list[dict[str, float | bool]] = field(default_factory=list)
    events_from: list[Incoming] = field(default_factory=list)

    def keep(self, telemetry: Sequence[bool], events: Sequence[bool]) -> None:
        """Keep only the rows marked True (those really stored), then ``settle``."""
        if all(telemetry) and all(events):
            return  # everything was new: what decode_batch settled stands
        self.telemetry = [r for r, k in zip(self.telemetry, telemetry, strict=True) if k]
        self.telemetry_from = [m for m, k in zip(self.telemetry_from, telemetry, strict=True) if k]
        self.telemetry_values = [
            v for v, k in zip(self.telemetry_values, telemetry, strict=True) if k
        ]
        self.events = [r for r, k in zip(self.events, events, strict=True) if k]
        self.events_from = [m for m, k in zip(self.events_from, events, strict=True) if k]
        settle(self)


def pg_text(text: str) -> str:
    """``text`` as PostgreSQL's text can hold it: NUL and lone surrogates escaped."""
    if "\x00" in text:
        text = text.replace("\x00", "\\u0000")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def settle(rows: Rows) -> None:
    """Each device's newest stored reading wins; an older (late) one only fills metrics
    the newer ones did not carry."""
    for seen in rows.devices.values():
        seen.last_ts, seen.last_seq, seen.latest = None, None, {}
    newest: dict[int, dt.datetime] = {}
    for r, v in zip(rows.telemetry, rows.telemetry_values, strict=True):
        _see(rows, newest, int(r[1]), r[0], int(r[2]), values=v)
    for e in rows.events:
        _see(rows, newest, int(e[1]), e[0], int(e[2]), values=None)


def _see(
    rows: Rows,
    newest: dict[int, dt.datetime],
    /,
    dev: int,
    ts: dt.datetime,
    seq: int,
    *,
    values: dict[str, float | bool] | None,
) -> None:
    """One row into its device's state: the newest row gives last ts and seq, the newest
    telemetry (``newest``: its ts per device) the values; an older reading only fills
    metrics not yet known."""
    seen = rows.devices.get(dev)
    if seen is None:
        return
    if seen.last_ts is None or ts >= seen.last_ts:
        seen.last_ts, seen.last_seq = ts, seq
    if values is None:
        return
    if dev not in newest or ts >= newest[dev]:
        newest[dev] = ts
        seen.latest.update(values)
    else:
        for k, v in values.items():
            seen.latest.setdefault(k, v)


def shard_of(estate: str, shards: int) -> int:
    """The worker that owns ``estate``: stable across processes and restarts (CRC-32)."""
    return zlib.crc32(estate.encode()) % shards


def dead_letter(
    rows: Rows,
    m: Incoming,
    reason: Reason,
    detail: str,
    *,
    estate: str | None = None,
    device: str | None = None,
) -> None:
    rows.dead.append(
        (m.received_at, pg_text(m.topic), m.payload, str(reason), pg_text(detail), estate, device)
    )
    rows.dead_reasons[str(reason)] += 1


def _telemetry_row(
    ts: dt.datetime, device_id: int, seq: int, values: dict[str, float | bool]
) -> tuple[Any, ...]:
    cols: list[Any] = [None] * _WIDTH
    extra: dict[str, float | bool] | None = None
    for name, v in values.items():
        i = _COLUMN_INDEX.get(name)
        if i is not None and _IS_BOOL[i] is (v.__class__ is bool):
            cols[i] = v
        else:
            # not a column; or another kind's metric with the other type (a boolean where
            # a number belongs): kept in extra rather than coerced, nothing changed silently
            extra = extra or {}
            extra[name] = v
    return (ts, device_id, seq, *cols, extra)


@functools.lru_cache(maxsize=1 << 17)
def parse_topic(topic: str) -> Topic:
    """``Topic.parse``, remembered: a device publishes on the same few topics all day
    (measured: parsing was 4 % of the worker's interpreter time). Refusals are not
    remembered (an exception is not cached) and cost what they did."""
    return Topic.parse(topic)


def decode_batch(messages: Sequence[Incoming], lookup: Lookup, *, bounds: Bounds) -> Rows:
    """Decode, validate and resolve ``messages``; every one ends in exactly one place (a
    gateway's array: each element). Device values are settled from every accepted row;
    the writer settles them again from what it really stored."""
    rows = Rows()
    newest: dict[int, dt.datetime] = {}  # per device: its newest telemetry's ts
    for m in messages:
        try:
            topic = parse_topic(m.topic)
        except contract.ContractError as err:
            dead_letter(rows, m, Reason.BAD_TOPIC, str(err))
            continue
        ref = lookup(topic.estate, topic.device)
        if ref is None:
            dead_letter(
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
            dead_letter(
                rows,
                m,
                Reason.KIND_MISMATCH,
                f"device {topic.estate}/{topic.device} is a {ref.kind} in the registry but "
                f"published as {topic.kind}",
                estate=topic.estate,
                device=topic.device,
            )
            continue
        result = contract.decode(
            topic, m.payload, received_at=m.received_at, bounds=bounds, subtype=ref.subtype
        )
        if isinstance(result, Rejection):
            dead_letter(
                rows, m, result.reason, result.detail, estate=topic.estate, device=topic.device
            )
            continue
        for _index, rejection, element in result.rejected:
            # a gateway's bad element alone: its good neighbours are stored
            one = Incoming(m.topic, element, m.mid, m.qos, m.generation, m.received_at)
            dead_letter(
                rows, one, rejection.reason, rejection.detail,
                estate=topic.estate, device=topic.device,
            )  # fmt: skip
        if result.records:
            _accept(rows, newest, m, ref, result)
    return rows


def _accept(
    rows: Rows, newest: dict[int, dt.datetime], m: Incoming, ref: DeviceRef, d: Decoded
) -> None:
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
        # settled as they come (``_see``, what ``settle`` does over a whole batch)
        if isinstance(r, contract.TelemetryMessage):
            rows.telemetry.append(_telemetry_row(r.ts, ref.id, r.seq, r.values))
            rows.telemetry_from.append(m)
            rows.telemetry_values.append(r.values)
            _see(rows, newest, ref.id, r.ts, r.seq, values=r.values)
        else:
            rows.events.append((r.ts, ref.id, r.seq, r.code, r.detail))
            _see(rows, newest, ref.id, r.ts, r.seq, values=None)
            rows.events_from.append(m)
