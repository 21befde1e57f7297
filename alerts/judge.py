"""Judgment (研判): what the warning engine's changes mean, before anything is stored.

``Judge.judge`` turns ``warn.Change``s (and the batch's raw events, for fire
confirmation) into ``Op``s for ``alerts.store``:

- one open alert per (device, alert type): a raise while open is a repeat, and two rules
  for one alert (the controller's trapped event and the trapped pattern in telemetry)
  merge: the first raises, the other adds its evidence; the alert clears when the last
  rule that sees it clears;
- inhibition (``RuleBook.inhibit``): while a source alert is open, matching targets that
  share its device, building or estate are muted; they are unmuted when it clears;
- silences: alerts matching a silence's matchers within its window are muted;
- life safety (``RuleBook.life_safety``): never muted, by inhibition or silence; an
  auto-clear (time passing without news) does not close one, and a fire alarm's reset
  before a person decided it does not either: the alert is *held* (stays open, on the
  board) until a person resolves or decides it;
- correlations (``RuleBook.correlations``): an alert raised from what several devices say
  together (a backflow valve open while the water is high in its estate), from the open
  alerts and each device's newest values;
- flapping: raised ``flapping.raises`` times within ``flapping.window_s``;
- fire confirmation: a fire alarm is ``to_be_confirmed`` until a second detector in its
  building, or a confirming event (pump start, flow) in its building, within the
  window; a device that is silenced for work or left disabled (屏蔽) confirms nothing.

Muted alerts are stored (an inspector can see them) but not notified and join no
incident. Grouping into incidents happens in the store, in SQL, where it is atomic.
The judge keeps the open alerts in memory; ``load`` fills it from the database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from alerts.rules import CountRule, EventRule, Inhibit, Matcher, RuleBook, Severity
from alerts.warn import Change, DeviceInfo, Event

Key = tuple[int, str]  # (device_id, alert type)
Confirmation = Literal["to_be_confirmed", "confirmed"]


@dataclass
class OpenAlert:
    device_id: int
    rule_id: str  # the rule that raised it
    alert: str
    severity: Severity
    first_seen: float
    muted_by: str | None = None
    confirmation: Confirmation | None = None
    life_safety: bool = False
    # the rules that see it now, with the severity each sees (empty: held for a person)
    rules: dict[str, Severity] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.rules:
            self.rules = {self.rule_id: self.severity}

    @property
    def key(self) -> Key:
        return (self.device_id, self.alert)


@dataclass(frozen=True)
class Silence:
    id: int
    estate: str
    building: str | None
    device: str | None
    alert: str | None
    starts: float
    ends: float

    def matches(self, d: DeviceInfo, alert: str | None, at: float) -> bool:
        """Whether it covers ``alert`` on ``d`` at ``at``; ``alert`` None: any work on the
        device (what makes a device's signals untrustworthy for fire confirmation)."""
        return (
            self.starts <= at < self.ends
            and d.estate == self.estate
            and self.building in (None, d.building)
            and self.device in (None, d.code)
            and (alert is None or self.alert in (None, alert))
        )


OpKind = Literal[
    "raise", "repeat", "severity", "clear", "hold", "mute", "unmute", "confirm", "rules"
]


@dataclass(frozen=True)
class Op:
    """One thing to store about the open alert of ``key`` (device, alert type).

    ``rules`` are the rules that see it after this op and ``rule`` the one that caused
    it; ``first_evidence`` is when the first evidence was seen (a condition held for 60 s
    began 60 s before it raised): deadlines count from it."""

    kind: OpKind
    key: Key
    alert: str
    severity: Severity
    at: float
    evidence: dict[str, object] = field(default_factory=dict)
    muted_by: str | None = None
    confirmation: Confirmation | None = None
    flapping: bool = False
    rule: str = ""
    rules: tuple[str, ...] = ()
    life_safety: bool = False
    first_evidence: float | None = None
    latched: bool = False  # only event rules see it: a person closes it


class Judge:
    def __init__(self, book: RuleBook, devices: Iterable[DeviceInfo]) -> None:
        self.book = book
        self.devices = {d.id: d for d in devices}
        self.open: dict[Key, OpenAlert] = {}
        self.silences: list[Silence] = []
        self._raises: dict[Key, list[float]] = {}
        # (ts, estate, building) of confirming events
        self._confirming: list[tuple[float, str, str | None]] = []
        self._event_ids: tuple[RuleBook | None, frozenset[str]] = (None, frozenset())

    @property
    def _event_rules(self) -> frozenset[str]:
        if self._event_ids[0] is not self.book:
            ids = frozenset(r.id for r in self.book.rules if isinstance(r, EventRule | CountRule))
            self._event_ids = (self.book, ids)
        return self._event_ids[1]

    def set_devices(self, devices: Iterable[DeviceInfo]) -> None:
        self.devices = {d.id: d for d in devices}

    def load(self, open_alerts: Iterable[OpenAlert], silences: Iterable[Silence]) -> None:
        self.open = {a.key: a for a in open_alerts}
        self.silences = list(silences)

    # ------------------------------------------------------------------ matching
    def _matches(self, m: Matcher, a: OpenAlert) -> bool:
        d = self.devices.get(a.device_id)
        return (
            d is not None
            and (m.alerts is None or a.alert in m.alerts)
            and (m.kinds is None or d.kind in m.kinds)
            and (m.confirmation is None or a.confirmation == m.confirmation)
        )

    def _same(self, rule: Inhibit, a: OpenAlert, b: OpenAlert) -> bool:
        da, db = self.devices.get(a.device_id), self.devices.get(b.device_id)
        if da is None or db is None:
            return False
        if rule.equal == "device":
            return da.id == db.id
        if rule.equal == "building":
            return da.estate == db.estate and da.building == db.building
        return da.estate == db.estate

    def _estate_of(self, a: OpenAlert) -> str | None:
        d = self.devices.get(a.device_id)
        return None if d is None else d.estate

    def _silenced(self, d: DeviceInfo, alert: str | None, at: float) -> int | None:
        """The silence that covers ``alert`` (or, None, any work) on ``d`` now."""
        return next((s.id for s in self.silences if s.matches(d, alert, at)), None)

    def _muted_by(self, a: OpenAlert, at: float) -> str | None:
        if a.life_safety:
            return None  # nothing mutes a trapped passenger, a fire alarm or flooding
        d = self.devices[a.device_id]
        silence = self._silenced(d, a.alert, at)
        if silence is not None:
            return f"silence:{silence}"
        for rule in self.book.inhibit:
            if not self._matches(rule.target, a):
                continue
            # inhibition never crosses estates: look only at this estate's open alerts
            for src in self.open.values():
                if self._estate_of(src) != d.estate:
                    continue
                if (
                    src.key != a.key
                    and self._matches(rule.source, src)
                    and self._same(rule, src, a)
                ):
                    return f"inhibit:{rule.name}"
        return None

    def remute(self, at: float, estates: set[str] | None = None) -> list[Op]:
        """Bring open alerts' muting up to date (a source came, went or changed, a silence
        began or ended), in ``estates`` or everywhere."""
        ops: list[Op] = []
        for a in self.open.values():
            if estates is not None and self._estate_of(a) not in estates:
                continue
            by = self._muted_by(a, at)
            if by != a.muted_by:
                a.muted_by = by
                ops.append(self._op("mute" if by else "unmute", a, at))
        return ops

    # ------------------------------------------------------------------ fire
    def _out_of_service(self, d: DeviceInfo, at: float) -> bool:
        """A device silenced for work, or left disabled (屏蔽) at the panel: what it says
        confirms nothing (a pump test is not a fire)."""
        if self._silenced(d, None, at) is not None:
            return True
        return any(k[0] == d.id and k[1] == "fire.point_disabled" for k in self.open)

    def _confirmations(self, a: OpenAlert) -> Confirmation:
        fc = self.book.fire_confirmation
        d = self.devices[a.device_id]
        if self._out_of_service(d, a.first_seen):
            return "to_be_confirmed"  # half of a pair that cannot be trusted is no pair
        if fc.second_detector:
            for other in self.open.values():
                od = self.devices.get(other.device_id)
                if (
                    other.alert == fc.alert
                    and other.device_id != a.device_id
                    and od is not None
                    and (od.estate, od.building) == (d.estate, d.building)
                    and abs(other.first_seen - a.first_seen) <= fc.window_s
                    and not self._out_of_service(od, other.first_seen)
                ):
                    return "confirmed"
        for ts, estate, building in self._confirming:
            if (estate, building) == (d.estate, d.building) and abs(
                ts - a.first_seen
            ) <= fc.window_s:
                return "confirmed"
        return "to_be_confirmed"

    def _confirming_events(self, events: Sequence[Event]) -> None:
        fc = self.book.fire_confirmation
        for e in events:
            d = self.devices.get(e.device_id)
            if d is None or self._out_of_service(d, e.ts):
                continue
            for m in fc.events:
                if (
                    d.kind == m.kind
                    and (m.subtypes is None or d.subtype in m.subtypes)
                    and e.code in m.codes
                ):
                    self._confirming.append((e.ts, d.estate, d.building))
        newest = max((c[0] for c in self._confirming), default=0.0)
        self._confirming = [c for c in self._confirming if c[0] > newest - fc.window_s]

    def _confirm_pending(self, at: float) -> list[Op]:
        ops: list[Op] = []
        for a in self.open.values():
            if a.confirmation == "to_be_confirmed" and self._confirmations(a) == "confirmed":
                a.confirmation = "confirmed"
                ops.append(self._op("confirm", a, at))
        return ops

    # ------------------------------------------------------------------ the step
    def judge(
        self,
        changes: Sequence[Change],
        events: Sequence[Event],
        *,
        now: float,
        latest: Mapping[int, Mapping[str, object]] | None = None,
    ) -> list[Op]:
        """Ops for one batch (or one tick): the changes first, then what they imply;
        ``latest`` (each device's newest values) feeds the correlations."""
        self._confirming_events(events)
        ops: list[Op] = []
        for c in changes:
            op = self._apply(c)
            if op is not None:
                ops.append(op)
        if latest is not None and self.book.correlations:
            for c in self._correlate(now, latest):
                op = self._apply(c)
                if op is not None:
                    ops.append(op)
        if changes or events:
            ops += self._confirm_pending(now)
            estates = {d.estate for c in changes if (d := self.devices.get(c.device_id))}
            ops += self.remute(now, estates)
        return ops

    def _correlate(self, now: float, latest: Mapping[int, Mapping[str, object]]) -> list[Change]:
        """Raise or clear each correlation's alert on the devices it watches."""
        out: list[Change] = []
        for cor in self.book.correlations:
            places = set()
            for a in self.open.values():
                d = self.devices.get(a.device_id)
                if a.alert in cor.when_open and d is not None and a.rules:
                    places.add((d.estate, d.building if cor.equal == "building" else None))
            if not places and not any(k[1] == cor.alert for k in self.open):
                continue  # nothing to raise and nothing to clear: the usual case
            sev = Severity.parse(cor.severity)
            for d in self.devices.values():
                if d.kind != cor.device.kind or (
                    cor.device.subtypes is not None and d.subtype not in cor.device.subtypes
                ):
                    continue
                place = (d.estate, d.building if cor.equal == "building" else None)
                values = latest.get(d.id, {})
                holds = place in places and values.get(cor.test.metric) == cor.test.eq
                is_open = (d.id, cor.alert) in self.open
                if holds and not is_open:
                    evidence = {
                        "correlation": cor.name,
                        cor.test.metric: values.get(cor.test.metric),
                    }
                    out.append(Change("raise", cor.rule_id, cor.alert, d.id, sev, now, evidence))
                elif is_open and not holds:
                    out.append(Change("clear", cor.rule_id, cor.alert, d.id, sev, now, {}))
        return out

    def forget(self, keys: Iterable[tuple[int, str]]) -> None:
        """Drop alerts closed behind the engine's back (an operator's false-alarm verdict):
        the next occurrence raises a new alert instead of repeating a closed one."""
        for key in keys:
            self.open.pop(key, None)

    def reraised(self, key: Key, *, at: float, confirmation: str | None) -> None:
        """The store raised a new alert for ``key``: the one the judge knew had been closed
        by a person (a resolved rescue, a false alarm) and the device spoke again."""
        a = self.open.get(key)
        if a is not None:
            a.first_seen = at
            a.confirmation = "to_be_confirmed" if confirmation == "to_be_confirmed" else None

    def _op(
        self,
        kind: OpKind,
        a: OpenAlert,
        at: float,
        evidence: dict[str, object] | None = None,
        *,
        rule: str = "",
        flapping: bool = False,
        first_evidence: float | None = None,
    ) -> Op:
        return Op(
            kind,
            a.key,
            a.alert,
            a.severity,
            at,
            evidence or {},
            muted_by=a.muted_by,
            confirmation=a.confirmation,
            flapping=flapping,
            rule=rule or a.rule_id,
            rules=tuple(sorted(a.rules)),
            life_safety=a.life_safety,
            first_evidence=first_evidence,
            latched=bool(a.rules) and all(r in self._event_rules for r in a.rules),
        )

    def _held(self, a: OpenAlert, c: Change) -> bool:
        """A life-safety alert the device or the clock would close, that a person must
        close instead: an auto-clear, or a reset before anyone decided the fire alarm."""
        return a.life_safety and (
            bool(c.evidence.get("auto_clear")) or a.confirmation == "to_be_confirmed"
        )

    def _clear(self, a: OpenAlert | None, c: Change) -> Op | None:
        if a is None or c.rule_id not in a.rules:
            return None
        del a.rules[c.rule_id]
        if a.rules:  # another rule still sees it
            a.severity = max(a.rules.values())
            return self._op("rules", a, c.at, c.evidence, rule=c.rule_id)
        if self._held(a, c):
            return self._op("hold", a, c.at, c.evidence, rule=c.rule_id)
        del self.open[a.key]
        return self._op("clear", a, c.at, c.evidence, rule=c.rule_id)

    def _apply(self, c: Change) -> Op | None:
        key = (c.device_id, c.alert)
        a = self.open.get(key)
        if c.kind == "clear":
            return self._clear(a, c)
        if a is not None:
            a.rules[c.rule_id] = c.severity
            top = max(a.rules.values())
            kind: OpKind = "severity" if top != a.severity else "repeat"
            a.severity = top
            return self._op(kind, a, c.at, c.evidence, rule=c.rule_id, first_evidence=c.since)
        if c.device_id not in self.devices:
            return None
        a = OpenAlert(
            c.device_id,
            c.rule_id,
            c.alert,
            c.severity,
            c.at if c.since is None else min(c.since, c.at),
            life_safety=self.book.life_safety_alert(c.alert),
        )
        self.open[key] = a
        if c.alert == self.book.fire_confirmation.alert:
            a.confirmation = self._confirmations(a)
        a.muted_by = self._muted_by(a, c.at)
        raises = [t for t in self._raises.get(key, []) if t > c.at - self.book.flapping.window_s]
        raises.append(c.at)
        self._raises[key] = raises
        return self._op(
            "raise",
            a,
            c.at,
            c.evidence,
            flapping=len(raises) >= self.book.flapping.raises,
            first_evidence=a.first_seen,
        )


def epoch(t: dt.datetime) -> float:
    return t.timestamp()
