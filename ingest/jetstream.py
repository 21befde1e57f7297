"""Reading one partition of the clustered broker's replicated log (NATS JetStream).

In the clustered deployment (``estate cluster``, docs/scale.md) devices publish over MQTT to
any node of a NATS cluster. The nodes map each device subject to its estate's partition
(``p.{{partition(P, estate)}}.estate.v1.…``, FNV-1a of the estate code mod P) and store
every QoS 1 message in the ``$MQTT_msgs`` stream (replicated on three nodes) before they
send the PUBACK: a device's PUBACK means the message is in the replicated log.

Each partition has durable consumers on that stream (``part-<k>-<generation>`` for all its
messages, ``evt-…`` for its events again, the event lane's; ``rest-0-…`` takes what no
mapping matched; ``estate.cluster``); the stream keeps a message while a consumer has not
acknowledged it (interest retention).
Exactly one ingest worker holds a partition at a time (its lease, ``ingest.cluster``); it
reads the partition in order and acknowledges each message after the database commit.
(Not ``AckAll``: a pull whose answer is lost with a dying node's connection leaves
deliveries the worker never saw, and acknowledging a newer message would acknowledge them
too; the kill test lost messages that way. A gap in the delivery sequence instead makes the
receiver read on from the first unacknowledged message, as a takeover does.)

When a worker takes a partition over, the previous holder may have died with messages
delivered but not acknowledged; JetStream would hold them until their ack wait ran out and
meanwhile deliver newer ones. ``take_over`` instead opens the partition's next consumer
at the first unacknowledged message and deletes the old one: the new holder reads on from
exactly where the last commit ended, in order, at once. (Duplicates of messages committed
but not yet acknowledged are absorbed by the writer, as on Mosquitto.)

``JetStreamReceiver`` has the ``ingest.receiver.Receiver`` surface the worker uses
(``start``, ``stop``, ``subscribe``, ``ack``, ``paused``) and runs the NATS client's
asyncio loop on a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Literal

import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from estate.cluster import (
    PREFIX,
    STREAM,
    UNMAPPED,
    Kind,
    consumer_config,
    consumer_name,
    consumers_of,
)
from ingest.batch import Incoming

log = logging.getLogger("estate.ingest.jetstream")

FETCH = 2000


def topic_of(subject: str) -> str:
    """The device's MQTT topic back from the stored subject: ``$MQTT.msgs.p.3.estate.v1.HXY.
    elevator.B1-L1.telemetry`` → ``estate/v1/HXY/elevator/B1-L1/telemetry``. NATS wrote an
    MQTT ``.`` as ``//``; it is restored."""
    if subject.startswith(PREFIX):
        rest = subject[len(PREFIX) :].split(".", 1)[-1]
    else:  # a subject no mapping matched ("rest"): "$MQTT.msgs.estate.…"
        rest = subject[len(UNMAPPED) - len("estate.") :]
    return rest.replace("//", "\x00").replace(".", "/").replace("\x00", ".")


async def take_over(js: JetStreamContext, kind: Kind, partition: int) -> str:
    """The consumer of ``kind`` the new holder of ``partition`` reads; a fresh one at the
    first unacknowledged message when the last holder left deliveries unacknowledged."""
    found = await consumers_of(js, kind, partition)
    if not found:
        await js.add_consumer(STREAM, consumer_config(kind, partition, 1, None))
        return consumer_name(kind, partition, 1)
    generation, info = found[-1]
    pending = info.num_ack_pending or 0
    if pending:
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        generation += 1
        # the new one first: with interest retention, deleting the old one first would let
        # the stream drop messages nobody else was interested in
        await js.add_consumer(STREAM, consumer_config(kind, partition, generation, floor + 1))
        log.info(
            "%s-%d: %d messages were delivered to the last holder and not acknowledged;"
            " reading again from stream sequence %d",
            kind,
            partition,
            pending,
            floor + 1,
        )
    for old, _ in found:
        if old < generation:
            with contextlib.suppress(Exception):
                await js.delete_consumer(STREAM, consumer_name(kind, partition, old))
    return consumer_name(kind, partition, generation)


class LostDelivery(RuntimeError):
    """Messages the consumer delivered never arrived (a connection died with them)."""


async def _tell(msgs: list[Any], what: Literal["ack", "in_progress"]) -> None:
    """Acknowledge each message, or say each is still in progress. One that is lost on
    the way comes again (a duplicate, absorbed by the writer)."""
    for msg in msgs:
        with contextlib.suppress(Exception):
            await getattr(msg, what)()


class JetStreamReceiver:
    """One partition's messages into ``out`` in stream order; ``ack`` after the commit.
    ``kinds``: the partition's consumers read (``part``; ``part`` and ``rest`` for partition
    0's worker; ``evt`` for the event lane), each in its own order."""

    def __init__(
        self,
        servers: list[str],
        partition: int,
        *,
        out: queue.SimpleQueue[Incoming],
        clock: Callable[[], dt.datetime],
        user: str | None = None,
        password: str | None = None,
        kinds: tuple[Kind, ...] = ("part",),
    ) -> None:
        self.servers, self.partition, self.out, self.clock = servers, partition, out, clock
        self.kinds = kinds
        self._bound: set[str] = set()
        self.user, self.password = user, password
        self.paused = False  # the worker's flush: take no more
        self.connected = threading.Event()
        self._pending: dict[int, Any] = {}  # mid -> the JetStream message
        self._mids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._error: BaseException | None = None

    def subscribe(self, filters: set[str]) -> None:
        """Nothing to do: the partition is the subscription."""

    def ack(self, messages: list[Incoming]) -> int:
        """Acknowledge each of ``messages`` (committed), in order."""
        msgs = [x for x in (self._pending.pop(m.mid, None) for m in messages) if x is not None]
        if not msgs or self._loop is None:
            return 0
        asyncio.run_coroutine_threadsafe(_tell(msgs, "ack"), self._loop)
        return len(msgs)

    def hold(self, messages: list[Incoming]) -> None:
        """The worker is still retrying these (the database is away): tell JetStream, so it
        does not deliver them again when their ack wait runs out."""
        msgs = [x for x in (self._pending.get(m.mid) for m in messages) if x is not None]
        if msgs and self._loop is not None:
            asyncio.run_coroutine_threadsafe(_tell(msgs, "in_progress"), self._loop)

    def start(self, timeout: float = 30) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"estate-js-{self.partition}", daemon=True
        )
        self._thread.start()
        if not self.connected.wait(timeout):
            raise ConnectionError(
                f"partition {self.partition}: no JetStream consumer after {timeout:.0f} s"
                f" ({self._error or 'no answer'}); check the cluster (estate cluster status)"
            )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._read())
        finally:
            loop.close()

    async def _read(self) -> None:
        while not self._stop.is_set():
            nc: NATS | None = None
            try:
                nc = await nats.connect(
                    servers=self.servers, user=self.user, password=self.password,
                    max_reconnect_attempts=-1, connect_timeout=2,
                )  # fmt: skip
                js = nc.jetstream()
                await asyncio.gather(*(self._consume(js, kind) for kind in self.kinds))
            except Exception as err:  # no cluster to connect to: say so, try again
                self._error = err
                log.warning("partition %d: no NATS connection (%s); retrying in 1 s",
                            self.partition, err)  # fmt: skip
                await asyncio.sleep(1.0)
            finally:
                if nc is not None:
                    with contextlib.suppress(Exception):
                        await nc.close()

    async def _consume(self, js: JetStreamContext, kind: Kind) -> None:
        """One consumer into ``out``; after any failure (a node away, a lost delivery) it
        reads on from the first unacknowledged message (``take_over``)."""
        while not self._stop.is_set():
            try:
                name = await take_over(js, kind, self.partition)
                sub = await js.pull_subscribe_bind(durable=name, stream=STREAM)
                self._bound.add(kind)
                if len(self._bound) == len(self.kinds):
                    self.connected.set()
                delivered = 0  # the consumer's delivery sequence: a gap is a lost delivery
                while not self._stop.is_set():
                    if self.paused:
                        await asyncio.sleep(0.05)
                        continue
                    try:
                        msgs = await sub.fetch(FETCH, timeout=0.5)
                    except (TimeoutError, nats.errors.TimeoutError):
                        continue
                    now = self.clock()
                    for msg in msgs:
                        seq = msg.metadata.sequence.consumer
                        if delivered and seq != delivered + 1:
                            raise LostDelivery(
                                f"deliveries {delivered + 1}-{seq - 1} were lost in transit"
                            )
                        delivered = seq
                        mid = next(self._mids)
                        self._pending[mid] = msg
                        self.out.put(Incoming(topic_of(msg.subject), msg.data, mid, 1, 0, now))
            except Exception as err:
                self._error = err
                log.warning("%s-%d: %s; reading on from the first unacknowledged message"
                            " in 1 s", kind, self.partition, err or type(err).__name__)  # fmt: skip
                await asyncio.sleep(1.0)
