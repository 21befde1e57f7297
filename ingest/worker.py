"""The ingest worker: MQTT in, TimescaleDB out, acknowledged only after commit.

One worker owns shard k of N: the estates whose CRC-32 modulo N is k. It subscribes to those
estates only, with a persistent session (fixed client id, clean_session false) and manual
acknowledgement (``ingest.receiver``: its thread reads the socket in bulk and only puts
messages on a queue; a batch's acknowledgements go out in one write). The worker thread
takes batches (by size and age), decodes them, writes them in one
transaction and then acknowledges them, so a crash at any point loses nothing: what was not
acknowledged is redelivered by the broker, and the write is idempotent.

An acknowledgement goes back only on the connection the message arrived on: after a
reconnect the broker redelivers whatever was unacknowledged, message ids may be reused, so
acknowledging an old id on the new connection could acknowledge the wrong message.

Shard 0 also subscribes to everything under ``estate/`` so that messages for estates not in
the registry, or with malformed topics, still become dead letters rather than vanishing.

Device events also take a fast lane (``EventLane``): a second persistent session
(``…-events``) subscribed to the event topics only, with its own inflight window, queue,
thread and database connection. It stores the valid events of known devices in small
transactions of their own and runs the alert stage on them at once, so a trapped
passenger never waits behind a telemetry batch (nor in the broker's queue behind the
readings the main session has not yet taken). It only accelerates: the main session still
receives every event and stores it (a no-op when the lane was first: same key, same
content), dead-letters what is invalid, and keeps device state. Whatever the lane fails
on, the main path still has, so the lane can never lose a message; the alert stage sees
each stored event once, from whichever path inserted it.

No message can stop the worker. Decoding never raises; if the database refuses a batch
for what it holds (not because the connection is gone), the batch is split in halves
until the offending messages are found: they become dead letters (reason ``database``,
logged once each, counted) and the rest is stored. Only a lost database is waited out
with the batch unacknowledged.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import paho.mqtt.client as mqtt
import psycopg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from estate.cluster import partition_of
from estate.mqtt import Address, close, new_client
from ingest import runs
from ingest.batch import DeviceRef, Incoming, Rows, dead_letter, decode_batch, pg_text, shard_of
from ingest.contract import Bounds, Reason, service_output
from ingest.jetstream import JetStreamReceiver
from ingest.receiver import Receiver
from ingest.rollup import Retention, RollupResult, apply_retention, roll_up
from ingest.writer import Writer, Written, mark_silent

log = logging.getLogger("estate.ingest")
Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Shard:
    """The estates one worker owns: ``crc32(estate) mod count == index`` (``--shard k/N`` on
    Mosquitto), or in the cluster the partition NATS maps them to (``fnv1a``)."""

    index: int = 0
    count: int = 1
    scheme: Literal["crc32", "fnv1a"] = "crc32"

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"k/N"`` → Shard(k, N); raises ValueError with what is expected."""
        try:
            k, n = (int(x) for x in text.split("/"))
        except ValueError:
            raise ValueError(f"shard {text!r} must be k/N, e.g. 0/2") from None
        if not (n >= 1 and 0 <= k < n):
            raise ValueError(f"shard {text!r}: need N >= 1 and 0 <= k < N")
        return cls(k, n)

    def owns(self, estate: str) -> bool:
        if self.scheme == "fnv1a":
            return partition_of(estate, self.count) == self.index
        return shard_of(estate, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class IngestConfig:
    batch_size: int = 5000
    batch_age_s: float = 0.02
    bounds: Bounds = field(default_factory=Bounds)
    silence_s: float = 300.0  # a device quiet this long is marked offline ('silence')
    refresh_s: float = 30.0  # registry re-read (new devices, new estates)
    metrics_port: int | None = None
    client_prefix: str = "estate-ingest"
    catch_all: str = "estate/#"
    maintain: bool = True  # shard 0 runs the rollups and retention (ingest.rollup)
    rollup_every_s: float = 15.0
    rollup_settle_s: float = 5.0
    retention: Retention = field(default_factory=Retention)
    event_lane: bool = True  # events also on a session of their own (EventLane)
    event_batch_size: int = 200  # the lane takes what is queued, never waits to fill


class BatchStage(Protocol):
    """What runs in the worker on each committed batch, before it is acknowledged (the
    alert engine). ``ingest`` defines the interface and never imports its implementers.

    An ``OperationalError`` from ``batch`` is retried with the batch, like a failed write;
    any other exception is logged and the batch is acknowledged (its data is stored).
    """

    def start(
        self,
        conn: psycopg.Connection[tuple[Any, ...]],
        *,
        owns: Callable[[str], bool],
        publish: Callable[[str, bytes], None] | None,
        now: dt.datetime,
    ) -> None: ...

    def batch(
        self, conn: psycopg.Connection[tuple[Any, ...]], rows: Rows, now: dt.datetime
    ) -> None: ...

    def prepare(self, conn: psycopg.Connection[tuple[Any, ...]], now: dt.datetime) -> None:
        """Reads for the next ``tick`` that touch none of the stage's state; run outside
        the lock that serialises ``batch`` and ``tick`` (the event lane's judging)."""

    def tick(self, conn: psycopg.Connection[tuple[Any, ...]], now: dt.datetime) -> None: ...

    def stop(self, conn: psycopg.Connection[tuple[Any, ...]], now: dt.datetime) -> None: ...


class Metrics:
    """Prometheus metrics of one worker (own registry: several workers may share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter("estate_ingest_messages", "MQTT messages received", registry=r)
        self.rows = Counter(
            "estate_ingest_rows_written",
            "rows inserted (duplicates excluded)",
            ["table"],
            registry=r,
        )
        self.dead = Counter(
            "estate_ingest_dead_letters", "messages dead-lettered", ["reason"], registry=r
        )
        self.batch = Histogram(
            "estate_ingest_batch_seconds",
            "decode+write+ack per batch",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.lag = Gauge(
            "estate_ingest_lag_seconds",
            "receipt to commit of the oldest message in the last batch",
            registry=r,
        )
        self.queued = Gauge(
            "estate_ingest_queued", "messages received, not yet committed", registry=r
        )
        self.db_errors = Counter("estate_ingest_db_errors", "failed batch writes", registry=r)
        self.fast_events = Counter(
            "estate_ingest_fast_events",
            "events the event lane stored and judged ahead of the main path",
            registry=r,
        )
        self.rollups = Counter(
            "estate_rollup_buckets", "rollup buckets recomputed", ["level"], registry=r
        )
        self.dropped_chunks = Counter(
            "estate_retention_chunks_dropped", "chunks dropped by retention", ["table"], registry=r
        )


def _merge(into: Rows, part: Rows) -> None:
    """One sub-batch's stored rows into the batch's (what the alert stage sees)."""
    into.telemetry += part.telemetry
    into.telemetry_from += part.telemetry_from
    into.telemetry_values += part.telemetry_values
    into.events += part.events
    into.events_from += part.events_from
    into.dead += part.dead
    into.dead_reasons.update(part.dead_reasons)
    into.unknown_metrics.update(part.unknown_metrics)
    for dev, seen in part.devices.items():
        old = into.devices.get(dev)
        if old is None or seen.last_seen >= old.last_seen:
            into.devices[dev] = seen


# readings per stage call on the main path: the event lane waits for one chunk at most
STAGE_CHUNK = 500


def _chunks(rows: Rows, size: int) -> list[Rows]:
    """``rows`` for the stage in parts of ``size`` readings (in batch order); the events
    and device states go with the last part, as they followed the readings before."""
    n = len(rows.telemetry)
    if n <= size:
        return [rows]
    parts = [
        Rows(
            telemetry=rows.telemetry[i : i + size],
            telemetry_from=rows.telemetry_from[i : i + size],
            telemetry_values=rows.telemetry_values[i : i + size],
        )
        for i in range(0, n, size)
    ]
    last = parts[-1]
    last.events, last.events_from, last.devices = rows.events, rows.events_from, rows.devices
    return parts


def keep_collections_short(
    stop: threading.Event,
    *,
    settle_s: tuple[float, ...] = (5.0, 15.0),
    full_every_s: float = 3600.0,
) -> None:
    """Keep Python's full garbage collections out of the event path, until ``stop``.

    A full collection walks every object the process holds (the registry, every device's
    rule state) while no thread runs: 90-190 ms in a worker under bench.alerts' load, 15
    times a minute, and an event's alert waited behind each (issue 22). Once the worker
    has settled (after each of ``settle_s``), what it holds is frozen (``gc.freeze``: left
    out of collections; reference counting still frees whatever is dropped), so a full
    collection walks only what came since. Every ``full_every_s`` everything is unfrozen,
    collected once (one such pause an hour) and frozen again, so that cyclic garbage
    among the frozen objects is still freed. For a process that runs one worker.
    """
    for wait in settle_s:
        if stop.wait(wait):
            return
        gc.collect()
        gc.freeze()
    while not stop.wait(full_every_s):
        full_collection()


def full_collection() -> None:
    """Collect everything, frozen objects included, and freeze what is left."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class Maintainer:
    """Rollups every ``rollup_every_s`` and retention hourly, on a connection of its own;
    with ``retention.runs_after_days`` set, old days rewritten as runs (ingest.runs) on a
    second thread and connection, since a city's day takes hours and must not hold up the
    rollups.

    Runs on threads of its own so that a long recompute (catching up after downtime) never
    holds up ingest batches. A database error is logged and the next round retries.
    """

    RETENTION_EVERY_S = 3600.0
    RUNS_EVERY_S = 600.0

    def __init__(
        self, database_url: str, config: IngestConfig, clock: Clock, metrics: Metrics
    ) -> None:
        self.database_url, self.config, self.clock, self.metrics = (
            database_url,
            config,
            clock,
            metrics,
        )
        self._last_retention = -self.RETENTION_EVERY_S

    def round(self, conn: psycopg.Connection[tuple[Any, ...]]) -> RollupResult:
        now = self.clock()
        ret = self.config.retention
        result = roll_up(
            conn, now, settle_s=self.config.rollup_settle_s, raw_horizon=ret.raw_horizon(now)
        )
        self.metrics.rollups.labels("1m").inc(result.minutes)
        self.metrics.rollups.labels("1h").inc(result.hours)
        if time.monotonic() - self._last_retention >= self.RETENTION_EVERY_S:
            for table, n in apply_retention(conn, now, ret).items():
                self.metrics.dropped_chunks.labels(table).inc(n)
            self._last_retention = time.monotonic()
        return result

    def runs_round(self, conn: psycopg.Connection[tuple[Any, ...]], stop: threading.Event) -> int:
        """Old days kept as runs (or compressed: ``runs.keep_old_days``); days done."""
        after = dt.timedelta(days=self.config.retention.runs_after_days)
        made = runs.keep_old_days(conn, self.clock(), after, go_on=lambda: not stop.is_set())
        self.metrics.dropped_chunks.labels("telemetry_to_runs").inc(made.days)
        return made.days

    def run(self, stop: threading.Event) -> None:
        if self.config.retention.runs_after_days:
            threading.Thread(
                target=self._loop,
                args=(stop, 0.0, self.RUNS_EVERY_S, lambda c: self.runs_round(c, stop), "runs"),
                name="estate-runs",
                daemon=True,
            ).start()
        every = self.config.rollup_every_s
        self._loop(stop, every, every, self.round, "rollup/retention")

    def _loop(
        self,
        stop: threading.Event,
        first: float,
        every: float,
        work: Callable[[psycopg.Connection[tuple[Any, ...]]], object],
        what: str,
    ) -> None:
        conn: psycopg.Connection[tuple[Any, ...]] | None = None
        wait = first
        while not stop.wait(wait):
            wait = every
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=5)
                work(conn)
            except (psycopg.Error, runs.RunsMismatch) as err:
                log.warning(
                    "%s round failed (%s); retrying in %.0f s",
                    what,
                    str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__,
                    every,
                )
                if conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        conn.close()
                conn = None
        if conn is not None:
            conn.close()


class Directory:
    """The registry's devices by (estate, code), re-read periodically."""

    def __init__(self) -> None:
        self.devices: dict[tuple[str, str], DeviceRef] = {}
        self.estates: set[str] = set()

    def load(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        rows = conn.execute("SELECT id, estate_code, code, kind, subtype FROM devices WHERE active")
        self.devices = {(e, c): DeviceRef(int(i), e, c, k, st) for i, e, c, k, st in rows}
        self.estates = {str(e) for (e,) in conn.execute("SELECT code FROM estates")}

    def lookup(self, estate: str, code: str) -> DeviceRef | None:
        return self.devices.get((estate, code))


# SQLSTATE classes that mean the server or the connection, not the data: wait and retry
# (connection exception, insufficient resources, operator intervention, system error)
_TRANSIENT = ("08", "53", "57", "58")


def database_lost(err: psycopg.Error, conn: psycopg.Connection[Any] | None) -> bool:
    """Whether ``err`` says the database is away (retry later), not that it refused data."""
    if conn is None or conn.closed or conn.broken:
        return True
    state = err.sqlstate
    return state is None or state[:2] in _TRANSIENT


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class OwnWriter:
    """One autocommit connection with its Writer, opened on first use and again after
    ``_drop_db`` (a lost database: the next use reconnects)."""

    database_url: str
    _conn: psycopg.Connection[tuple[Any, ...]] | None = None
    _writer: Writer | None = None

    def _db(self) -> Writer:
        if self._writer is None or self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=5)
            self._writer = Writer(self._conn)
        return self._writer

    def _drop_db(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = self._writer = None


def event_filters(shard: Shard, estates: set[str]) -> set[str]:
    """The event lane's subscriptions: every event topic, or the owned estates' ones."""
    if shard.count == 1:
        return {"estate/v1/+/+/+/event"}
    return {f"estate/v1/{e}/+/+/event" for e in estates if shard.owns(e)}


class EventLane(OwnWriter):
    """The fast lane of one worker for device events (see the module docstring).

    ``stage(conn, rows)`` runs the alert stage on the events the lane inserted; it is the
    worker's, serialised with the main path's batches. The lane acknowledges a message
    once its event is committed and judged, or once it has left it to the main path
    (invalid, unknown device, another shard's estate, a database refusal, a bug).
    """

    def __init__(
        self,
        *,
        database_url: str,
        subscriber: Receiver | JetStreamReceiver,
        directory: Directory,
        owns: Callable[[str], bool],
        config: IngestConfig,
        stage: Callable[[psycopg.Connection[tuple[Any, ...]], Rows], None],
        metrics: Metrics,
    ) -> None:
        self.database_url, self.subscriber, self.directory = database_url, subscriber, directory
        self.owns, self.config, self.stage, self.metrics = owns, config, stage, metrics
        self.queue = subscriber.out
        self.stored = 0  # events this lane inserted first

    def take(self, timeout: float = 0.2) -> list[Incoming]:
        """What is queued now (at least one message, or none after ``timeout``): an event
        never waits for a batch to fill."""
        try:
            batch = [self.queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(batch) < self.config.event_batch_size:
            try:
                batch.append(self.queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _mine(self, messages: list[Incoming]) -> list[Incoming]:
        out = []
        for m in messages:
            parts = m.topic.split("/")
            if len(parts) == 6 and parts[2] in self.directory.estates and self.owns(parts[2]):
                out.append(m)
        return out

    def process(self, messages: list[Incoming], stop: threading.Event) -> bool:
        """Store and judge, then acknowledge. False when stopping while the database is
        away (the messages stay unacknowledged; the broker redelivers them)."""
        mine = self._mine(messages)
        delay = 0.2
        while mine:
            writer = None
            try:
                writer = self._db()
                decoded = decode_batch(mine, self.directory.lookup, bounds=self.config.bounds)
                rows = Rows(events=decoded.events, events_from=decoded.events_from)
                stored = writer.write_events(rows)
                self.stage(writer.conn, rows)
                self.stored += stored
                self.metrics.fast_events.inc(stored)
                break
            except psycopg.Error as err:
                if not database_lost(err, writer.conn if writer else None):
                    log.warning(
                        "event lane: the database refused a batch (%s); the main path "
                        "stores or dead-letters each of its messages",
                        _first_line(err),
                    )
                    break
                self._drop_db()
                log.warning("event lane: database unavailable (%s)", _first_line(err))
                if stop.wait(delay):
                    return False
                delay = min(delay * 2, 5.0)
            except Exception:  # a bug of ours: the main path still has every message
                log.exception("event lane failed on a batch; the main path takes it over")
                break
        self.subscriber.ack(messages)
        return True

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``; then what already arrived is flushed, the rest redelivered."""
        try:
            while not stop.is_set():
                batch = self.take()
                if batch and not self.process(batch, stop):
                    return
            self.subscriber.paused = True
            while not self.queue.empty():
                batch = self.take(0)
                if batch and not self.process(batch, stop):
                    return
        finally:
            self.subscriber.stop()
            self._drop_db()


class Worker(OwnWriter):
    """One ingest worker; ``run`` returns when ``stop`` is set and the queue is flushed."""

    def __init__(
        self,
        *,
        database_url: str,
        mqtt_url: str,
        shard: Shard = Shard(),
        config: IngestConfig = IngestConfig(),
        clock: Clock = utcnow,
        stage: BatchStage | None = None,
        subscriber: Receiver | JetStreamReceiver | None = None,
        events: Receiver | JetStreamReceiver | None = None,
    ) -> None:
        """``subscriber``: where the messages come from (default: an MQTT session on
        ``mqtt_url``; in the cluster, the partition's ``JetStreamReceiver``); ``events``: the
        event lane's (default: a second MQTT session); ``mqtt_url`` is where the alert
        stage publishes."""
        self.database_url, self.shard, self.config, self.clock = database_url, shard, config, clock
        self.stage = stage
        self._stage_started = False
        self._last_tick = 0.0
        self.queue: queue.SimpleQueue[Incoming] = queue.SimpleQueue()
        self.metrics = Metrics()
        self.directory = Directory()
        client_id = f"{config.client_prefix}-{shard.index}of{shard.count}"
        if subscriber is not None:
            subscriber.out = self.queue
        self.subscriber = subscriber or Receiver(
            mqtt_url, client_id=client_id, out=self.queue, clock=clock
        )
        # What the alert stage publishes goes out on a client of its own: the consumer's
        # inflight window carries device data and acknowledgements only, and an alert
        # never waits behind a batch's acknowledgements (nor they behind it).
        address = Address.parse(mqtt_url)
        self.output = new_client(address, f"{client_id}-out", clean_session=True)
        self._output_address = address
        self._last_out: mqtt.MQTTMessageInfo | None = None
        self._stage_lock = threading.Lock()  # the main path and the event lane share it
        self.lane: EventLane | None = None
        self._lane_thread: threading.Thread | None = None
        self._lane_stop = threading.Event()
        if config.event_lane:
            if events is None:
                events = Receiver(
                    mqtt_url, client_id=f"{client_id}-events", out=queue.SimpleQueue(), clock=clock
                )
            self.lane = EventLane(
                database_url=database_url,
                subscriber=events,
                directory=self.directory,
                owns=self._owns,
                config=config,
                stage=self._stage_batch,
                metrics=self.metrics,
            )
        self._last_refresh = 0.0
        self._last_sweep = 0.0
        self.batches = 0

    # -- database ----------------------------------------------------------------

    def _filters(self) -> set[str]:
        catch_all = self.config.catch_all
        if self.shard.count == 1:
            return {catch_all}
        owned = {f"estate/v1/{e}/#" for e in self.directory.estates if self.shard.owns(e)}
        return owned | ({catch_all} if self.shard.index == 0 else set())

    def _refresh(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._last_refresh < self.config.refresh_s:
            return
        writer = self._db()
        self.directory.load(writer.conn)
        self._last_refresh = time.monotonic()
        self.subscriber.subscribe(self._filters())
        if self.lane is not None:
            self.lane.subscriber.subscribe(event_filters(self.shard, self.directory.estates))

    def _sweep_silence(self) -> None:
        if time.monotonic() - self._last_sweep < min(30.0, self.config.silence_s / 4):
            return
        now = self.clock()
        mark_silent(self._db().conn, now, dt.timedelta(seconds=self.config.silence_s))
        self._last_sweep = time.monotonic()

    # -- the loop ----------------------------------------------------------------
    def _take(self, stop: threading.Event) -> list[Incoming]:
        batch: list[Incoming] = []
        try:
            batch.append(self.queue.get(timeout=0.2))
        except queue.Empty:
            return batch
        deadline = time.monotonic() + self.config.batch_age_s
        while len(batch) < self.config.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self.queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _mine(self, messages: list[Incoming]) -> tuple[list[Incoming], list[Incoming]]:
        """Split off messages of known estates another shard owns (shard 0's catch-all). In
        the cluster the log's partitions are exact: what a worker reads is its own."""
        if self.shard.count == 1 or self.shard.scheme == "fnv1a":
            return messages, []
        mine, others = [], []
        for m in messages:
            parts = m.topic.split("/", 3)
            estate = parts[2] if len(parts) > 2 else ""
            if estate in self.directory.estates and not self.shard.owns(estate):
                others.append(m)
            else:
                mine.append(m)
        return mine, others

    def process(self, messages: list[Incoming], stop: threading.Event) -> bool:
        """Decode, write, acknowledge. False when stopping before the batch could commit."""
        t0 = time.monotonic()
        mine, _others = self._mine(messages)  # others: acknowledged below, not stored
        # The service's own output (alerts, notifications) shares the tree: not device data.
        mine = [m for m in mine if not service_output(m.topic)]
        delay = 0.2
        while True:
            try:
                rows, written = self._write(mine)
                self._run_stage(rows)
                break
            except psycopg.Error as err:
                self.metrics.db_errors.inc()
                self._drop_db()
                log.warning(
                    "database unavailable (%s); holding %d messages unacknowledged, "
                    "retrying in %.1f s",
                    _first_line(err),
                    len(messages),
                    delay,
                )
                self.subscriber.hold(messages)
                if stop.wait(delay):
                    log.warning(
                        "stopping with %d messages uncommitted: the broker redelivers "
                        "them to the next worker",
                        len(messages),
                    )
                    return False
                delay = min(delay * 2, 5.0)
        self.subscriber.ack(messages)
        m = self.metrics
        m.messages.inc(len(messages))
        m.rows.labels("telemetry").inc(written.telemetry)
        m.rows.labels("events").inc(written.events)
        for reason, n in rows.dead_reasons.items():
            m.dead.labels(reason).inc(n)
        m.lag.set((self.clock() - messages[0].received_at).total_seconds())
        m.batch.observe(time.monotonic() - t0)
        self.batches += 1
        return True

    def _write(self, messages: list[Incoming]) -> tuple[Rows, Written]:
        """Store ``messages``; a batch the database refuses for its content is split until
        the messages it refuses are found (dead letters), the rest stored. A lost
        database propagates (``database_lost``): the caller waits and retries it all."""
        rows = Rows()
        tel = evt = dead = 0
        parts = [messages]
        while parts:
            part = parts.pop()
            writer = self._db()
            try:
                decoded = decode_batch(part, self.directory.lookup, bounds=self.config.bounds)
                w = writer.write(decoded)
            except psycopg.Error as err:
                if database_lost(err, writer.conn):
                    raise
                refused: Exception = err
            except Exception as err:  # a bug of ours must not stop a city either
                refused = err
            else:
                _merge(rows, decoded)
                tel, evt, dead = tel + w.telemetry, evt + w.events, dead + w.dead
                continue
            if len(part) > 1:
                half = len(part) // 2
                parts += [part[half:], part[:half]]  # in order: the first half next
                continue
            decoded = self._refused(part[0], refused)
            w = writer.write(decoded)
            _merge(rows, decoded)
            tel, evt, dead = tel + w.telemetry, evt + w.events, dead + w.dead
        return rows, Written(tel, evt, dead)

    def _refused(self, m: Incoming, err: Exception) -> Rows:
        """The one message that could not be stored, as a dead letter (logged once)."""
        if isinstance(err, psycopg.Error):
            detail = f"the database refused it: {_first_line(err)} (SQLSTATE {err.sqlstate})"
            log.error("poison message on %s dead-lettered: %s", pg_text(m.topic)[:200], detail)
        else:
            detail = f"ingest failed on it ({type(err).__name__}: {_first_line(err)})"
            log.exception("poison message on %s dead-lettered", pg_text(m.topic)[:200])
        out = Rows()
        parts = m.topic.split("/")
        estate, device = (parts[2], parts[4]) if len(parts) == 6 else (None, None)
        dead_letter(out, m, Reason.DATABASE, detail, estate=estate, device=device)
        return out

    # -- the alert stage ------------------------------------------------------------
    def _publish(self, topic: str, payload: bytes) -> None:
        # paho queues while the output client reconnects; QoS 1 from there on
        self._last_out = self.output.publish(topic, payload, qos=1)

    def _stop_output(self, timeout: float = 5.0) -> None:
        """Let what the stage published reach the broker (the last publication
        acknowledged, up to ``timeout``), then disconnect."""
        if self._last_out is not None and not self._last_out.is_published():
            with contextlib.suppress(RuntimeError, ValueError):  # not connected: given up
                self._last_out.wait_for_publish(timeout)
        close(self.output)

    def _stage_batch(self, conn: psycopg.Connection[tuple[Any, ...]], rows: Rows) -> None:
        """The stage on ``rows`` (started first if need be), one path at a time."""
        if self.stage is None:
            return
        with self._stage_lock:
            if not self._stage_started:
                self.stage.start(conn, owns=self._owns, publish=self._publish, now=self.clock())
                self._stage_started = True
            self.stage.batch(conn, rows, self.clock())

    def _run_stage(self, rows: Rows) -> None:
        """The stage's database errors propagate (the batch is retried); its bugs do not
        stop ingestion: they are logged with the traceback."""
        if self.stage is None:
            return
        conn = self._db().conn
        try:
            for part in _chunks(rows, STAGE_CHUNK):
                self._stage_batch(conn, part)
                time.sleep(0)  # between chunks the event lane may take the stage
        except psycopg.Error as err:
            if database_lost(err, conn):
                raise
            log.exception(
                "alert stage failed on a batch; its data is stored, its alerts may be missing"
            )
        except Exception:
            log.exception(
                "alert stage failed on a batch; its data is stored, its alerts may be missing"
            )

    def _owns(self, estate: str) -> bool:
        return self.shard.count == 1 or self.shard.owns(estate)

    def _tick_stage(self, final: bool = False) -> None:
        if self.stage is None or not self._stage_started:
            return
        if not final and time.monotonic() - self._last_tick < 1.0:
            return
        self._last_tick = time.monotonic()
        try:
            conn = self._db().conn
            if not final:
                self.stage.prepare(conn, self.clock())  # the event lane is not held up
            with self._stage_lock:
                if final:
                    self.stage.stop(conn, self.clock())
                else:
                    self.stage.tick(conn, self.clock())
        except psycopg.OperationalError:
            self._drop_db()
        except Exception:
            log.exception("alert stage failed on a tick")

    def _start_lane(self) -> None:
        """Events get their session (subscribed) before the main one starts taking."""
        if self.lane is None:
            return
        self.lane.subscriber.start()
        self._lane_thread = threading.Thread(
            target=self.lane.run, args=(self._lane_stop,), name="estate-events", daemon=True
        )
        self._lane_thread.start()

    def _stop_lane(self) -> None:
        self._lane_stop.set()
        if self._lane_thread is not None:
            self._lane_thread.join(timeout=30)
            self._lane_thread = None

    def run(self, stop: threading.Event, ready: threading.Event | None = None) -> None:
        if self.config.metrics_port is not None:
            start_http_server(
                self.config.metrics_port, addr="127.0.0.1", registry=self.metrics.registry
            )
        self._refresh(force=True)
        self.output.connect_async(self._output_address.host, self._output_address.port)
        self.output.loop_start()
        self._start_lane()
        self.subscriber.start()
        log.info(
            "ingest shard %s: %d estates, %d devices",
            self.shard,
            sum(self.shard.owns(e) for e in self.directory.estates),
            len(self.directory.devices),
        )
        maintainer: threading.Thread | None = None
        if self.config.maintain and self.shard.index == 0:
            m = Maintainer(self.database_url, self.config, self.clock, self.metrics)
            maintainer = threading.Thread(
                target=m.run, args=(stop,), name="estate-maintain", daemon=True
            )
            maintainer.start()
        if ready is not None:
            ready.set()
        try:
            while not stop.is_set():
                batch = self._take(stop)
                self.metrics.queued.set(self.queue.qsize())
                if batch and not self.process(batch, stop):
                    return
                try:
                    self._refresh()
                    self._sweep_silence()
                    if not self._stage_started and self.stage is not None:
                        self._run_stage(Rows())  # start it even before the first batch
                except psycopg.OperationalError:
                    self._drop_db()  # the next batch write reports and retries
                self._tick_stage()
            # Take no more, flush what already arrived (its acks still go out on this
            # connection); anything the broker sends now is redelivered after a restart.
            self._stop_lane()
            self.subscriber.paused = True
            while not self.queue.empty():
                batch = self._take(stop)
                if batch and not self.process(batch, stop):
                    return
            self._tick_stage(final=True)
        finally:
            self._stop_lane()
            self.subscriber.stop()
            self._stop_output()
            self._drop_db()
            if maintainer is not None:
                maintainer.join(timeout=30)
            log.info("ingest shard %s stopped after %d batches", self.shard, self.batches)
