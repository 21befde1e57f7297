"""Judgment (研判): what the warning engine's changes mean, before anything is stored.

``Judge.judge`` turns ``warn.Change``s (and the batch's raw events, for fire
confirmation) into ``Op``s for ``alerts.store``:

- one open alert per (device, rule): a raise while open is a repeat;
- inhibition (``RuleBook.inhibit``): while a source alert is open, matching targets that
  share its device, building or estate are muted; they are unmuted when it clears;
- silences: alerts matching a silence's matchers within its window are muted;
- flapping: raised ``flapping.raises`` times within ``flapping.window_s``;
- fire confirmation: a fire alarm is ``to_be_confirmed`` until a second detector in its
  building or a confirming event (pump start, flow) in its estate within the window.

Muted alerts are stored (an inspector can see them) but not notified and join no
incident. Grouping into incidents happens in the store, in SQL, where it is atomic.
The judge keeps the open alerts in memory; ``load`` fills it from the database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from alerts.rules import Inhibit, Matcher, RuleBook, Severity
from alerts.warn import Change, DeviceInfo, Event

Key = tuple[int, str]  # (device_id, rule_id)
Confirmation = Literal["to_be_confirmed", "confirmed"]


@dataclass
class OpenAlert:
    device_id: int
    rule_id: str
    alert: str
    severity: Severity
    first_seen: float
    muted_by: str | None = None
    confirmation: Confirmation | None = None

    @property
    def key(self) -> Key:
        return (self.device_id, self.rule_id)


@dataclass(frozen=True)
class Silence:
    id: int
    estate: str
    building: str | None
    device: str | None
    alert: str | None
    starts: float
    ends: float

    def matches(self, d: DeviceInfo, alert: str, at: float) -> bool:
        return (
            self.starts <= at < self.ends
            and d.estate == self.estate
            and self.building in (None, d.building)
            and self.device in (None, d.code)
            and self.alert in (None, alert)
        )


OpKind = Literal["raise", "repeat", "severity", "clear", "mute", "unmute", "confirm"]


@dataclass(frozen=True)
class Op:
    """One thing to store about the alert of ``key``."""

    kind: OpKind
    key: Key
    alert: str
    severity: Severity
    at: float
    evidence: dict[str, object] = field(default_factory=dict)
    muted_by: str | None = None
    confirmation: Confirmation | None = None
    flapping: bool = False


class Judge:
    def __init__(self, book: RuleBook, devices: Iterable[DeviceInfo]) -> None:
        self.book = book
        self.devices = {d.id: d for d in devices}
        self.open: dict[Key, OpenAlert] = {}
        self.silences: list[Silence] = []
        self._raises: dict[Key, list[float]] = {}
        self._confirming: list[tuple[float, str]] = []  # (ts, estate) of confirming events

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

    def _muted_by(self, a: OpenAlert, at: float) -> str | None:
        d = self.devices[a.device_id]
        for s in self.silences:
            if s.matches(d, a.alert, at):
                return f"silence:{s.id}"
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
                kind: OpKind = "mute" if by else "unmute"
                ops.append(Op(kind, a.key, a.alert, a.severity, at, muted_by=by))
        return ops

    # ------------------------------------------------------------------ fire
    def _confirmations(self, a: OpenAlert) -> Confirmation:
        fc = self.book.fire_confirmation
        d = self.devices[a.device_id]
        if fc.second_detector:
            for other in self.open.values():
                od = self.devices.get(other.device_id)
                if (
                    other.alert == fc.alert
                    and other.device_id != a.device_id
                    and od is not None
                    and (od.estate, od.building) == (d.estate, d.building)
                    and abs(other.first_seen - a.first_seen) <= fc.window_s
                ):
                    return "confirmed"
        for ts, estate in self._confirming:
            if estate == d.estate and abs(ts - a.first_seen) <= fc.window_s:
                return "confirmed"
        return "to_be_confirmed"

    def _confirming_events(self, events: Sequence[Event]) -> None:
        fc = self.book.fire_confirmation
        for e in events:
            d = self.devices.get(e.device_id)
            if d is None:
                continue
            for m in fc.events:
                if (
                    d.kind == m.kind
                    and (m.subtypes is None or d.subtype in m.subtypes)
                    and e.code in m.codes
                ):
                    self._confirming.append((e.ts, d.estate))
        newest = max((t for t, _ in self._confirming), default=0.0)
        self._confirming = [(t, e) for t, e in self._confirming if t > newest - fc.window_s]

    def _confirm_pending(self, at: float) -> list[Op]:
        ops: list[Op] = []
        for a in self.open.values():
            if a.confirmation == "to_be_confirmed" and self._confirmations(a) == "confirmed":
                a.confirmation = "confirmed"
                ops.append(Op("confirm", a.key, a.alert, a.severity, at, confirmation="confirmed"))
        return ops

    # ------------------------------------------------------------------ the step
    def judge(self, changes: Sequence[Change], events: Sequence[Event], *, now: float) -> list[Op]:
        """Ops for one batch (or one tick): the changes first, then what they imply."""
        self._confirming_events(events)
        ops: list[Op] = []
        for c in changes:
            op = self._apply(c)
            if op is not None:
                ops.append(op)
        if changes or events:
            ops += self._confirm_pending(now)
            estates = {d.estate for c in changes if (d := self.devices.get(c.device_id))}
            ops += self.remute(now, estates)
        return ops

    def forget(self, keys: Iterable[tuple[int, str]]) -> None:
        """Drop alerts closed behind the engine's back (an operator's false-alarm verdict):
        the next occurrence raises a new alert instead of repeating a closed one."""
        for key in keys:
            self.open.pop(key, None)

    def _apply(self, c: Change) -> Op | None:
        key = (c.device_id, c.rule_id)
        a = self.open.get(key)
        if c.kind == "clear":
            if a is None:
                return None
            del self.open[key]
            return Op("clear", key, c.alert, c.severity, c.at, c.evidence)
        if a is not None:
            if c.kind == "severity":
                a.severity = c.severity
                return Op("severity", key, c.alert, c.severity, c.at, c.evidence)
            return Op("repeat", key, c.alert, a.severity, c.at, c.evidence)
        if c.device_id not in self.devices:
            return None
        a = OpenAlert(c.device_id, c.rule_id, c.alert, c.severity, c.at)
        self.open[key] = a
        if c.alert == self.book.fire_confirmation.alert:
            a.confirmation = self._confirmations(a)
        a.muted_by = self._muted_by(a, c.at)
        raises = [t for t in self._raises.get(key, []) if t > c.at - self.book.flapping.window_s]
        raises.append(c.at)
        self._raises[key] = raises
        return Op(
            "raise",
            key,
            c.alert,
            c.severity,
            c.at,
            c.evidence,
            muted_by=a.muted_by,
            confirmation=a.confirmation,
            flapping=len(raises) >= self.book.flapping.raises,
        )


def epoch(t: dt.datetime) -> float:
    return t.timestamp()
