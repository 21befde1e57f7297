"""Ingest workers that share a cluster's partitions and take over a dead one's.

Each ``Holder`` (one ``estate ingest --cluster`` process) holds partitions by PostgreSQL
session advisory locks on a connection of its own (the lease): a lock is held while the
session lives, so a worker that dies, is killed or loses the database frees its partitions
at once, and no two workers ever hold one partition. Every ``check_s`` each holder counts
the live holders (their lease sessions, by ``application_name``), gives back what is above
its fair share (a worker joined) and takes free partitions up to it (a worker left). For
each partition it holds it runs an ``ingest.worker.Worker`` reading that partition of the
log (``ingest.jetstream``), acknowledging after the commit; the worker's alert stage loads
the partition's estates' open alerts from the database as after any restart.

A holder whose lease connection fails stops its workers at once (the partitions are
already free for others). Between the failure and the stop (at most ``check_s``) a batch may
commit on both sides of a takeover; the writer absorbs such duplicates, as it does a
redelivery on Mosquitto.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from estate.cluster import Kind
from ingest.jetstream import JetStreamReceiver
from ingest.worker import BatchStage, Clock, IngestConfig, Shard, Worker, utcnow

log = logging.getLogger("estate.ingest.cluster")

LEASE_APP = "estate-ingest-lease"
LOCK_CLASS = 0x45535441  # the advisory locks' first key ("ESTA"); the partition is the second


def held_partitions(database_url: str) -> dict[int, list[int]]:
    """Partitions by the pid of the lease session holding them."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT a.pid, l.objid::int FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.classid::bigint = %s AND l.granted"
            " AND a.application_name = %s AND a.datname = current_database()"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " ORDER BY 1, 2",
            (LOCK_CLASS, LEASE_APP),
        ).fetchall()
    out: dict[int, list[int]] = {}
    for pid, k in rows:
        out.setdefault(int(pid), []).append(int(k))
    return out


@dataclass
class _Held:
    worker: Worker
    thread: threading.Thread
    stop: threading.Event


class Holder:
    """Holds a fair share of ``partitions`` and runs a worker for each; ``run`` until
    ``stop``."""

    def __init__(
        self,
        *,
        database_url: str,
        mqtt_url: str,
        nats_servers: list[str],
        partitions: int,
        config: IngestConfig | None = None,
        stage: Callable[[], BatchStage | None] = lambda: None,
        clock: Clock = utcnow,
        check_s: float = 1.0,
        name: str = "",
        nats_user: str | None = None,
        nats_password: str | None = None,
    ) -> None:
        self.database_url, self.mqtt_url, self.nats_servers = database_url, mqtt_url, nats_servers
        self.partitions, self.stage, self.clock = partitions, stage, clock
        self.config = config or IngestConfig()
        self.check_s, self.name = check_s, name
        self.nats_user, self.nats_password = nats_user, nats_password
        self.held: dict[int, _Held] = {}

    def _count_live(self, lease: psycopg.Connection[tuple[Any, ...]]) -> int:
        row = lease.execute(
            # advisory locks are per database: so are the workers that share them
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
            " AND datname = current_database()",
            (LEASE_APP,),
        ).fetchone()
        return max(1, int(row[0])) if row else 1

    def _start(self, k: int) -> None:
        def receiver(*kinds: Kind) -> JetStreamReceiver:
            return JetStreamReceiver(
                self.nats_servers, k, out=queue.SimpleQueue(),  # the worker gives its own
                clock=self.clock, user=self.nats_user, password=self.nats_password, kinds=kinds,
            )  # fmt: skip

        config = dataclasses.replace(
            self.config, maintain=k == 0, metrics_port=None,
            client_prefix=f"{self.config.client_prefix}-p{k}",
        )  # fmt: skip
        # partition 0's worker also reads what no mapping matched: dead letters, not lost
        worker = Worker(
            database_url=self.database_url, mqtt_url=self.mqtt_url,
            shard=Shard(k, self.partitions, "fnv1a"), config=config, clock=self.clock,
            stage=self.stage(),
            subscriber=receiver("part", "rest") if k == 0 else receiver("part"),
            events=receiver("evt") if config.event_lane else None,
        )  # fmt: skip
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), name=f"estate-part-{k}")
        thread.start()
        self.held[k] = _Held(worker, thread, stop)
        log.info("%s took partition %d/%d", self.name or "this worker", k, self.partitions)

    def _give_back(self, k: int, lease: psycopg.Connection[tuple[Any, ...]] | None) -> None:
        held = self.held.pop(k)
        held.stop.set()
        held.thread.join(60)
        if lease is not None and not lease.closed:
            lease.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, k))
        log.info("%s gave back partition %d", self.name or "this worker", k)

    def round(self, lease: psycopg.Connection[tuple[Any, ...]]) -> None:
        """Give back above the fair share, take free partitions up to it, release a
        partition whose worker ended on its own (another holder starts it again)."""
        for k in [k for k, h in self.held.items() if not h.thread.is_alive()]:
            log.error("the worker of partition %d ended; giving the partition back", k)
            self._give_back(k, lease)
        share = math.ceil(self.partitions / self._count_live(lease))
        for k in sorted(self.held, reverse=True)[: max(0, len(self.held) - share)]:
            self._give_back(k, lease)
        for k in range(self.partitions):
            if len(self.held) >= share:
                break
            if k in self.held:
                continue
            row = lease.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, k)).fetchone()
            if row and row[0]:
                self._start(k)

    def run(self, stop: threading.Event, ready: threading.Event | None = None) -> None:
        lease: psycopg.Connection[tuple[Any, ...]] | None = None
        try:
            while not stop.is_set():
                try:
                    if lease is None or lease.closed:
                        lease = psycopg.connect(
                            self.database_url, autocommit=True, application_name=LEASE_APP
                        )
                    self.round(lease)
                    if ready is not None:
                        ready.set()
                except psycopg.Error as err:
                    # the lease is gone with its session: so are the partitions
                    log.warning("lease lost (%s); stopping this worker's partitions", err)
                    for k in list(self.held):
                        self._give_back(k, None)
                    if lease is not None:
                        lease.close()
                    lease = None
                stop.wait(self.check_s)
        finally:
            for k in list(self.held):
                self._give_back(k, lease)
            if lease is not None:
                lease.close()
