"""Supervision (监督): the scheduler that dispatches, watches every deadline, escalates
breaches, runs the look-back (回头看) and raises overdue-maintenance items.

``Supervisor.round(conn, now)`` does one pass with the time passed in (tests move the
clock; the service passes the wall clock every second):

1. the responsibility list in force is re-read when its version changed;
2. ``dispatch.dispatch``: new incidents become orders, recurrences, or gaps; orders of
   incidents that grew more severe are re-dispatched; confirmed fires are reported to
   the fire brigade at once (``dispatch.report_confirmed_fires``);
3. deadlines: an acknowledge / arrive / resolve deadline passed in a state that has not
   met it is a breach (once per deadline and cycle): the next party of the chain is told,
   the breach recorded, the order's severity raised one step;
4. look-back: resolved orders whose alerts have all cleared start their verification
   window; verifying orders past it close (a recurrence before that reopened them);
5. every ``overdue_every_s``: elevators whose half-monthly maintenance (TSG T5002, more
   than ``maintenance_days`` since the last visit) or periodic inspection (TSG T7001) is
   overdue become supervision items for market supervision; the dates follow from the
   maintenance and inspection records (``device_due``: the newest record, the registry's
   date as the starting point), so an item closes when a visit or inspection is recorded.

Everything is in the database, so a restarted supervisor carries on where it was, and
two supervisors do not double anything (rows are locked or unique).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psycopg

from alerts import dispatch, notify, orders, store
from alerts.notify import Notifier
from alerts.orders import OrderState
from alerts.responsibility import PartyDirectory, Row, Version, current, current_version
from alerts.rules import Severity
from estate.db import Conn

log = logging.getLogger("estate.supervise")

# deadline → the states in which it is not yet met
UNMET: dict[str, tuple[OrderState, ...]] = {
    "acknowledge": (OrderState.DISPATCHED, OrderState.REOPENED),
    "arrive": (OrderState.DISPATCHED, OrderState.ACKNOWLEDGED, OrderState.REOPENED),
    "resolve": (
        OrderState.DISPATCHED,
        OrderState.ACKNOWLEDGED,
        OrderState.ON_SITE,
        OrderState.REOPENED,
    ),
}


@dataclass
class RoundResult:
    dispatched: dispatch.Dispatched | None = None
    fires_reported: list[int] = field(default_factory=list)
    breaches: list[tuple[int, str]] = field(default_factory=list)
    verifying: list[int] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    items_opened: int = 0
    items_closed: int = 0


class Supervisor:
    def __init__(
        self,
        *,
        maintenance_days: int = 15,
        overdue_every_s: float = 600.0,
        registry_every_s: float = 60.0,
    ) -> None:
        self.maintenance_days = maintenance_days
        self.overdue_every_s = overdue_every_s
        self.registry_every_s = registry_every_s
        self.version: Version | None = None
        self.parties: PartyDirectory | None = None
        self._parties_at: dt.datetime | None = None
        self._overdue_at: dt.datetime | None = None

    def round(self, conn: Conn, now: dt.datetime) -> RoundResult:
        out = RoundResult()
        self._refresh(conn, now)
        assert self.version is not None
        assert self.parties is not None
        out.dispatched = dispatch.dispatch(conn, now, self.version, self.parties)
        with conn.transaction():
            out.fires_reported = dispatch.report_confirmed_fires(conn, now, self.parties)
        out.breaches = self.deadlines(conn, now)
        out.verifying, out.closed = self.look_back(conn, now)
        if self._overdue_at is None or (now - self._overdue_at).total_seconds() >= (
            self.overdue_every_s
        ):
            out.items_opened, out.items_closed = self.overdue(conn, now)
            self._overdue_at = now
        return out

    def _refresh(self, conn: Conn, now: dt.datetime) -> None:
        if self.version is None or current_version(conn) != self.version.version:
            changed = self.version is not None
            self.version = current(conn)
            log.info("responsibility list version %d in force", self.version.version)
            if changed:
                # a new list may cover what the old one left as gaps: look again
                store.recheck_undispatched(conn)
        stale = self._parties_at is None or (now - self._parties_at).total_seconds() >= (
            self.registry_every_s
        )
        if self.parties is None or stale:
            self.parties = PartyDirectory(conn)
            self._parties_at = now

    # ------------------------------------------------------------------ deadlines
    def deadlines(self, conn: Conn, now: dt.datetime) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        with conn.transaction():
            for deadline, states in UNMET.items():
                for order_id in orders.overdue(conn, deadline, states, now):
                    self._breach(conn, order_id, deadline, now)
                    out.append((order_id, deadline))
        return out

    def _breach(self, conn: Conn, order_id: int, deadline: str, now: dt.datetime) -> None:
        o = orders.breaching(conn, order_id, deadline)
        due, chain, notified = o.due, o.chain, o.notified_roles
        level = o.escalation_level + 1
        step = chain[level - 1] if level <= len(chain) else None
        to_org = step["org"] if step else None
        if step is not None and step["party"] not in notified:
            notified = [*notified, step["party"]]
        raised = str(Severity(min(int(Severity.parse(o.severity)) + 1, int(Severity.CRITICAL))))
        orders.add_breach(
            conn, order_id, cycle=o.cycle, deadline=deadline, due=due, now=now, escalated_to=to_org
        )
        orders.escalate(
            conn,
            order_id,
            level=min(level, len(chain)),
            severity=raised,
            notified_roles=notified,
            now=now,
        )
        detail = {
            "deadline": deadline,
            "due": due.isoformat(timespec="seconds"),
            "escalated_to": to_org,
            "party": step["party"] if step else None,
            "severity": raised,
        }
        if step is None:
            detail["note"] = "the escalation chain has nobody left to tell"
        elif to_org is None:
            detail["note"] = f"the registry names no {step['party']} for this estate"
        payload = orders.record(conn, order_id, "breach", actor="supervise", now=now, detail=detail)
        channels = Row.model_validate(o.list_row).channels
        # the next party is told, and the one responsible is reminded it is late
        notify.tell(
            conn,
            org=to_org,
            channels=channels,
            event="workorder.escalated",
            payload={**payload, "breach": detail},
            now=now,
            order_id=order_id,
        )
        if o.assignee != to_org:
            notify.tell(
                conn,
                org=o.assignee,
                channels=channels,
                event="workorder.breach",
                payload={**payload, "breach": detail},
                now=now,
                order_id=order_id,
            )
        log.warning(
            "work order %d: %s deadline missed (due %s); told %s",
            order_id,
            deadline,
            due.isoformat(timespec="seconds"),
            to_org or "nobody",
        )

    # ------------------------------------------------------------------ look-back
    def look_back(self, conn: Conn, now: dt.datetime) -> tuple[list[int], list[int]]:
        verifying, closed = [], []
        with conn.transaction():
            for order_id in orders.resolved_and_normal(conn):
                if dispatch.start_verification(conn, order_id, now):
                    verifying.append(order_id)
            for order_id, until in orders.verified(conn, now):
                dispatch.close(conn, order_id, at=until)
                closed.append(order_id)
        return verifying, closed

    # ------------------------------------------------------------------ overdue
    def overdue(self, conn: Conn, now: dt.datetime) -> tuple[int, int]:
        """Open and close the elevator maintenance / inspection overdue items."""
        today = now.date()
        self._refresh(conn, now)
        assert self.parties is not None
        opened = closed = 0
        with conn.transaction():
            # the dates follow from the maintenance and inspection records (the registry's
            # are the starting point): the device_due view
            due_rows = conn.execute(
                "SELECT d.id, d.estate_code, d.code, d.maintenance_code, 'maintenance_overdue',"
                " u.last_maintenance + %(days)s FROM devices d"
                " JOIN device_due u ON u.device_id = d.id WHERE d.active AND d.kind = 'elevator'"
                " AND u.last_maintenance + %(days)s < %(today)s"
                " UNION ALL"
                " SELECT d.id, d.estate_code, d.code, d.maintenance_code, 'inspection_overdue',"
                " u.inspection_due FROM devices d JOIN device_due u ON u.device_id = d.id"
                " WHERE d.active AND d.kind = 'elevator' AND u.inspection_due < %(today)s",
                {"days": self.maintenance_days, "today": today},
            ).fetchall()
            for dev, estate, code, maint, item, due in due_rows:
                got = conn.execute(
                    "INSERT INTO supervision_items (device_id, estate_code, device_code, item,"
                    " due, maintenance_code, opened_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (device_id, item) WHERE closed_at IS NULL DO NOTHING"
                    " RETURNING id",
                    (dev, estate, code, item, due, maint, now),
                ).fetchone()
                if got is None:
                    continue
                opened += 1
                payload = {
                    "item": int(got[0]),
                    "kind": item,
                    "estate": estate,
                    "device": code,
                    "due": due.isoformat(),
                    "maintenance": maint,
                }
                p = self.parties.parties(estate, maint)
                for org in {p.market_supervision, maint}:
                    notify.tell(
                        conn,
                        org=org,
                        channels=("mqtt", "webhook"),
                        event=f"supervision.{item}",
                        payload=payload,
                        now=now,
                    )
            still = {(int(r[0]), str(r[4])) for r in due_rows}
            for item_id, dev, item in conn.execute(
                "SELECT id, device_id, item FROM supervision_items WHERE closed_at IS NULL"
            ).fetchall():
                if (int(dev), str(item)) not in still:
                    conn.execute(
                        "UPDATE supervision_items SET closed_at = %s WHERE id = %s",
                        (now, item_id),
                    )
                    closed += 1
        return opened, closed


# ---------------------------------------------------------------------- the service


class SupervisorService:
    """The supervisor and the notifier, every ``every_s`` seconds, on a connection of
    their own; a database error is logged and the next round retries."""

    def __init__(
        self,
        database_url: str,
        notifier: Notifier,
        *,
        supervisor: Supervisor | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        every_s: float = 1.0,
        extra_rounds: Sequence[Callable[[Conn, dt.datetime], object]] = (),
    ) -> None:
        self.database_url = database_url
        # other packages' rounds on the same connection and clock (oversight's notices:
        # 挂牌督办 and look-back reminders), so one service watches every deadline
        self.extra_rounds = tuple(extra_rounds)
        self.notifier = notifier
        self.supervisor = supervisor or Supervisor()
        self.clock = clock
        self.every_s = every_s
        self.rounds = 0

    def run(self, stop: threading.Event, ready: threading.Event | None = None) -> None:
        """Rounds every ``every_s``, and at once when the alert store signals a new or
        changed incident (LISTEN): a trapped passenger's order does not wait for the
        clock."""
        conn: Conn | None = None
        while not stop.is_set():
            started = time.monotonic()
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=5)
                    conn.execute(f"LISTEN {store.DISPATCH_CHANNEL}")
                self.supervisor.round(conn, self.clock())
                for extra in self.extra_rounds:
                    self._extra(extra, conn)
                while self.notifier.deliver(conn, self.clock()) and not stop.is_set():
                    pass
                self.rounds += 1
                if ready is not None:
                    ready.set()
            except psycopg.Error as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
                log.warning("supervision round failed (%s); retrying", first)
                if conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        conn.close()
                conn = None
            self._wait(conn, stop, max(0.0, self.every_s - (time.monotonic() - started)))
        if conn is not None:
            conn.close()

    def _extra(self, extra: Callable[[Conn, dt.datetime], object], conn: Conn) -> None:
        """Another package's round: its failure is logged and never stops dispatch (a
        broken notice or fund round must not leave a trapped passenger undispatched)."""
        try:
            extra(conn, self.clock())
        except psycopg.Error:
            raise  # the connection is in doubt: the whole round retries on a new one
        except Exception:
            log.exception(
                "supervision: %s failed; dispatch goes on", getattr(extra, "__qualname__", extra)
            )

    @staticmethod
    def _wait(conn: Conn | None, stop: threading.Event, timeout: float) -> None:
        """Until ``timeout`` or a notification (one that came during the round counts)."""
        if conn is None or conn.closed or stop.is_set():
            stop.wait(timeout)
            return
        deadline = time.monotonic() + timeout
        try:
            while not stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                # in slices, so that a stop is heard within half a second
                for _ in conn.notifies(timeout=min(left, 0.5), stop_after=1):
                    return
        except psycopg.Error:
            stop.wait(max(0.0, deadline - time.monotonic()))  # the next round reconnects
