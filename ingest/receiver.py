"""The worker's MQTT receiver: a persistent QoS 1 session read in bulk, acknowledged in bulk.

paho-mqtt handles one packet per turn of its loop: a ``select``, three ``recv`` calls
(type, length, body), a message object, a topic match and two locks per message, and one
wake-up and one ``send`` per acknowledgement. Profiled under load, that was a quarter of
the worker's interpreter time, more than the alert rules (docs/benchmarks.md). The
worker needs only a small part of MQTT 3.1.1 as a client: CONNECT with a persistent
session, SUBSCRIBE, PUBLISH received at QoS 0/1, PUBACK, PINGREQ and DISCONNECT. So
ingest reads the socket in large chunks, cuts every complete packet out of a chunk in
one pass, and sends a batch's PUBACKs in one write. Every other client of the project
(publishers, the alert output, simulators, the API) stays on paho.

The guarantees are the ones the worker had with paho: a message is acknowledged only when
the caller says so (after its commit), and only on the connection it arrived on
(``Incoming.generation``): after a reconnect the broker redelivers what was not
acknowledged and may reuse packet ids, so an old id must never be acknowledged on the
new connection. A lost connection is retried with backoff; the session (clean session
false, fixed client id) keeps what arrives meanwhile.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable

from estate.mqtt import Address
from ingest.batch import Incoming

log = logging.getLogger("estate.ingest")

# Fixed-header types (MQTT 3.1.1 §2.2.1)
CONNACK, PUBLISH, SUBACK, PINGRESP = 2, 3, 9, 13
PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"
CONNACK_CODES = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}
CHUNK = 1 << 18  # bytes per recv: a few thousand telemetry messages


class ProtocolError(Exception):
    """The broker sent what MQTT 3.1.1 does not allow here; the connection is dropped."""


def encode_string(text: str | bytes) -> bytes:
    """An MQTT UTF-8 string: two bytes of length, then the bytes."""
    b = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(b)) + b


def encode_length(n: int) -> bytes:
    """An MQTT remaining length: seven bits a byte, the high bit saying more follow."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(client_id: str, address: Address, keepalive: int) -> bytes:
    """CONNECT with a persistent session (clean session 0) and the address's login."""
    flags = 0
    payload = encode_string(client_id)
    if address.username is not None:
        flags |= 0x80
        payload += encode_string(address.username)
        if address.password is not None:
            flags |= 0x40
            payload += encode_string(address.password)
    body = encode_string("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive) + payload
    return b"\x10" + encode_length(len(body)) + body


def subscribe_packet(packet_id: int, filters: list[str]) -> bytes:
    """SUBSCRIBE to every filter at QoS 1."""
    body = struct.pack("!H", packet_id) + b"".join(encode_string(f) + b"\x01" for f in filters)
    return b"\x82" + encode_length(len(body)) + body


def puback_packets(mids: list[int]) -> bytes:
    """PUBACKs for ``mids``, one write's worth (4 bytes each: 0x40, 2, id)."""
    return struct.pack(f"!{len(mids)}I", *[0x40020000 | mid for mid in mids])


def split_packets(buf: bytearray) -> tuple[list[tuple[int, bytes]], int]:
    """The complete packets at the start of ``buf`` as (first byte, body), and how many
    bytes they took; an incomplete packet at the end waits for the next read."""
    out: list[tuple[int, bytes]] = []
    pos, end = 0, len(buf)
    while end - pos >= 2:
        first = buf[pos]
        length, mult, i = 0, 1, pos + 1
        while True:
            if i >= end:
                return out, pos
            byte = buf[i]
            length += (byte & 0x7F) * mult
            i += 1
            if not byte & 0x80:
                break
            mult *= 128
            if mult > 128**3:
                raise ProtocolError("remaining length longer than 4 bytes")
        if end - i < length:
            break
        out.append((first, bytes(buf[i : i + length])))
        pos = i + length
    return out, pos


class Receiver:
    """One persistent MQTT session that puts ``Incoming`` messages on ``out``.

    ``connected`` is set once the broker accepted the connection and acknowledged the
    subscriptions; ``generation`` counts connections; ``paused`` makes it take nothing
    more (what arrives is not acknowledged: the broker redelivers it to the next run).
    """

    def __init__(
        self,
        url: str,
        *,
        client_id: str,
        out: queue.SimpleQueue[Incoming],
        clock: Callable[[], dt.datetime],
        keepalive: int = 30,
        reconnect: tuple[float, float] = (1.0, 5.0),
    ) -> None:
        self.address = Address.parse(url)
        self.host, self.port = self.address.host, self.address.port
        self.client_id, self.out, self.clock = client_id, out, clock
        self.keepalive, self.reconnect = keepalive, reconnect
        self.filters: set[str] = set()
        self.generation = 0
        self.connected = threading.Event()  # connected and its subscriptions acknowledged
        self.paused = False
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()  # one writer at a time; guards _sock/generation
        self._last_sent = 0.0
        self._packet_id = 0
        self._subscribe_id: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- sending (any thread) -----------------------------------------------------

    def _send(self, data: bytes, generation: int | None = None) -> bool:
        """Write ``data`` on the current connection (on connection ``generation`` only,
        if given); False if there is none. A failed write closes it: the reader
        reconnects, and what was not acknowledged is redelivered."""
        with self._send_lock:
            sock = self._sock
            if sock is None or (generation is not None and generation != self.generation):
                return False
            try:
                sock.sendall(data)
            except OSError as err:
                log.warning("write to the broker failed (%s); reconnecting", err)
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                return False
            self._last_sent = time.monotonic()
            return True

    def _next_id(self) -> int:
        self._packet_id = self._packet_id % 65535 + 1
        return self._packet_id

    def subscribe(self, filters: set[str]) -> None:
        """Add subscriptions; sent now if connected, and on every reconnect."""
        new = filters - self.filters
        self.filters |= new
        if new and self.connected.is_set():
            self._send(subscribe_packet(self._next_id(), sorted(new)))

    def hold(self, messages: list[Incoming]) -> None:
        """Nothing to do: Mosquitto keeps unacknowledged messages in flight as long as the
        connection lives (the worker is retrying them)."""

    def ack(self, messages: list[Incoming]) -> int:
        """Acknowledge what arrived on the current connection, in one write; return how
        many were sent."""
        gen = self.generation
        mids = [m.mid for m in messages if m.qos > 0 and m.generation == gen]
        if not mids:
            return 0
        return len(mids) if self._send(puback_packets(mids), gen) else 0

    # -- the reader thread ---------------------------------------------------------

    def start(self, timeout: float = 30) -> None:
        """Connect on a thread of its own; raises ConnectionError if not connected and
        subscribed within ``timeout`` (the thread goes on trying)."""
        self._thread = threading.Thread(target=self._run, name="estate-mqtt-in", daemon=True)
        self._thread.start()
        if not self.connected.wait(timeout):
            raise ConnectionError(
                f"no connection to the broker at {self.host}:{self.port} "
                f"after {timeout:.0f} s; check MQTT_URL and the broker"
            )

    def stop(self) -> None:
        """Disconnect cleanly (the session stays on the broker) and end the thread."""
        self._stop.set()
        self._send(DISCONNECT_PACKET)
        with self._send_lock:
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(10)

    def _run(self) -> None:
        delay = self.reconnect[0]
        while not self._stop.is_set():
            try:
                sock = self._connect()
            except (OSError, ProtocolError) as err:
                log.warning(
                    "no connection to the broker at %s:%s (%s); retrying in %.0f s",
                    self.host,
                    self.port,
                    err,
                    delay,
                )
            else:
                delay = self.reconnect[0]
                try:
                    reason = self._read(sock)
                except Exception as err:  # a bug of ours must not end the receiving thread
                    log.exception("ingest receiver failed; reconnecting")
                    reason = f"{type(err).__name__}: {err}"
                self.connected.clear()
                with self._send_lock:
                    self._sock = None
                with contextlib.suppress(OSError):
                    sock.close()
                if self._stop.is_set():
                    return
                log.warning(
                    "lost the broker (%s); reconnecting, unacknowledged messages will be "
                    "redelivered",
                    reason,
                )
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, self.reconnect[1])

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=10)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(connect_packet(self.client_id, self.address, self.keepalive))
            head = b""
            while len(head) < 4:
                chunk = sock.recv(4 - len(head))
                if not chunk:
                    raise ProtocolError("the broker closed the connection before CONNACK")
                head += chunk
            if head[0] >> 4 != CONNACK or head[1] != 2:
                raise ProtocolError(f"expected CONNACK, got {head!r}")
            if head[3]:
                why = CONNACK_CODES.get(head[3], f"code {head[3]}")
                at = f"{self.host}:{self.port}"
                log.error("broker %s refused the ingest connection: %s", at, why)
                raise ProtocolError(f"refused: {why}")
        except BaseException:
            sock.close()
            raise
        sock.settimeout(1.0)  # wake up to send PINGREQ and to notice stop
        filters = sorted(self.filters)
        with self._send_lock:
            self._sock = sock
            self.generation += 1
            self._last_sent = time.monotonic()
        log.info(
            "connected to %s:%s (session present: %s), %d subscriptions",
            self.host,
            self.port,
            bool(head[2] & 1),
            len(filters),
        )
        if filters:
            # Ready only once the broker confirms them: before that, a new session
            # would not be sent what devices publish.
            self._subscribe_id = self._next_id()
            self._send(subscribe_packet(self._subscribe_id, filters))
        else:
            self.connected.set()
        return sock

    def _read(self, sock: socket.socket) -> str:
        """Until the connection ends; returns why it ended."""
        buf = bytearray()
        gen = self.generation
        last_heard = time.monotonic()
        while not self._stop.is_set():
            try:
                chunk = sock.recv(CHUNK)
            except TimeoutError:
                now = time.monotonic()
                if now - last_heard > 1.5 * self.keepalive:
                    return f"no answer for {now - last_heard:.0f} s"
                if now - self._last_sent > self.keepalive / 2:
                    self._send(PINGREQ_PACKET, gen)
                continue
            except OSError as err:
                return str(err) or type(err).__name__
            if not chunk:
                return "the broker closed the connection"
            last_heard = time.monotonic()
            buf += chunk
            try:
                packets, used = split_packets(buf)
                del buf[:used]
                self._handle(packets, gen)
            except (ProtocolError, IndexError) as err:  # IndexError: a packet cut short
                return f"protocol error: {err or type(err).__name__}"
            if last_heard - self._last_sent > self.keepalive / 2:
                self._send(PINGREQ_PACKET, gen)  # busy receiving, nothing acknowledged
        return "stopping"

    def _handle(self, packets: list[tuple[int, bytes]], gen: int) -> None:
        now = self.clock()  # one receipt time per read: they arrived together
        put, paused = self.out.put, self.paused
        for first, body in packets:
            kind = first >> 4
            if kind == PUBLISH:
                qos = (first >> 1) & 3
                n = (body[0] << 8) | body[1]
                topic = body[2 : 2 + n].decode("utf-8", "replace")
                if qos == 0:
                    mid, payload = 0, body[2 + n :]
                elif qos == 1:
                    mid, payload = (body[2 + n] << 8) | body[3 + n], body[4 + n :]
                else:
                    raise ProtocolError(f"QoS {qos} delivery on a QoS 1 subscription")
                if not paused:  # never acknowledged: redelivered to the next run
                    put(Incoming(topic, payload, mid, qos, gen, now))
            elif kind == SUBACK:
                self._suback(body)
            elif kind == PINGRESP:
                pass
            else:
                raise ProtocolError(f"unexpected packet type {kind}")

    def _suback(self, body: bytes) -> None:
        packet_id = (body[0] << 8) | body[1]
        failed = [code for code in body[2:] if code & 0x80]
        if failed:
            log.error(
                "broker refused %d ingest subscriptions (check the service account's ACL)",
                len(failed),
            )
        if packet_id == self._subscribe_id:
            self.connected.set()
