"""Warning (预警): rules over each device's stream turn readings into alert changes.

``Warner.observe`` takes one committed batch (readings, events, status changes) and
``Warner.tick`` the passing of time (``for`` durations held without new readings,
auto-clear, silence, sliding count windows). Both return ``Change``s: raise, repeat,
severity, clear. Time is always passed in (epoch seconds): device time for what a
reading says, receipt time (``now``) for silence and ticks.

State is per (rule, device), small and JSON-able (``snapshot``/``restore``), so a
restarted worker resumes a running ``for`` duration instead of starting it again. Rate
rules are fitted once per batch per device (numpy least squares), not per reading.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from alerts.rules import (
    AbsenceRule,
    ConditionRule,
    CountRule,
    EventRule,
    Param,
    RateRule,
    Rule,
    RuleBook,
    Severity,
    Test,
    ThresholdRule,
    Value,
)
from ingest.batch import BOOL_COLUMNS

EVIDENCE_READINGS = 10  # readings kept as evidence per (rule, device)
Scalar = float | bool


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    id: int
    estate: str
    building: str | None
    code: str
    kind: str
    subtype: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reading:
    device_id: int
    ts: float
    values: dict[str, Scalar]


@dataclass(frozen=True, slots=True)
class Event:
    device_id: int
    ts: float
    code: str


@dataclass(slots=True)
class Parked:
    """An event whose rule reads telemetry (``when``) that did not hold on what was known
    when the event arrived, while the device's readings up to the event's time may still
    be on their way (events take a faster path than telemetry). ``values``: the device's
    values as of the event, as far as seen (readings up to ``seen_to``)."""

    rule: EventRule
    event: Event
    values: dict[str, Scalar]
    seen_to: float
    parked_at: float  # receipt time, for the expiry


# how long (receipt time) an event waits for the readings that precede it
PARK_S = 30.0


@dataclass(frozen=True, slots=True)
class Status:
    device_id: int
    ts: float
    online: bool


ChangeKind = Literal["raise", "repeat", "severity", "clear"]


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    rule_id: str
    alert: str
    device_id: int
    severity: Severity
    at: float
    evidence: dict[str, Any]
    since: float | None = None  # a raise held for ``for_s``: when its condition began


@dataclass(slots=True)
class RuleState:
    """One rule's memory of one device."""

    active: int = 0  # the severity raised, 0 when not raised
    pending: int = 0  # severity waiting out its `for` duration
    since: float | None = None  # when the condition began to hold
    last_ts: float = -math.inf  # newest reading evaluated (older ones are late: skipped)
    last_event: float | None = None  # event rules: when it last fired
    points: list[tuple[float, float]] = field(default_factory=list)  # rate: (ts, value)
    times: list[float] = field(default_factory=list)  # count: event times
    evidence: list[dict[str, Any]] = field(default_factory=list)


class HoldArrays:
    """One threshold or condition rule's state over every device slot, as compact arrays:
    the raised severity, the severity waiting out ``for_s``, since when (NaN: not
    pending) and the newest reading evaluated."""

    __slots__ = ("active", "last_ts", "pending", "since")

    def __init__(self, n: int) -> None:
        self.active = np.zeros(n, np.int8)
        self.pending = np.zeros(n, np.int8)
        self.since = np.full(n, np.nan)
        self.last_ts = np.full(n, -np.inf)

    def grow(self, n: int) -> None:
        extra = n - len(self.active)
        if extra <= 0:
            return
        self.active = np.concatenate([self.active, np.zeros(extra, np.int8)])
        self.pending = np.concatenate([self.pending, np.zeros(extra, np.int8)])
        self.since = np.concatenate([self.since, np.full(extra, np.nan)])
        self.last_ts = np.concatenate([self.last_ts, np.full(extra, -np.inf)])

    def get(self, slot: int, evidence: list[dict[str, Any]]) -> RuleState:
        since = float(self.since[slot])
        return RuleState(
            active=int(self.active[slot]),
            pending=int(self.pending[slot]),
            since=None if math.isnan(since) else since,
            last_ts=float(self.last_ts[slot]),
            evidence=evidence,
        )

    def put(self, slot: int, st: RuleState) -> None:
        self.active[slot], self.pending[slot] = st.active, st.pending
        self.since[slot] = np.nan if st.since is None else st.since
        self.last_ts[slot] = st.last_ts


def _resolve(v: Value, params: dict[str, Any]) -> float:
    if isinstance(v, Param):
        raw = params.get(v.param, v.default)
        try:
            return float(raw)
        except (TypeError, ValueError):
            return v.default
    return float(v)


def _threshold_level(rule: ThresholdRule, value: float, active: int, params: dict[str, Any]) -> int:
    """Highest severity whose level the value crosses; hysteresis holds a raised level."""
    best = 0
    for lv in rule.levels:
        sev = Severity.parse(lv.severity)
        held = active >= sev  # once raised at this level, clear only past the hysteresis
        if lv.above is not None:
            limit = _resolve(lv.above, params) - (rule.hysteresis if held else 0.0)
            hit = value > limit
        else:
            assert lv.below is not None
            limit = _resolve(lv.below, params) + (rule.hysteresis if held else 0.0)
            hit = value < limit
        if hit:
            best = max(best, int(sev))
    return best


def _test(t: Test, values: dict[str, Scalar]) -> bool | None:
    """True/False, or None when the metric has never been reported."""
    v = values.get(t.metric)
    if v is None:
        return None
    if t.eq is not None:
        return v == t.eq
    if t.above is not None:
        return float(v) > t.above
    if t.below is not None:
        return float(v) < t.below
    assert t.not_in is not None
    return float(v) not in t.not_in


def _test_array(
    t: Test, v: np.ndarray[Any, np.dtype[np.float64]]
) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """``_test`` over a column (booleans as 1.0/0.0, NaN unknown: never true)."""
    known = ~np.isnan(v)
    with np.errstate(invalid="ignore"):
        if t.eq is not None:
            hit = v == float(t.eq)
        elif t.above is not None:
            hit = v > t.above
        elif t.below is not None:
            hit = v < t.below
        else:
            assert t.not_in is not None
            hit = ~np.isin(v, t.not_in)
    out: np.ndarray[Any, np.dtype[np.bool_]] = known & hit
    return out


def _same_shape(a: Rule, b: Rule) -> bool:
    """Whether two variants of a rule (overrides) can share one vectorised evaluation."""
    if isinstance(a, ThresholdRule) and isinstance(b, ThresholdRule):
        return a.metric == b.metric and [(lv.severity, lv.above is None) for lv in a.levels] == [
            (lv.severity, lv.above is None) for lv in b.levels
        ]
    if isinstance(a, ConditionRule) and isinstance(b, ConditionRule):
        return a.all == b.all
    return False


class _Batch:
    """One batch's readings as columns, sorted by (device, time), with per-device groups."""

    def __init__(
        self,
        rs: Sequence[Reading],
        slots: dict[int, int],
        latest: dict[int, dict[str, Scalar]],
    ) -> None:
        self.rs, self.n = rs, len(rs)
        dev = np.fromiter((r.device_id for r in rs), np.int64, self.n)
        self.order = np.lexsort((np.fromiter((r.ts for r in rs), np.float64, self.n), dev))
        self.ts = np.fromiter((rs[i].ts for i in self.order), np.float64, self.n)
        dev = dev[self.order]
        self.starts = np.flatnonzero(np.r_[True, dev[1:] != dev[:-1]])
        self.ends = np.r_[self.starts[1:], self.n]
        self.groups = len(self.starts)
        self.group = np.repeat(np.arange(self.groups), self.ends - self.starts)
        self.group_dev = dev[self.starts]
        self.group_devs: list[int] = self.group_dev.tolist()
        self.group_slot = np.fromiter((slots[d] for d in self.group_devs), np.int64)
        self._latest = latest
        self._columns: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}
        self._filled: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}

    def column(self, metric: str) -> np.ndarray[Any, np.dtype[np.float64]]:
        """The metric as each reading carries it (NaN where it does not)."""
        col = self._columns.get(metric)
        if col is None:
            col = np.fromiter(
                (self.rs[i].values.get(metric, math.nan) for i in self.order),
                np.float64,
                self.n,
            )
            self._columns[metric] = col
        return col

    def filled(self, metric: str) -> np.ndarray[Any, np.dtype[np.float64]]:
        """The device's newest value of the metric as of each reading: forward-filled
        within each device, starting from its value before the batch."""
        col = self._filled.get(metric)
        if col is None:
            v = self.column(metric).copy()
            seeds = np.fromiter(
                (_seed(self._latest.get(d, {}).get(metric)) for d in self.group_devs),
                np.float64,
                self.groups,
            )
            first = v[self.starts]
            v[self.starts] = np.where(np.isnan(first), seeds, first)
            idx = np.where(np.isnan(v), 0, np.arange(self.n))
            idx[self.starts] = self.starts
            np.maximum.accumulate(idx, out=idx)
            col = self._filled[metric] = v[idx]
        return col

    def value(self, metric: str, i: int) -> Scalar | None:
        """Row ``i``'s filled value as the rules see it (a boolean metric as a bool)."""
        x = float(self.filled(metric)[i])
        if math.isnan(x):
            return None
        return bool(x) if metric in BOOL_COLUMNS else x


def _seed(v: Scalar | None) -> float:
    return math.nan if v is None else float(v)


def fit(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares line through (ts, value): (slope per second, fitted value at the end)."""
    arr = np.asarray(points, dtype=np.float64)
    t = arr[:, 0] - arr[-1, 0]
    slope, intercept = np.polyfit(t, arr[:, 1], 1)
    return float(slope), float(intercept)


@dataclass(frozen=True)
class Typed:
    """A device's rules sorted by what drives them, in the rule book's order: readings
    (threshold, condition, rate), events (event and count rules), status (absence)."""

    threshold: list[ThresholdRule]
    condition: list[ConditionRule]
    rate: list[RateRule]
    on_event: list[EventRule | CountRule]
    absence: list[AbsenceRule]

    @classmethod
    def of(cls, rules: Iterable[Rule]) -> Typed:
        out = cls([], [], [], [], [])
        for r in rules:
            getattr(out, _BUCKET[type(r)]).append(r)
        return out


# Each rule type's bucket in ``Typed``: a new rule type is one row here and one evaluator
# in the tables at the end of the module, not another isinstance branch.
_BUCKET: dict[type[Any], str] = {
    ThresholdRule: "threshold",
    ConditionRule: "condition",
    RateRule: "rate",
    EventRule: "on_event",
    CountRule: "on_event",
    AbsenceRule: "absence",
}


class Warner:
    """The rule engine for the devices one worker owns."""

    def __init__(self, book: RuleBook, devices: Iterable[DeviceInfo]) -> None:
        self.book = book
        self.devices: dict[int, DeviceInfo] = {}
        self._rules: dict[int, list[Rule]] = {}
        self._typed: dict[int, Typed] = {}
        self.state: dict[int, dict[str, RuleState]] = {}  # device -> rule id -> state
        self.latest: dict[int, dict[str, Scalar]] = {}
        self.latest_ts: dict[int, float] = {}  # the newest reading evaluated, per device
        self.parked: dict[int, list[Parked]] = {}
        self._now = 0.0  # receipt time of the batch being observed
        self.last_seen: dict[int, float] = {}
        self.offline: set[int] = set()  # devices whose absence alert is raised
        # threshold and condition rules: state in arrays indexed by device slot
        self._slot: dict[int, int] = {}
        self._slot_dev: list[int] = []
        self.holds: dict[str, HoldArrays] = {}
        self.hold_evidence: dict[tuple[str, int], list[dict[str, Any]]] = {}
        # devices whose state changed meaningfully since the last snapshot (not the mere
        # passing of normal readings, which would make every checkpoint save everything)
        self.touched: set[int] = set()
        self.set_devices(devices)

    def set_devices(self, devices: Iterable[DeviceInfo]) -> None:
        """Take a new registry view (new devices, changed parameters); keeps state."""
        self.devices = {d.id: d for d in devices}
        self._rules = {}
        self._typed = {}
        for dev in self.devices:
            self._slot_of(dev)

    def _slot_of(self, dev: int) -> int:
        slot = self._slot.get(dev)
        if slot is None:
            slot = self._slot[dev] = len(self._slot_dev)
            self._slot_dev.append(dev)
            for hs in self.holds.values():
                hs.grow(len(self._slot_dev))
        return slot

    @property
    def _hold_ids(self) -> set[str]:
        return {r.id for r in self.book.rules if type(r) in _LEVELS}

    def _hold_arrays(self, rule_id: str) -> HoldArrays:
        hs = self.holds.get(rule_id)
        if hs is None:
            hs = self.holds[rule_id] = HoldArrays(len(self._slot_dev))
        return hs

    def rules_for(self, device_id: int) -> list[Rule]:
        rules = self._rules.get(device_id)
        if rules is None:
            d = self.devices[device_id]
            rules = [
                r
                for r in self.book.for_device(d.estate, d.code)
                if r.kind == d.kind and (r.subtypes is None or d.subtype in r.subtypes)
            ]
            self._rules[device_id] = rules
        return rules

    def _st(self, rule: Rule, device_id: int) -> RuleState:
        states = self.state.get(device_id)
        if states is None:
            states = self.state[device_id] = {}
        st = states.get(rule.id)
        if st is None:
            st = states[rule.id] = RuleState()
        return st

    # ------------------------------------------------------------------ transitions
    def _hold(
        self,
        rule: Rule,
        dev: int,
        st: RuleState,
        *,
        level: int,
        at: float,
        for_s: float,
        evidence: dict[str, Any],
    ) -> Change | None:
        """The common state machine: pending for ``for_s``, then raised; severity moves;
        cleared when the level drops to 0."""
        self.touched.add(dev)
        if level == 0:
            st.pending, st.since = 0, None
            if st.active:
                sev = Severity(st.active)
                st.active = 0
                return Change("clear", rule.id, rule.alert, dev, sev, at, evidence)
            return None
        if st.active:
            if level != st.active:
                st.active = level
                return Change("severity", rule.id, rule.alert, dev, Severity(level), at, evidence)
            return None
        if st.since is None:
            st.since = at
        st.pending = level
        if at - st.since >= for_s:
            st.active, st.pending = level, 0
            return Change(
                "raise", rule.id, rule.alert, dev, Severity(level), at, evidence, st.since
            )
        return None

    def _remember(self, st: RuleState, ts: float, values: dict[str, Scalar]) -> None:
        st.evidence.append({"ts": ts, **values})
        del st.evidence[:-EVIDENCE_READINGS]

    # ------------------------------------------------------------------ batches
    def observe(
        self,
        readings: Sequence[Reading],
        events: Sequence[Event],
        statuses: Sequence[Status],
        *,
        now: float,
    ) -> list[Change]:
        """Evaluate one committed batch; ``now`` is when it was received."""
        out: list[Change] = []
        for dev in (
            {r.device_id for r in readings}
            | {e.device_id for e in events}
            | {s.device_id for s in statuses}
        ):
            if dev in self.devices:
                self.last_seen[dev] = now
        self._now = now
        out += self._statuses(statuses, now)
        out += self._readings(readings)
        out += self._events(events)
        return out

    def typed(self, dev: int) -> Typed:
        """The device's rules by what drives them (cached with ``rules_for``)."""
        cached = self._typed.get(dev)
        if cached is None:
            cached = self._typed[dev] = Typed.of(self.rules_for(dev))
        return cached

    def _readings(self, readings: Sequence[Reading]) -> list[Change]:
        rs = [r for r in sorted(readings, key=lambda r: r.ts) if r.device_id in self.devices]
        out = self._holds_batch(rs)  # before `latest` moves: it seeds the batch
        rate_devices: set[int] = set()
        if self.parked:
            out += self._unpark(rs)
        for r in rs:
            self.latest.setdefault(r.device_id, {}).update(r.values)
            if r.ts > self.latest_ts.get(r.device_id, -math.inf):
                self.latest_ts[r.device_id] = r.ts
            for rr in self.typed(r.device_id).rate:
                if self._rate_point(rr, r):
                    rate_devices.add(r.device_id)
        # rate rules: one fit per device per batch, on everything the batch added
        for dev in rate_devices:
            for rr in self.typed(dev).rate:
                ch = self._rate(rr, dev)
                if ch is not None:
                    out.append(ch)
        return out

    def _holds_batch(self, rs: Sequence[Reading]) -> list[Change]:
        """Threshold and condition rules over a whole batch with numpy.

        Most devices are normal with nothing pending: one vectorised pass proves it for
        each rule and only moves their ``last_ts``. The others ("loud": a level is hit, or
        something is pending or raised) go through the sequential state machine reading
        by reading, exactly as a per-reading engine would.
        """
        by_rule: dict[str, dict[int, ThresholdRule | ConditionRule]] = {}
        for dev in {r.device_id for r in rs}:
            typed = self.typed(dev)
            hold_rules: list[ThresholdRule | ConditionRule] = [*typed.threshold, *typed.condition]
            for rule in hold_rules:
                by_rule.setdefault(rule.id, {})[dev] = rule
        if not by_rule:
            return []
        b = _Batch(rs, self._slot, self.latest)
        out: list[Change] = []
        for rule_id, variants in by_rule.items():
            out += self._hold_rule(b, rule_id, variants)
        return out

    def _hold_rule(
        self, b: _Batch, rule_id: str, variants: dict[int, ThresholdRule | ConditionRule]
    ) -> list[Change]:
        hs = self._hold_arrays(rule_id)
        first = next(iter(variants.values()))
        per_group = [variants.get(d) for d in b.group_devs]
        applies = np.fromiter((v is not None for v in per_group), bool, b.groups)
        # Without overrides every device shares the rule object itself; a device whose
        # override changed the rule's shape is always evaluated one by one ("odd").
        shared = np.fromiter((v is first for v in per_group), bool, b.groups)
        odd = np.zeros(b.groups, bool)
        for g in np.flatnonzero(applies & ~shared):
            v = per_group[g]
            odd[g] = v is None or not _same_shape(v, first)
        regular = applies & ~odd
        has, level = _LEVELS[type(first)](self, b, first, per_group, regular)
        has &= applies[b.group]
        any_has = np.logical_or.reduceat(has, b.starts)
        top = np.maximum.reduceat(np.where(has, level, 0), b.starts)
        slots = b.group_slot
        busy = (hs.active[slots] > 0) | (hs.pending[slots] > 0)
        loud = applies & any_has & ((top > 0) | busy | odd)
        quiet = applies & any_has & ~loud
        newest = np.maximum.reduceat(np.where(has, b.ts, -np.inf), b.starts)
        qs = slots[quiet]
        hs.last_ts[qs] = np.maximum(hs.last_ts[qs], newest[quiet])
        out: list[Change] = []
        for g in np.flatnonzero(loud):
            rule = per_group[g]
            assert rule is not None
            out += self._hold_sequential(b, int(g), hs, rule)
        return out

    def _threshold_levels(
        self,
        b: _Batch,
        first: ThresholdRule,
        per_group: list[ThresholdRule | ConditionRule | None],
        regular: np.ndarray[Any, np.dtype[np.bool_]],
    ) -> tuple[np.ndarray[Any, np.dtype[np.bool_]], np.ndarray[Any, np.dtype[np.int8]]]:
        """Rows carrying the metric, and each row's level (no hysteresis: only devices
        with nothing raised can be quiet)."""
        col = b.column(first.metric)
        has = ~np.isnan(col)
        level = np.zeros(b.n, np.int8)
        for i, lv in enumerate(first.levels):
            side = lv.above if lv.above is not None else lv.below
            if isinstance(side, float) and all(v is first or v is None for v in per_group):
                limit: Any = side  # one number for every device: no per-device lookup
            else:
                limits = np.full(b.groups, np.nan)
                for g in np.flatnonzero(regular):
                    v = per_group[g]
                    assert isinstance(v, ThresholdRule)
                    vside = v.levels[i].above if lv.above is not None else v.levels[i].below
                    assert vside is not None
                    limits[g] = _resolve(vside, self.devices[b.group_devs[g]].params)
                limit = limits[b.group]
            with np.errstate(invalid="ignore"):
                hit = col > limit if lv.above is not None else col < limit
            level = np.where(hit, np.maximum(level, int(Severity.parse(lv.severity))), level)
        return has, level.astype(np.int8)

    def _condition_levels(
        self,
        b: _Batch,
        first: ConditionRule,
        per_group: list[ThresholdRule | ConditionRule | None],
        regular: np.ndarray[Any, np.dtype[np.bool_]],
    ) -> tuple[np.ndarray[Any, np.dtype[np.bool_]], np.ndarray[Any, np.dtype[np.int8]]]:
        """Rows carrying any of the metrics, and whether all tests hold on the device's
        newest values at that row (forward-filled, seeded from before the batch)."""
        has = np.zeros(b.n, bool)
        holds = np.ones(b.n, bool)
        for t in first.all:
            has |= ~np.isnan(b.column(t.metric))
            holds &= _test_array(t, b.filled(t.metric))
        base = int(Severity.parse(first.severity))
        severity = np.where(regular, base, 0).astype(np.int8)
        for g in np.flatnonzero(regular):  # overrides may change a device's severity
            v = per_group[g]
            if v is not first and v is not None:
                severity[g] = int(Severity.parse(v.severity))
        return has, np.where(holds, severity[b.group], 0).astype(np.int8)

    def _hold_sequential(
        self, b: _Batch, g: int, hs: HoldArrays, rule: ThresholdRule | ConditionRule
    ) -> list[Change]:
        dev, slot = b.group_devs[g], int(b.group_slot[g])
        key = (rule.id, dev)
        st = hs.get(slot, self.hold_evidence.get(key, []))
        out: list[Change] = []
        for i in range(int(b.starts[g]), int(b.ends[g])):
            r = b.rs[int(b.order[i])]
            ch = _STEP[type(rule)](self, b, i, rule, st, r)
            if ch is not None:
                out.append(ch)
        hs.put(slot, st)
        self.hold_evidence[key] = st.evidence
        return out

    def _events(self, events: Sequence[Event]) -> list[Change]:
        out: list[Change] = []
        for e in sorted(events, key=lambda e: e.ts):
            if e.device_id not in self.devices:
                continue
            for rule in self.typed(e.device_id).on_event:
                ch = _ON_EVENT[type(rule)](self, rule, e)
                if ch is not None:
                    out.append(ch)
        return out

    def _fresh(self, rule: Rule, r: Reading) -> RuleState | None:
        """The rule's state, or None for a reading older than what it already evaluated
        (a late or redelivered reading: the state has moved past it)."""
        st = self._st(rule, r.device_id)
        return None if r.ts <= st.last_ts else st

    def _rate_point(self, rule: RateRule, r: Reading) -> bool:
        v = r.values.get(rule.metric)
        st = self._fresh(rule, r)
        if st is None or v is None or isinstance(v, bool):
            return False
        st.last_ts = r.ts
        self.touched.add(r.device_id)
        st.points.append((r.ts, float(v)))
        cutoff = r.ts - rule.window_s
        while st.points and st.points[0][0] < cutoff:
            st.points.pop(0)
        return True

    def _threshold(self, rule: ThresholdRule, st: RuleState, r: Reading) -> Change | None:
        """One reading through a threshold rule (the sequential reference)."""
        v = r.values.get(rule.metric)
        if r.ts <= st.last_ts or v is None or isinstance(v, bool):
            return None  # late, redelivered, or not about this metric
        st.last_ts = r.ts
        level = _threshold_level(rule, float(v), st.active, self.devices[r.device_id].params)
        return self._step(rule, st, r, level, {rule.metric: v})

    def _condition(
        self, rule: ConditionRule, st: RuleState, r: Reading, latest: dict[str, Scalar]
    ) -> Change | None:
        """One reading through a condition rule, ``latest`` being the device's newest
        values as of this reading (the sequential reference)."""
        if r.ts <= st.last_ts or not any(t.metric in r.values for t in rule.all):
            return None
        st.last_ts = r.ts
        holds = all(_test(t, latest) is True for t in rule.all)
        level = int(Severity.parse(rule.severity)) if holds else 0
        seen = {t.metric: latest[t.metric] for t in rule.all if t.metric in latest}
        return self._step(rule, st, r, level, seen)

    def _step(
        self,
        rule: ThresholdRule | ConditionRule,
        st: RuleState,
        r: Reading,
        level: int,
        seen: dict[str, Scalar],
    ) -> Change | None:
        """A reading's level through the hold state machine, keeping it as evidence
        unless nothing is happening (normal, nothing pending or raised)."""
        if not (level or st.active or st.pending):
            return None
        self._remember(st, r.ts, seen)
        return self._hold(
            rule,
            r.device_id,
            st,
            level=level,
            at=r.ts,
            for_s=rule.for_s,
            evidence={"readings": list(st.evidence)},
        )

    def _rate(self, rule: RateRule, dev: int) -> Change | None:
        st = self._st(rule, dev)
        if len(st.points) < rule.min_points:
            return None
        slope, now_value = fit(st.points)
        per_min = slope * 60
        hit = False
        eta: float | None = None
        if rule.slope_per_min is not None:
            hit = (
                per_min <= rule.slope_per_min
                if rule.slope_per_min < 0
                else per_min >= rule.slope_per_min
            )
        if rule.limit is not None and rule.horizon_s is not None:
            limit = _resolve(rule.limit, self.devices[dev].params)
            gap = limit - now_value
            if gap == 0 or (slope != 0 and gap / slope >= 0):
                eta = 0.0 if gap == 0 else gap / slope
                hit = hit or eta <= rule.horizon_s
        level = int(Severity.parse(rule.severity)) if hit else 0
        step = max(1, len(st.points) // 20)
        evidence = {
            "slope_per_min": round(per_min, 6),
            "fitted_now": round(now_value, 6),
            "eta_s": None if eta is None else round(eta, 1),
            "window": [{"ts": t, rule.metric: v} for t, v in st.points[::step]],
        }
        return self._hold(
            rule, dev, st, level=level, at=st.points[-1][0], for_s=0.0, evidence=evidence
        )

    def _count(self, rule: CountRule, e: Event) -> Change | None:
        if e.code not in rule.codes:
            return None
        st = self._st(rule, e.device_id)
        self.touched.add(e.device_id)
        sev = Severity.parse(rule.severity)
        st.times = [t for t in st.times if t > e.ts - rule.window_s] + [e.ts]
        evidence = {"event": {"ts": e.ts, "code": e.code}, "events_in_window": len(st.times)}
        if len(st.times) < rule.count:
            return None
        kind: ChangeKind = "repeat" if st.active else "raise"
        st.active = int(sev)
        return Change(kind, rule.id, rule.alert, e.device_id, sev, e.ts, evidence)

    def _event(self, rule: EventRule, e: Event) -> Change | None:
        if e.code not in rule.codes and e.code not in rule.clear_codes:
            return None
        if e.code in rule.codes and rule.when:
            latest = self.latest.get(e.device_id, {})
            if not all(_test(t, latest) is True for t in rule.when):
                seen_to = self.latest_ts.get(e.device_id, -math.inf)
                if seen_to < e.ts:  # readings up to the event may still be coming
                    self.parked.setdefault(e.device_id, []).append(
                        Parked(rule, e, dict(latest), seen_to, self._now)
                    )
                return None
        if e.code in rule.clear_codes:
            self._unpark_rule(e.device_id, rule.id, before=e.ts)
        return self._fire(rule, e)

    def _unpark(self, rs: Sequence[Reading]) -> list[Change]:
        """Readings (in device-time order) that reach parked events: one up to the event's
        time updates what was true then, and the event fires once its rule holds; one
        past it means the whole picture before the event was seen: it did not hold."""
        out: list[Change] = []
        for r in rs:
            waiting = self.parked.get(r.device_id)
            if not waiting:
                continue
            for p in list(waiting):
                if r.ts > p.event.ts:
                    waiting.remove(p)
                    continue
                if r.ts <= p.seen_to:
                    continue  # older than what was applied: a redelivery
                p.values.update(r.values)
                p.seen_to = r.ts
                if all(_test(t, p.values) is True for t in p.rule.when):
                    waiting.remove(p)
                    ch = self._fire(p.rule, p.event)
                    if ch is not None:
                        out.append(ch)
            if not waiting:
                del self.parked[r.device_id]
        return out

    def _unpark_rule(self, dev: int, rule_id: str, *, before: float) -> None:
        """A clear code ends the wait of the rule's events older than it."""
        waiting = self.parked.get(dev)
        if waiting:
            waiting[:] = [p for p in waiting if p.rule.id != rule_id or p.event.ts > before]
            if not waiting:
                del self.parked[dev]

    def _fire(self, rule: EventRule, e: Event) -> Change | None:
        """An event of ``rule`` that counts (its ``when`` held): raise, repeat or clear."""
        st = self._st(rule, e.device_id)
        self.touched.add(e.device_id)
        sev = Severity.parse(rule.severity)
        evidence = {"event": {"ts": e.ts, "code": e.code}}
        if e.code in rule.clear_codes:
            st.since, st.pending = None, 0
            was, st.active = st.active, 0
            return (
                Change("clear", rule.id, rule.alert, e.device_id, sev, e.ts, evidence)
                if was
                else None
            )
        st.last_event = e.ts
        if not st.active and rule.for_s:
            # raised only if no clear code arrives within for_s (see tick)
            if st.since is None:
                st.since, st.pending = e.ts, int(sev)
                st.evidence = [evidence["event"]]
            return None
        kind: ChangeKind = "repeat" if st.active else "raise"
        st.active = int(sev)
        return Change(kind, rule.id, rule.alert, e.device_id, sev, e.ts, evidence)

    def _statuses(self, statuses: Sequence[Status], now: float) -> list[Change]:
        out: list[Change] = []
        for s in statuses:
            if s.device_id not in self.devices:
                continue
            for rule in self.typed(s.device_id).absence:
                if rule.on_status_offline and not s.online:
                    ch = self._offline(rule, s.device_id, now, "status")
                    if ch is not None:
                        out.append(ch)
        # anything received (other than an offline status) brings a device back
        back = {d for d in self.offline if self.last_seen.get(d) == now} - {
            s.device_id for s in statuses if not s.online
        }
        for dev in back:
            out += self._online(dev, now)
        return out

    def _offline(self, rule: AbsenceRule, dev: int, at: float, cause: str) -> Change | None:
        st = self._st(rule, dev)
        if st.active:
            return None
        self.touched.add(dev)
        st.active = int(Severity.parse(rule.severity))
        self.offline.add(dev)
        evidence = {"cause": cause, "last_seen": self.last_seen.get(dev)}
        return Change("raise", rule.id, rule.alert, dev, Severity(st.active), at, evidence)

    def _online(self, dev: int, at: float) -> list[Change]:
        self.offline.discard(dev)
        self.touched.add(dev)
        out = []
        for rule in self.typed(dev).absence:
            st = self._st(rule, dev)
            if st.active:
                sev = Severity(st.active)
                st.active = 0
                out.append(Change("clear", rule.id, rule.alert, dev, sev, at, {"back_at": at}))
        return out

    # ------------------------------------------------------------------ time
    def tick(self, now: float) -> list[Change]:
        """What the passing of time alone decides, as of ``now`` (receipt time)."""
        for dev, waiting in list(self.parked.items()):
            waiting[:] = [p for p in waiting if now - p.parked_at < PARK_S]
            if not waiting:
                del self.parked[dev]
        out = self._tick_holds(now)
        for dev, states in self.state.items():
            if dev not in self.devices:
                continue
            for rule in self.rules_for(dev):
                st = states.get(rule.id)
                if st is None or not (st.active or st.since is not None or st.times):
                    continue  # nothing running that time could decide
                ch = self._tick_one(rule, dev, st, now)
                if ch is not None:
                    self.touched.add(dev)
                    out.append(ch)
        for dev, seen in self.last_seen.items():
            if dev in self.offline or dev not in self.devices:
                continue
            for rule in self.typed(dev).absence:
                if rule.silence_s is not None and now - seen >= rule.silence_s:
                    ch = self._offline(rule, dev, now, "silence")
                    if ch is not None:
                        out.append(ch)
        return out

    def _tick_holds(self, now: float) -> list[Change]:
        """A threshold or condition still holding at its last reading raises once its
        time is up although the device sent nothing new; not for a device that is offline
        (its values are stale), except a life-safety rule: a lift that goes silent with
        someone shut inside is the power cut that traps people."""
        out: list[Change] = []
        for rule_id, hs in self.holds.items():
            waiting = (hs.active == 0) & (hs.pending > 0)
            with np.errstate(invalid="ignore"):
                waiting &= now - hs.since >= 0
            for slot in np.flatnonzero(waiting):
                dev = self._slot_dev[int(slot)]
                if dev not in self.devices:
                    continue
                typed = self.typed(dev)
                candidates: list[ThresholdRule | ConditionRule] = [
                    *typed.threshold,
                    *typed.condition,
                ]
                rule = next((r for r in candidates if r.id == rule_id), None)
                since = float(hs.since[slot])
                if rule is None or now - since < rule.for_s:
                    continue
                if dev in self.offline and not self.book.life_safety_alert(rule.alert):
                    continue
                level = int(hs.pending[slot])
                hs.active[slot], hs.pending[slot] = level, 0
                self.touched.add(dev)
                evidence: dict[str, Any] = {
                    "readings": list(self.hold_evidence.get((rule_id, dev), []))
                }
                if dev in self.offline:
                    evidence["device_offline"] = True
                out.append(
                    Change("raise", rule.id, rule.alert, dev, Severity(level), now, evidence, since)
                )
        return out

    def _tick_one(self, rule: Rule, dev: int, st: RuleState, now: float) -> Change | None:
        on_tick = _ON_TICK.get(type(rule))  # threshold and condition rules: _tick_holds
        return None if on_tick is None else on_tick(self, rule, dev, st, now)

    def _tick_count(self, rule: CountRule, dev: int, st: RuleState, now: float) -> Change | None:
        st.times = [t for t in st.times if t > now - rule.window_s]
        if st.active and len(st.times) < rule.count:
            sev = Severity(st.active)
            st.active = 0
            evidence = {"events_in_window": len(st.times)}
            return Change("clear", rule.id, rule.alert, dev, sev, now, evidence)
        return None

    def _step_threshold(
        self, b: _Batch, i: int, rule: ThresholdRule, st: RuleState, r: Reading
    ) -> Change | None:
        return self._threshold(rule, st, r)

    def _step_condition(
        self, b: _Batch, i: int, rule: ConditionRule, st: RuleState, r: Reading
    ) -> Change | None:
        latest = {t.metric: b.value(t.metric, i) for t in rule.all}
        return self._condition(rule, st, r, {m: v for m, v in latest.items() if v is not None})

    def _tick_event(self, rule: EventRule, dev: int, st: RuleState, now: float) -> Change | None:
        sev = Severity.parse(rule.severity)
        expired = (
            st.active
            and rule.auto_clear_s is not None
            and st.last_event is not None
            and now - st.last_event >= rule.auto_clear_s
        )
        if expired:
            st.active = 0
            return Change("clear", rule.id, rule.alert, dev, sev, now, {"auto_clear": True})
        if not st.active and st.since is not None and now - st.since >= rule.for_s:
            since = st.since
            st.active, st.since, st.pending = int(sev), None, 0
            return Change(
                "raise", rule.id, rule.alert, dev, sev, now, {"event": st.evidence[-1]}, since
            )
        return None

    # ------------------------------------------------------------------ checkpoints
    def snapshot(self, devices: Iterable[int]) -> dict[int, dict[str, Any]]:
        """JSON-able state of these devices (for ``restore`` after a restart)."""
        out: dict[int, dict[str, Any]] = {}
        for dev in devices:
            rules = {rule_id: asdict(st) for rule_id, st in self.state.get(dev, {}).items()}
            slot = self._slot.get(dev)
            for rule_id, hs in self.holds.items():
                if slot is None:
                    break
                st = hs.get(slot, self.hold_evidence.get((rule_id, dev), []))
                if st.active or st.pending or st.since is not None or st.evidence:
                    rules[rule_id] = asdict(st)
            out[dev] = {
                "rules": {k: {**v, "last_ts": _finite(v["last_ts"])} for k, v in rules.items()},
                "latest": self.latest.get(dev, {}),
                "last_seen": self.last_seen.get(dev),
                "offline": dev in self.offline,
            }
        return out

    def restore(self, saved: dict[int, dict[str, Any]]) -> None:
        for dev, s in saved.items():
            for rule_id, saved_st in s.get("rules", {}).items():
                st = dict(saved_st)
                st["last_ts"] = -math.inf if st.get("last_ts") is None else st["last_ts"]
                st["points"] = [tuple(p) for p in st.get("points", [])]
                state = RuleState(**st)
                if rule_id in self._hold_ids:
                    self._hold_arrays(rule_id).put(self._slot_of(dev), state)
                    self.hold_evidence[(rule_id, dev)] = state.evidence
                else:
                    self.state.setdefault(dev, {})[rule_id] = state
            self.latest[dev] = dict(s.get("latest", {}))
            if s.get("last_seen") is not None:
                self.last_seen[dev] = float(s["last_seen"])
            if s.get("offline"):
                self.offline.add(dev)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


# One evaluator per rule type and trigger. The engine looks the rule's type up here; the
# vectorised reading path (threshold, condition) has a level function for the whole batch
# and a step function for the devices that need the state machine reading by reading.
_LEVELS: dict[type[Any], Callable[..., tuple[Any, Any]]] = {
    ThresholdRule: Warner._threshold_levels,
    ConditionRule: Warner._condition_levels,
}
_STEP: dict[type[Any], Callable[..., Change | None]] = {
    ThresholdRule: Warner._step_threshold,
    ConditionRule: Warner._step_condition,
}
_ON_EVENT: dict[type[Any], Callable[..., Change | None]] = {
    EventRule: Warner._event,
    CountRule: Warner._count,
}
_ON_TICK: dict[type[Any], Callable[..., Change | None]] = {
    EventRule: Warner._tick_event,
    CountRule: Warner._tick_count,
}
