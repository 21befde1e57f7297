"""The alert stage of the ingest worker: warn and judge each committed batch, store and
publish the outcome. Implements ``ingest.worker.BatchStage``.

It runs after a batch is committed and before it is acknowledged, so a crash in between
makes the broker redeliver the batch and the alerts are evaluated again (the store
counts an already-open alert as a repeat, so nothing is raised twice). Ops that could
not be stored (the database went away) are kept and stored first next time, because the
engine's state has already moved past them.

Only the estates the worker owns are watched: one device's stream always reaches the
same worker, and so does every device of a building (correlation needs that).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from alerts import rules, silences, store
from alerts.judge import Judge, Op
from alerts.store import AlertEvent
from alerts.warn import DeviceInfo, Event, Reading, Status, Warner
from estate.db import Conn
from ingest.batch import METRIC_COLUMNS, Rows

log = logging.getLogger("estate.alerts")
Publish = Callable[[str, bytes], None]


def batch_inputs(rows: Rows, now: float) -> tuple[list[Reading], list[Event], list[Status]]:
    """What the engine reads from one decoded batch."""
    readings = []
    n = len(METRIC_COLUMNS)
    for r, given in zip(rows.telemetry, rows.telemetry_values, strict=True):
        if r[-1] is None:
            values = given  # nothing went to `extra`: every value is in its column as given
        else:  # only the columns: an unknown metric or a mistyped value is not a reading
            metrics = zip(METRIC_COLUMNS, r[3 : 3 + n], strict=True)
            values = {name: v for name, v in metrics if v is not None}
        if values:
            readings.append(Reading(int(r[1]), r[0].timestamp(), values))
    events = [Event(int(e[1]), e[0].timestamp(), str(e[3])) for e in rows.events]
    statuses = [
        Status(dev, now, bool(s.online)) for dev, s in rows.devices.items() if s.online is not None
    ]
    return readings, events, statuses


class AlertStage:
    def __init__(
        self,
        *,
        rules_path: Path | None = None,
        on_event: Callable[[AlertEvent], None] | None = None,
        checkpoint_s: float = 5.0,
        refresh_s: float = 30.0,
    ) -> None:
        self.rules_path = rules_path or rules.shipped_path()
        self._mtime = self.rules_path.stat().st_mtime
        book = rules.load(self.rules_path)
        self.warner = Warner(book, [])
        self.judge = Judge(book, [])
        self.on_event = on_event  # in-process listeners (tests, embedding); MQTT is the bus
        self.checkpoint_s, self.refresh_s = checkpoint_s, refresh_s
        self._owns: Callable[[str], bool] = lambda _e: True
        self._publish: Publish | None = None
        self._pending: list[Op] = []
        self._last_checkpoint = self._last_refresh = time.monotonic()
        self._fresh: list[DeviceInfo] | None = None  # read by prepare, applied by tick
        self.stored = 0  # alert events stored since start

    # ------------------------------------------------------------------ BatchStage
    def start(
        self,
        conn: Conn,
        *,
        owns: Callable[[str], bool],
        publish: Publish | None,
        now: dt.datetime,
    ) -> None:
        self._owns, self._publish = owns, publish
        devices = self._refresh_devices(conn)
        ids = [d.id for d in devices]
        self.warner.restore(store.load_state(conn, ids))
        # when each device was last heard of: ingest keeps it current, checkpoints do not
        for dev, seen in conn.execute(
            "SELECT device_id, last_seen FROM device_state WHERE device_id = ANY(%s)", (ids,)
        ):
            t = seen.timestamp()
            self.warner.last_seen[dev] = max(t, self.warner.last_seen.get(dev, t))
        self.judge.load(store.open_alerts(conn, ids), silences.active(conn, now))
        log.info(
            "alerts: %d rules over %d devices, %d open alerts",
            len(self.warner.book.rules),
            len(devices),
            len(self.judge.open),
        )

    def batch(self, conn: Conn, rows: Rows, now: dt.datetime) -> None:
        t = now.timestamp()
        readings, events, statuses = batch_inputs(rows, t)
        changes = self.warner.observe(readings, events, statuses, now=t)
        self._store(conn, self.judge.judge(changes, events, now=t, latest=self.warner.latest))

    def prepare(self, conn: Conn, now: dt.datetime) -> None:
        """Read the registry when a refresh is due, for the next ``tick`` to apply. It
        needs none of the engine's state, so the worker runs it outside the lock that
        ``batch`` and ``tick`` share: reading a city's devices took 140-160 ms under
        load, and an event judged meanwhile waited for it (issue 22)."""
        if time.monotonic() - self._last_refresh >= self.refresh_s:
            self._fresh = self._devices(conn)
            self._last_refresh = time.monotonic()

    def tick(self, conn: Conn, now: dt.datetime) -> None:
        t = now.timestamp()
        ops = self.judge.judge(self.warner.tick(t), [], now=t, latest=self.warner.latest)
        # every checkpoint_s: silences and the rules file are looked at again, state saved
        periodic = time.monotonic() - self._last_checkpoint >= self.checkpoint_s
        if periodic:
            self.judge.silences = silences.active(conn, now)
            ops += self.judge.remute(t)
            self._maybe_reload_rules()
        self._store(conn, ops)
        if periodic and not self._pending:
            # everything the engine decided is stored: an open alert it knows that the
            # database has closed was closed by a person (a false alarm)
            self.judge.forget(store.closed_of(conn, self.judge.open))
        if self._fresh is not None:
            self._set_devices(self._fresh)
            self._fresh = None
        if periodic:
            self.checkpoint(conn, now)

    def stop(self, conn: Conn, now: dt.datetime) -> None:
        self._store(conn, [])
        self.checkpoint(conn, now)

    # ------------------------------------------------------------------ inside
    def checkpoint(self, conn: Conn, now: dt.datetime) -> None:
        touched = self.warner.touched
        self.warner.touched = set()
        try:
            store.save_state(conn, self.warner.snapshot(touched), now)
        except psycopg.Error:
            self.warner.touched |= touched  # saved next time
            raise
        self._last_checkpoint = time.monotonic()

    def _devices(self, conn: Conn) -> list[DeviceInfo]:
        return [d for d in store.devices(conn) if self._owns(d.estate)]

    def _refresh_devices(self, conn: Conn) -> list[DeviceInfo]:
        devices = self._devices(conn)
        self._set_devices(devices)
        self._last_refresh = time.monotonic()
        return devices

    def _set_devices(self, devices: list[DeviceInfo]) -> None:
        """A new registry view; an unchanged one keeps the engine's per-device caches."""
        if {d.id: d for d in devices} == self.warner.devices:
            return
        self.warner.set_devices(devices)
        self.judge.set_devices(devices)

    def _maybe_reload_rules(self) -> None:
        """Rules are reloaded when the file changes; a bad file keeps the old rules."""
        try:
            mtime = self.rules_path.stat().st_mtime
            if mtime == self._mtime:
                return
            self._mtime = mtime
            book = rules.load(self.rules_path)
        except (OSError, rules.RulesError) as err:
            log.error("alert rules not reloaded, the old ones stay in force: %s", err)
            return
        self.warner.book = self.judge.book = book
        self.warner.set_devices(self.warner.devices.values())
        log.info("alert rules reloaded from %s: %d rules", self.rules_path, len(book.rules))

    def _store(self, conn: Conn, ops: list[Op]) -> None:
        ops = self._pending + ops
        if not ops:
            return
        try:
            events = store.apply(conn, ops, self.warner.devices)
        except psycopg.OperationalError:
            self._pending = ops
            raise
        self._pending = []
        self.stored += len(events)
        for e in events:
            if e.reraised:
                self.judge.reraised(
                    (e.device_id, e.alert), at=e.at.timestamp(), confirmation=e.confirmation
                )
            if self._publish is not None:
                self._publish(e.topic, json.dumps(e.payload(), ensure_ascii=False).encode())
            if self.on_event is not None:
                self.on_event(e)
