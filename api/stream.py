"""``GET /api/v1/stream``: alert and work-order changes as server-sent events, each caller
seeing only what its scope allows.

The workers and the supervisor publish every change on MQTT (``estate/v1/{estate}/alerts/…``
and ``…/workorders/{id}``); the API process bridges those topics into a ``Hub`` that every
open stream reads. Each event is checked against the caller's scope in the database (the
same conditions as the list routes) before it is sent, so a stream shows exactly what
``GET /api/v1/alerts`` and ``/work-orders`` would. Events carry an ``id``; a client that
reconnects with ``Last-Event-ID`` gets what it missed from the last 1,000 events.

A stream holds no worker thread while it waits: each has a ``Reader`` of its own (by
identity, never by equality) whose buffer the MQTT thread fills and whose asyncio event
it sets. A reader that falls more than ``per_reader`` events behind loses the oldest and
is sent ``event: reset`` ("you missed events: reload"). The caller's credential is
checked again before every batch of events and at every keep-alive: a stream ends within
one event of a logout, a disabled account or an expired token.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import paho.mqtt.client as mqtt
from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse
from psycopg import sql
from psycopg_pool import ConnectionPool

from alerts import orders
from api.auth import Principal
from api.deps import Clock, Credentials, resolve
from api.problems import Problem
from api.workorders import order_scope
from estate.db import Conn
from estate.mqtt import Address, close, new_client

log = logging.getLogger("estate.api.stream")
router = APIRouter(prefix="/api/v1", tags=["stream"])
HEARTBEAT_S = 15.0


@dataclass(frozen=True)
class Item:
    seq: int
    kind: str  # "alert" or "workorder"
    body: dict[str, Any]


class Reader:
    """One stream's buffer; ``missed`` once it overflowed (the oldest were dropped)."""

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop | None) -> None:
        self.items: collections.deque[Item] = collections.deque(maxlen=size)
        self.missed = False
        self.owner = ""  # whose stream (``Hub.per_principal``)
        self.loop = loop
        self.ready = asyncio.Event()

    def offer(self, item: Item) -> None:
        """From any thread, under the hub's lock."""
        if len(self.items) == self.items.maxlen:
            self.missed = True
        self.items.append(item)
        if self.loop is not None:
            # the server may be shutting down: a closed loop must not break the MQTT thread
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.ready.set)

    async def wait(self, timeout: float) -> bool:
        """Whether items arrived within ``timeout`` (seconds), without holding a thread."""
        if self.items:
            return True
        self.ready.clear()
        if self.items:  # arrived between the check and the clear
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), timeout)
        return bool(self.items)


class TooManyStreams(Exception):
    """The principal has ``per_principal`` streams open already."""


class Hub:
    """Fan-out with a replay buffer; a slow reader loses the oldest of its own items and
    is told so. A principal (one key or one login) may hold ``per_principal`` streams at
    once: enough for a control room's wall of screens, not enough to drown the API."""

    def __init__(self, keep: int = 1000, per_reader: int = 10_000, per_principal: int = 50) -> None:
        self._lock = threading.Lock()
        self._recent: collections.deque[Item] = collections.deque(maxlen=keep)
        self._readers: dict[int, Reader] = {}  # by identity: equal buffers are not the same
        self._owners: collections.Counter[str] = collections.Counter()
        self._seq = 0
        self.per_reader, self.per_principal = per_reader, per_principal

    def put(self, kind: str, body: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            item = Item(self._seq, kind, body)
            self._recent.append(item)
            for r in self._readers.values():
                r.offer(item)

    def open(self, after: int | None, owner: str = "") -> Reader:
        """A reader on the running event loop (or none: then poll ``items``), counted for
        ``owner``; raises ``TooManyStreams`` past ``per_principal``. ``close`` it."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        r = Reader(self.per_reader, loop)
        r.owner = owner
        with self._lock:
            if owner and self._owners[owner] >= self.per_principal:
                raise TooManyStreams(owner)
            self._owners[owner] += 1
            if after is not None:
                r.items.extend(i for i in self._recent if i.seq > after)
            self._readers[id(r)] = r
        return r

    def close(self, r: Reader) -> None:
        """The stream of ``r`` has ended."""
        with self._lock:
            if self._readers.pop(id(r), None) is None:
                return
            self._owners[r.owner] -= 1
            if self._owners[r.owner] <= 0:
                del self._owners[r.owner]

    @contextmanager
    def reader(self, after: int | None, owner: str = "") -> Iterator[Reader]:
        """``open`` … ``close`` as a block."""
        r = self.open(after, owner)
        try:
            yield r
        finally:
            self.close(r)

    def streams_of(self, owner: str) -> int:
        """How many streams ``owner`` holds open."""
        with self._lock:
            return self._owners[owner]

    @property
    def readers(self) -> int:
        return len(self._readers)


class Bridge:
    """Subscribes (as the service account) to the changes the service publishes."""

    TOPICS = ("estate/v1/+/alerts/#", "estate/v1/+/workorders/#")

    def __init__(self, mqtt_url: str, hub: Hub) -> None:
        address = Address.parse(mqtt_url)
        self.hub = hub
        self.client = new_client(address, f"estate-api-stream-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect_async(address.host, address.port)
        self.connected = threading.Event()

    def _on_connect(self, c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if not rc.is_failure:
            c.subscribe([(t, 1) for t in self.TOPICS])
            self.connected.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, m: mqtt.MQTTMessage) -> None:
        try:
            body = json.loads(m.payload)
        except ValueError:
            log.warning("stream: not JSON on %s; skipped", m.topic)
            return
        if not isinstance(body, dict):
            return
        self.hub.put("workorder" if "/workorders/" in m.topic else "alert", body)

    def start(self) -> None:
        self.client.loop_start()

    def stop(self) -> None:
        close(self.client)


def _visible(c: Conn, p: Principal, item: Item) -> bool:
    """Whether ``p`` may see this change, by the same conditions as the list routes."""
    ident = item.body.get("id")
    if not isinstance(ident, int):
        return False
    if item.kind == "alert":
        q = sql.SQL("SELECT 1 FROM alerts WHERE id = %s AND {}").format(p.alert_scope())
        return c.execute(q, (ident,)).fetchone() is not None
    return orders.visible(c, ident, order_scope(p))


def _control(event: str, reason: str) -> str:
    """A frame that is not a change: ``reset`` (reload), ``end`` (the stream closes)."""
    return f"event: {event}\ndata: {json.dumps({'reason': reason})}\n\n"


def _frame(item: Item) -> str:
    data = json.dumps(item.body, ensure_ascii=False, separators=(",", ":"))
    return f"id: {item.seq}\nevent: {item.kind}\ndata: {data}\n\n"


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "server-sent events"},
        429: {"description": "the caller has too many streams open"},
        503: {"description": "the live feed (the broker) is not connected"},
    },
)
async def stream(
    request: Request,
    key: Credentials,
    last_event_id: Annotated[str | None, Header(pattern=r"^\d{1,18}$")] = None,
) -> StreamingResponse:
    """Alert changes (``event: alert``) and work-order changes (``event: workorder``) in
    the caller's scope, as they happen; a comment line every 15 s keeps proxies open."""
    hub: Hub | None = request.app.state.hub
    bridge: Bridge | None = request.app.state.bridge
    if hub is None or bridge is None or not bridge.connected.is_set():
        raise Problem(
            503, "stream-unavailable", "Live stream unavailable",
            "the API has no connection to the broker (is MQTT_URL set and the broker up?)",
        )  # fmt: skip
    pool: ConnectionPool[Conn] = request.app.state.pool
    clock: Clock = request.app.state.clock

    def who() -> Principal:
        # a connection only while checking: a stream must not hold one for its lifetime
        with pool.connection(timeout=5) as c:
            return resolve(c, key, clock())

    p = await anyio.to_thread.run_sync(who)
    after = int(last_event_id) if last_event_id else None
    owner = f"{p.kind}:{p.key_id}"
    if hub.streams_of(owner) >= hub.per_principal:
        raise Problem(
            429, "too-many-streams", "Too many streams",
            f"{p.name} has {hub.per_principal} live streams open already: close one",
            headers={"Retry-After": "5"},
        ) from None  # fmt: skip

    def visible(items: list[Item]) -> list[Item] | None:
        """The items ``p`` may see; None once its credential is no longer good."""
        with pool.connection(timeout=5) as c:
            try:
                resolve(c, key, clock())
            except Problem:
                return None  # logged out, disabled or expired: the stream ends
            return [i for i in items if _visible(c, p, i)]

    async def events() -> AsyncIterator[str]:
        try:
            r = hub.open(after, owner)
        except TooManyStreams:  # others opened meanwhile: the limit holds all the same
            yield _control("end", "too many live streams open for this account")
            return
        try:
            yield ": connected\n\n"
            while not await request.is_disconnected():
                arrived = await r.wait(HEARTBEAT_S)
                batch = [r.items.popleft() for _ in range(len(r.items))] if arrived else []
                if r.missed:
                    r.missed = False
                    yield _control("reset", "missed events: reload")
                shown = await anyio.to_thread.run_sync(visible, batch)
                if shown is None:
                    yield _control("end", "credentials no longer valid: log in again")
                    return
                if not batch:
                    yield ": keep-alive\n\n"
                for item in shown:
                    yield _frame(item)
        finally:
            hub.close(r)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
