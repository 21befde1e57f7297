"""The device contract (MQTT), version 1: the one definition ingest and simulators share.

Topics::

    estate/v1/{estate}/{kind}/{device}/telemetry   measurements
    estate/v1/{estate}/{kind}/{device}/event       discrete signals from a controller or panel
    estate/v1/{estate}/{kind}/{device}/status      {"online": true|false}, retained; the Last Will

Payloads are UTF-8 JSON: one object, or an array of objects (a gateway's batch, at most
``MAX_BATCH``). ``ts`` is RFC 3339 (``2026-11-22T10:00:00.120+08:00``; ``T``/``Z`` may be
lower case) or integer epoch milliseconds; ``seq`` is the device's counter, 0..2^32-1,
wrapping. A metric's value has its declared type (a boolean metric takes true/false, a
number metric a finite number); a subtype that sends only events and status sends no
telemetry; an event's ``detail`` is JSON that PostgreSQL can hold (no NUL character, no
NaN or Infinity, integers within 64 bits, at most ``MAX_DEPTH`` levels); duplicate keys are
refused. An empty retained status payload is how MQTT clears a retained message: accepted,
nothing stored. The vocabularies (metrics with units, event codes) per kind are the
tables below; docs/contract.md renders them for device makers.

``decode`` validates one message and returns typed records or a ``Rejection`` whose reason a
person can act on. It never raises on bad input: whatever a device sends ends stored or
rejected. In a gateway's array each element stands alone: the good ones are kept and each
bad one is rejected with its index.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictFloat,
    StrictInt,
    TypeAdapter,
    ValidationError,
)

VERSION = "v1"
ROOT = f"estate/{VERSION}"
SEQ_MAX = 2**32 - 1
MAX_PAYLOAD_BYTES = 64 * 1024
# A real reading is 150-250 bytes: 250 of them fit the payload limit (1,000 never could).
MAX_BATCH = 250
MAX_DEPTH = 16  # nesting of an event's detail
_INT64 = 2**63
_CODE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Channel(StrEnum):
    TELEMETRY = "telemetry"
    EVENT = "event"
    STATUS = "status"


# --------------------------------------------------------------------------- vocabularies


@dataclass(frozen=True)
class Metric:
    """A telemetry value: its name on the wire, unit, type and meaning."""

    name: str
    unit: str
    type: Literal["number", "boolean"]
    zh: str
    en: str
    # a number that stands for a state: (value, 中文, English) for each, for people
    codes: tuple[tuple[int, str, str], ...] = ()


@dataclass(frozen=True)
class EventCode:
    code: str
    zh: str
    en: str


@dataclass(frozen=True)
class KindSpec:
    """One device kind: its metrics, its events, and which metrics each subtype sends."""

    kind: str
    metrics: dict[str, Metric]
    events: dict[str, EventCode]
    subtype_metrics: dict[str, tuple[str, ...]]
    subtype_events: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _metrics(*items: Metric) -> dict[str, Metric]:
    return {m.name: m for m in items}


def _events(*items: EventCode) -> dict[str, EventCode]:
    return {e.code: e for e in items}


N: Literal["number"] = "number"
B: Literal["boolean"] = "boolean"

_LIFT_METRICS = _metrics(
    Metric("floor", "floor", N, "所在楼层", "current floor (negative below ground)"),
    Metric("speed_mps", "m/s", N, "运行速度", "car speed"),
    Metric(
        "direction",
        "-1/0/1",
        N,
        "运行方向",
        "down -1, stopped 0, up 1",
        codes=((-1, "下行", "down"), (0, "停止", "stopped"), (1, "上行", "up")),
    ),
    Metric("door_open", "", B, "门开", "car door open"),
    Metric("in_door_zone", "", B, "平层区", "car within a landing's door zone"),
    Metric("occupied", "", B, "有人", "someone in the car"),
    Metric("load_pct", "%", N, "载重", "load as a share of rated load"),
    Metric(
        "mode",
        "0-3",
        N,
        "运行模式",
        "0 normal, 1 inspection, 2 fire, 3 out of service",
        codes=(
            (0, "正常", "normal"),
            (1, "检修", "inspection"),
            (2, "消防", "fire service"),
            (3, "停止服务", "out of service"),
        ),
    ),
    Metric("running", "", B, "运行中", "car moving or commanded to move"),
)

ELEVATOR = KindSpec(
    kind="elevator",
    metrics=_LIFT_METRICS,
    events=_events(
        EventCode("trapped", "困人", "passengers trapped"),
        EventCode("overspeed", "超速", "overspeed"),
        EventCode("overtravel_top", "冲顶", "overtravel at the top"),
        EventCode("overtravel_bottom", "蹲底", "overtravel at the bottom"),
        EventCode("door_open_running", "开门走梯", "door open while running"),
        EventCode("stopped_outside_door_zone", "非平层停梯", "stopped outside a door zone"),
        EventCode("safety_circuit_open", "安全回路断路", "safety circuit open"),
        EventCode("door_lock_fault", "门锁回路故障", "door lock circuit fault"),
        EventCode("ebike_detected", "电动车入梯", "e-bike in the car"),
        EventCode("power_loss", "停电", "mains power lost"),
        EventCode("power_restored", "来电", "mains power restored"),
    ),
    subtype_metrics={s: tuple(_LIFT_METRICS) for s in ("passenger", "freight", "escalator")},
)

FIRE = KindSpec(
    kind="fire",
    metrics=_metrics(
        Metric("pressure_mpa", "MPa", N, "压力", "water pressure"),
        Metric("level_m", "m", N, "液位", "water level"),
        Metric("running", "", B, "运行", "pump running"),
        Metric("fault", "", B, "故障", "device reports a fault"),
        Metric("open", "", B, "开启", "fire door open"),
        Metric("residual_current_ma", "mA", N, "剩余电流", "residual current"),
        Metric("cable_temp_c", "°C", N, "线缆温度", "cable temperature"),
    ),
    events=_events(
        EventCode("fire_alarm", "火警", "fire alarm"),
        EventCode("fault", "故障", "fault"),
        EventCode("fault_cleared", "故障恢复", "fault cleared"),
        EventCode("supervisory", "监管", "supervisory signal"),
        EventCode("disabled", "屏蔽", "point disabled"),
        EventCode("enabled", "屏蔽解除", "point enabled again"),
        EventCode("feedback", "反馈", "equipment feedback (e.g. flow switch, damper)"),
        EventCode("start", "启动", "equipment started (e.g. pump start)"),
        EventCode("reset", "复位", "panel reset"),
    ),
    subtype_metrics={
        "fire_panel": (),
        "smoke_detector": (),
        "manual_call_point": (),
        "hydrant_pressure": ("pressure_mpa",),
        "sprinkler_pressure": ("pressure_mpa",),
        "water_tank": ("level_m",),
        "fire_pump": ("running", "fault"),
        "fire_door": ("open",),
        "electrical": ("residual_current_ma", "cable_temp_c"),
    },
)

DRAINAGE = KindSpec(
    kind="drainage",
    metrics=_metrics(
        Metric("level_m", "m", N, "液位", "water level above the pit or manhole floor"),
        Metric("pump_running", "", B, "水泵运行", "pump running"),
        Metric("pump_fault", "", B, "水泵故障", "pump fault"),
        Metric("water_detected", "", B, "水浸", "water on the floor"),
        Metric("closed", "", B, "关闭", "backflow valve closed"),
        Metric("fault", "", B, "故障", "backflow valve reports a fault"),
    ),
    events=_events(
        EventCode("high_level", "高液位", "high-level float switch"),
        EventCode("pump_fault", "水泵故障", "pump fault"),
        EventCode("power_loss", "停电", "mains power lost"),
    ),
    subtype_metrics={
        "sump_pit": ("level_m", "pump_running", "pump_fault"),
        "manhole": ("level_m",),
        "immersion": ("water_detected",),
        "backflow_valve": ("closed", "fault"),
    },
)

# Secondary water supply (二次供水, seed 001 task 15): the booster pumps and tanks that lift
# mains water to the upper floors, and the quality probe where one is fitted (GB 5749).
WATER_SUPPLY = KindSpec(
    kind="water_supply",
    metrics=_metrics(
        Metric("running", "", B, "运行", "booster pump running"),
        Metric("fault", "", B, "故障", "booster pump reports a fault"),
        Metric("pressure_mpa", "MPa", N, "出水压力", "outlet pressure"),
        Metric("level_m", "m", N, "液位", "tank water level"),
        Metric("overflow", "", B, "溢流", "tank overflowing"),
        Metric("chlorine_mg_l", "mg/L", N, "余氯", "free residual chlorine"),
        Metric("turbidity_ntu", "NTU", N, "浊度", "turbidity"),
    ),
    events=_events(
        EventCode("pump_fault", "水泵故障", "booster pump fault"),
        EventCode("low_level", "低水位", "low-level switch (pumps run dry below it)"),
        EventCode("overflow", "溢流", "overflow switch"),
        EventCode("hatch_open", "人孔开启", "tank hatch opened (tanks are kept locked)"),
        EventCode("power_loss", "停电", "mains power lost"),
    ),
    subtype_metrics={
        "booster_pump": ("running", "fault", "pressure_mpa"),
        "tank": ("level_m", "overflow"),
        "water_quality": ("chlorine_mg_l", "turbidity_ntu"),
    },
)

KINDS: dict[str, KindSpec] = {k.kind: k for k in (ELEVATOR, FIRE, DRAINAGE, WATER_SUPPLY)}


# --------------------------------------------------------------------------- topics


# The service's own output shares the tree (the service account subscribes to estate/#):
#   estate/v1/{estate}/alerts/{kind}/{device}   alert changes
#   estate/v1/{estate}/workorders/{id}          work-order changes (the live stream)
#   estate/v1/{estate}/dispatch/gaps            alerts nobody is responsible for
#   estate/v1/orgs/{org}/notifications         what one organisation is told
# None of it is device data; "orgs" is therefore not an estate code.
SERVICE_SECTIONS = frozenset({"alerts", "workorders", "dispatch"})
ORGS = "orgs"


def service_output(topic: str) -> bool:
    """True for the service's own publications (not device messages), in exactly the
    shapes above; anything else under the tree is a device message or a dead letter."""
    parts = topic.split("/")
    if len(parts) < 5 or parts[0] != "estate" or parts[1] != VERSION:
        return False
    if parts[2] == ORGS:
        return len(parts) == 5 and parts[4] == "notifications" and bool(_CODE.match(parts[3]))
    section = parts[3]
    if section == "alerts":
        return len(parts) == 6 and parts[4] in KINDS
    if section == "workorders":
        return len(parts) == 5 and parts[4].isdigit()
    if section == "dispatch":
        return len(parts) == 5 and parts[4] == "gaps"
    return False


class ContractError(ValueError):
    """A topic or payload breaks the contract; the message says how."""


@dataclass(frozen=True, slots=True)
class Topic:
    """A validated device topic."""

    estate: str
    kind: str
    device: str
    channel: Channel

    def __str__(self) -> str:
        return f"{ROOT}/{self.estate}/{self.kind}/{self.device}/{self.channel}"

    @classmethod
    def parse(cls, topic: str) -> Topic:
        parts = topic.split("/")
        if len(parts) != 6 or parts[0] != "estate":
            raise ContractError(
                f"topic {topic!r} is not estate/v1/{{estate}}/{{kind}}/{{device}}/{{channel}}"
            )
        _, version, estate, kind, device, channel = parts
        if version != VERSION:
            raise ContractError(f"topic {topic!r}: contract version {version!r} is not {VERSION}")
        for what, code in (("estate", estate), ("device", device)):
            if not _CODE.match(code):
                raise ContractError(
                    f"topic {topic!r}: {what} code {code!r} must be 1-64 of A-Z a-z 0-9 _ -"
                )
        if kind not in KINDS:
            raise ContractError(f"topic {topic!r}: kind {kind!r} is not one of {', '.join(KINDS)}")
        try:
            ch = Channel(channel)
        except ValueError:
            raise ContractError(
                f"topic {topic!r}: channel {channel!r} is not telemetry, event or status"
            ) from None
        return cls(estate, kind, device, ch)


def event_only() -> list[str]:
    """``kind/subtype`` of the devices that send events and status only (detectors, call
    points, the fire panel): silence says nothing about them, their connection does (the
    broker's Last Will)."""
    return sorted(
        f"{kind}/{sub}"
        for kind, spec in KINDS.items()
        for sub, metrics in spec.subtype_metrics.items()
        if metrics == ()
    )


def subscription(estate: str = "+", channel: str = "+") -> str:
    """The MQTT filter for one estate's (or every estate's) device messages."""
    return f"{ROOT}/{estate}/+/+/{channel}"


# --------------------------------------------------------------------------- payloads


# RFC 3339 section 5.6, exactly: full-date "T" full-time, the offset required ("T" and
# "Z" in either case). ISO 8601's other forms (basic, week dates, hour-only, "+08") are not
# RFC 3339 and are refused rather than guessed at.
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


def _ts(v: object) -> dt.datetime:
    if isinstance(v, bool):
        raise ValueError("must be RFC 3339 text or integer epoch milliseconds, not a boolean")
    if isinstance(v, int):
        try:
            return dt.datetime.fromtimestamp(v / 1000, tz=dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"epoch milliseconds {v} are out of range") from None
    if isinstance(v, str):
        text = _printable(v)
        if _RFC3339.match(v) is None:
            if _RFC3339.match(v + "Z") is not None:
                raise ValueError(f"{text} has no UTC offset (add Z or +08:00)")
            raise ValueError(
                f"{text} is not an RFC 3339 timestamp (like 2026-11-22T10:00:00.120+08:00)"
            )
        # Python 3.11 reads "t", "Z" and extra fractional digits itself, not "z"
        iso = v[:-1] + "Z" if v[-1] == "z" else v
        try:
            return dt.datetime.fromisoformat(iso).astimezone(dt.UTC)
        except (ValueError, OverflowError):
            # a date that does not exist (02-30, 25:00, a leap second) or one at the edge
            # of the calendar that no offset can move into UTC
            raise ValueError(f"{text} is not a time that exists in UTC") from None
    raise ValueError("must be RFC 3339 text or integer epoch milliseconds")


def _printable(text: str, limit: int = 80) -> str:
    """``text`` as a rejection can quote it: escapes instead of NUL, control characters or
    lone surrogates (PostgreSQL refuses those), cut to ``limit`` characters."""
    shown = repr(text[:limit])
    return shown + ("…" if len(text) > limit else "")


def _detail(v: object) -> dict[str, Any]:
    """An event's detail as PostgreSQL's jsonb can hold it, or ValueError saying where."""
    if not isinstance(v, dict):
        raise ValueError(f"must be an object, not {type(v).__name__}")
    _check_json(v, "detail", 0)
    return v


def _check_json(v: object, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"{where} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(v, dict):
        for k, x in v.items():
            if "\x00" in k:
                raise ValueError(f"{where} has a key with a NUL character (\\u0000)")
            _check_json(x, f"{where}.{_printable(k, 40)}", depth + 1)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            _check_json(x, f"{where}[{i}]", depth + 1)
    else:
        _check_scalar(v, where)


def _check_scalar(v: object, where: str) -> None:
    if isinstance(v, str) and "\x00" in v:
        raise ValueError(f"{where} contains a NUL character (\\u0000)")
    if isinstance(v, int) and not isinstance(v, bool) and not -_INT64 <= v < _INT64:
        raise ValueError(f"{where}: integer out of the 64-bit range")
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"{where}: NaN and Infinity are not JSON numbers")


# A metric value: validated by pydantic-core itself (no Python call per value, the hot
# path): a JSON boolean, or a finite number (an integer becomes a float). What _value says
# in words is what _schema_detail makes of the two failures a union reports.
Value = StrictBool | Annotated[StrictFloat, Field(allow_inf_nan=False)]
Timestamp = Annotated[dt.datetime, PlainValidator(_ts)]
Seq = Annotated[StrictInt, Field(ge=0, le=SEQ_MAX)]
MetricName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    ts: Timestamp
    seq: Seq


class TelemetryMessage(_Message):
    values: Annotated[dict[MetricName, Value], Field(min_length=1, max_length=64)]


def _event_code(code: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", code):
        raise ValueError("must be a lower-case event code such as 'trapped'")
    return code


class EventMessage(_Message):
    code: Annotated[str, AfterValidator(_event_code)]
    detail: Annotated[dict[str, Any], PlainValidator(_detail)] = Field(default_factory=dict)


class StatusMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    online: StrictBool
    ts: Timestamp | None = None


_MODELS: dict[Channel, type[BaseModel]] = {
    Channel.TELEMETRY: TelemetryMessage,
    Channel.EVENT: EventMessage,
    Channel.STATUS: StatusMessage,
}
# One adapter per shape: picking the branch by the first byte keeps error messages about the
# shape the device actually sent (a union would also report why the other shape failed).
_OBJECT: dict[Channel, TypeAdapter[Any]] = {c: TypeAdapter(m) for c, m in _MODELS.items()}
_ANY_LIST: TypeAdapter[list[Any]] = TypeAdapter(list[Any])


class Reason(StrEnum):
    """Why a message was rejected (the dead-letter categories)."""

    BAD_TOPIC = "bad_topic"
    UNKNOWN_DEVICE = "unknown_device"
    KIND_MISMATCH = "kind_mismatch"
    NOT_JSON = "not_json"
    SCHEMA = "schema"
    DUPLICATE_KEY = "duplicate_key"
    UNKNOWN_EVENT = "unknown_event"
    TS_OUT_OF_BOUNDS = "ts_out_of_bounds"
    OVERSIZED = "oversized"
    # the same (device, ts, seq) stored before with other content (ingest.writer)
    CONFLICT = "conflict"
    # the database refused what passed every check here (ingest.worker narrows a failed
    # batch down to it): kept so a person can see it, and the rest is stored
    DATABASE = "database"


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: Reason
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Bounds:
    """Accepted timestamps relative to the time of receipt (configurable per deployment)."""

    past: dt.timedelta = dt.timedelta(days=7)
    future: dt.timedelta = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Decoded:
    """A valid message: its records, and metric names the kind does not define (kept).

    ``rejected``: elements of a gateway's array that failed, each (index, rejection, the
    element as JSON) — the others are in ``records``. No records and nothing rejected: an
    empty retained status (MQTT clearing it)."""

    topic: Topic
    records: tuple[TelemetryMessage, ...] | tuple[EventMessage, ...] | tuple[StatusMessage, ...]
    unknown_metrics: tuple[str, ...] = ()
    rejected: tuple[tuple[int, Rejection, bytes], ...] = ()


def _schema_detail(err: ValidationError, channel: Channel) -> str:
    found: dict[str, str] = {}  # where -> what, first failure of each place
    for e in err.errors(include_url=False):
        loc, msg = e["loc"], e["msg"].removeprefix("Value error, ")
        if len(loc) > 1 and loc[-1] in ("bool", "float") and "values" in loc:
            # a metric value: the union's two branches say one thing
            loc = loc[:-1]
            finite = "finite" in msg or "finite" in found.get(_where(loc), "")
            got = type(e.get("input")).__name__
            msg = "must be a finite number" if finite else f"{_NUMBER_OR_BOOL}, not {got}"
        found[_where(loc)] = msg
    parts = [f"{where}: {msg}" for where, msg in found.items()]
    more = f" (+{len(parts) - 5} more)" if len(parts) > 5 else ""
    return f"{channel} payload: " + "; ".join(parts[:5]) + more


_NUMBER_OR_BOOL = "must be a number or true/false"


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "payload"


def decode(
    topic: Topic,
    payload: bytes,
    *,
    received_at: dt.datetime,
    bounds: Bounds = Bounds(),
    subtype: str | None = None,
) -> Decoded | Rejection:
    """Validate one message published on ``topic`` (by a device of ``subtype``, when
    known); never raises on bad input."""
    try:
        return _decode(topic, payload, received_at=received_at, bounds=bounds, subtype=subtype)
    except Exception as err:  # the promise: whatever comes in, nothing raises
        return Rejection(Reason.SCHEMA, f"could not be decoded: {type(err).__name__}")


def _decode(
    topic: Topic, payload: bytes, *, received_at: dt.datetime, bounds: Bounds, subtype: str | None
) -> Decoded | Rejection:
    spec = KINDS[topic.kind]
    early = _by_shape(topic, payload, spec, subtype)
    if early is not None:
        return early
    if payload.lstrip()[:1] == b"[":
        return _decode_array(topic, payload, received_at=received_at, bounds=bounds)
    try:
        parsed = _OBJECT[topic.channel].validate_json(payload)
    except ValidationError as err:
        return _rejection(err, topic.channel)
    if _duplicate_keys(payload, (parsed,)):
        return Rejection(Reason.DUPLICATE_KEY, "a JSON object repeats a key: send each once")
    rejection = _check_records((parsed,), spec, received_at=received_at, bounds=bounds)
    if rejection is not None:
        return rejection
    return Decoded(topic, (parsed,), _unknown((parsed,), spec))


def _by_shape(
    topic: Topic, payload: bytes, spec: KindSpec, subtype: str | None
) -> Decoded | Rejection | None:
    """What the size, the channel and the subtype decide before any parsing."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Rejection(
            Reason.OVERSIZED, f"{len(payload)} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit"
        )
    if topic.channel is Channel.STATUS and payload.lstrip()[:1] == b"[":
        return Rejection(Reason.SCHEMA, "status payload: must be one object, not an array")
    if topic.channel is Channel.STATUS and not payload.strip():
        return Decoded(topic, ())  # a retained status cleared (MQTT's empty retained message)
    if (
        topic.channel is Channel.TELEMETRY
        and subtype is not None
        and spec.subtype_metrics.get(subtype) == ()
    ):
        return Rejection(
            Reason.SCHEMA,
            f"a {topic.kind} {subtype} sends events and status only, not telemetry",
        )
    return None


def _decode_array(
    topic: Topic, payload: bytes, *, received_at: dt.datetime, bounds: Bounds
) -> Decoded | Rejection:
    """A gateway's batch: every element validated on its own."""
    try:
        items = _ANY_LIST.validate_json(payload)
    except ValidationError as err:
        return _rejection(err, topic.channel)
    if not 1 <= len(items) <= MAX_BATCH:
        return Rejection(
            Reason.SCHEMA,
            f"{topic.channel} payload: an array of 1 to {MAX_BATCH} objects, not {len(items)}",
        )
    spec = KINDS[topic.kind]
    model = _OBJECT[topic.channel]
    good: list[Any] = []
    bad: list[tuple[int, Rejection, bytes]] = []
    for i, item in enumerate(items):
        element = _element_json(item)
        try:
            record = model.validate_python(item)
        except ValidationError as err:
            bad.append((i, _rejection(err, topic.channel, f"element {i}: "), element))
            continue
        rejection = _check_records((record,), spec, received_at=received_at, bounds=bounds)
        if rejection is not None:
            bad.append(
                (i, Rejection(rejection.reason, f"element {i}: {rejection.detail}"), element)
            )
            continue
        good.append(record)
    if good and _duplicate_keys(payload, good, extra_keys=len(items) - len(good)):
        # (the check counts keys over the whole array: with bad elements it can only say
        # "maybe", and then the slow check decides)
        return Rejection(Reason.DUPLICATE_KEY, "a JSON object repeats a key: send each once")
    if not good:
        first = bad[0][1]
        more = f" (and {len(bad) - 1} more elements)" if len(bad) > 1 else ""
        return Rejection(first.reason, first.detail + more)
    return Decoded(topic, tuple(good), _unknown(good, spec), tuple(bad))


def _element_json(item: object) -> bytes:
    """One array element as JSON on its own (what a dead letter keeps of it)."""
    try:
        return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode(
            "utf-8", "backslashreplace"
        )
    except (ValueError, TypeError):
        return repr(item).encode("utf-8", "backslashreplace")


def _rejection(err: ValidationError, channel: Channel, prefix: str = "") -> Rejection:
    first = err.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return Rejection(Reason.NOT_JSON, f"not UTF-8 JSON: {first['msg']}")
    return Rejection(Reason.SCHEMA, prefix + _schema_detail(err, channel))


def _unknown(records: Sequence[Any], spec: KindSpec) -> tuple[str, ...]:
    unknown = {
        k
        for r in records
        if isinstance(r, TelemetryMessage)
        for k in r.values
        if k not in spec.metrics
    }
    return tuple(sorted(unknown))


def _keys_in(v: object) -> int:
    if isinstance(v, dict):
        return len(v) + sum(_keys_in(x) for x in v.values())
    if isinstance(v, list):
        return sum(_keys_in(x) for x in v)
    return 0


def _record_keys(r: BaseModel) -> int:
    if isinstance(r, TelemetryMessage):  # ts, seq, values: all required
        return 3 + len(r.values)
    n = len(r.model_fields_set)
    if isinstance(r, EventMessage):
        n += _keys_in(r.detail)
    return n


def _duplicate_keys(payload: bytes, records: Sequence[BaseModel], *, extra_keys: int = 0) -> bool:
    """Whether the JSON repeats a key (parsers keep the last one silently).

    Fast path: a key is a string followed by ``":``; when the parsed records hold as many
    keys as the text has such places, no key was dropped. Otherwise (a key written as
    ``"a" :``, a string value containing ``":``, rejected array elements) the text is
    parsed again with every key kept, and that decides."""
    places = payload.count(b'":')
    if not extra_keys and places == sum(_record_keys(r) for r in records):
        return False
    seen_twice = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal seen_twice
        if len({k for k, _ in items}) != len(items):
            seen_twice = True
        return dict(items)

    try:
        json.loads(payload, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return False  # the strict parser already accepted it; not a duplicate question
    return seen_twice


def _check_records(
    records: tuple[Any, ...], spec: KindSpec, *, received_at: dt.datetime, bounds: Bounds
) -> Rejection | None:
    """Rules that need the time of receipt or the kind's vocabulary."""
    lo, hi = received_at - bounds.past, received_at + bounds.future
    bools, numbers = _TYPED[spec.kind]
    for r in records:
        if isinstance(r, TelemetryMessage):
            for k, v in r.values.items():  # per value: the hot path, kept lean
                if (k in numbers) if v.__class__ is bool else (k in bools):
                    return _wrong_types(r.values, spec)
        ts = r.ts
        if ts is not None and not lo <= ts <= hi:
            return Rejection(
                Reason.TS_OUT_OF_BOUNDS,
                f"ts {ts.isoformat()} is outside [{lo.isoformat()}, {hi.isoformat()}] "
                "(check the device clock)",
            )
        if isinstance(r, EventMessage) and r.code not in spec.events:
            return Rejection(
                Reason.UNKNOWN_EVENT,
                f"event code {r.code!r} is not in the {spec.kind} vocabulary "
                f"({', '.join(spec.events)})",
            )
    return None


def _type_name(v: float | bool) -> str:
    return "true/false" if isinstance(v, bool) else "a number"


def _wrong_types(values: dict[str, float | bool], spec: KindSpec) -> Rejection:
    wrong = [
        f"{k} is a {spec.metrics[k].type}, not {_type_name(v)}"
        for k, v in values.items()
        if k in spec.metrics and (spec.metrics[k].type == "boolean") != isinstance(v, bool)
    ]
    return Rejection(Reason.SCHEMA, "telemetry payload: values: " + "; ".join(wrong))


# per kind: its boolean metrics and its number metrics
_TYPED: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    k.kind: (
        frozenset(m.name for m in k.metrics.values() if m.type == "boolean"),
        frozenset(m.name for m in k.metrics.values() if m.type == "number"),
    )
    for k in KINDS.values()
}


# --------------------------------------------------------------------------- encoding


def format_ts(ts: dt.datetime, *, style: Literal["rfc3339", "epoch_ms"] = "rfc3339") -> str | int:
    """A timestamp as devices send it."""
    if ts.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    if style == "epoch_ms":
        return round(ts.timestamp() * 1000)
    return ts.isoformat(timespec="milliseconds")


def telemetry(
    ts: dt.datetime,
    seq: int,
    values: dict[str, float | bool],
    *,
    ts_style: Literal["rfc3339", "epoch_ms"] = "rfc3339",
) -> dict[str, Any]:
    return {"ts": format_ts(ts, style=ts_style), "seq": seq, "values": values}


def event(
    ts: dt.datetime,
    seq: int,
    code: str,
    detail: dict[str, Any] | None = None,
    *,
    ts_style: Literal["rfc3339", "epoch_ms"] = "rfc3339",
) -> dict[str, Any]:
    return {"ts": format_ts(ts, style=ts_style), "seq": seq, "code": code, "detail": detail or {}}


def status(online: bool, ts: dt.datetime | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"online": online}
    if ts is not None:
        out["ts"] = format_ts(ts)
    return out


def dumps(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- documentation


def markdown() -> str:
    """The vocabularies as Markdown tables (docs/contract.md embeds this; a test keeps it equal)."""
    out: list[str] = []
    for spec in KINDS.values():
        out.append(f"**{spec.kind}** metrics\n")
        out.append("| metric | unit | type | meaning |")
        out.append("|---|---|---|---|")
        out += [
            f"| `{m.name}` | {m.unit or '—'} | {m.type} | {m.zh} {m.en} |"
            for m in spec.metrics.values()
        ]
        out.append("")
        out.append("| subtype | sends |")
        out.append("|---|---|")
        out += [
            f"| `{sub}` | {', '.join(f'`{m}`' for m in ms) or 'events and status only'} |"
            for sub, ms in spec.subtype_metrics.items()
        ]
        out.append("")
        out.append(
            f"**{spec.kind}** events: "
            + ", ".join(f"`{e.code}` ({e.zh})" for e in spec.events.values())
        )
        out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
