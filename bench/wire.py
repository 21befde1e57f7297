"""A load generator that costs the machine almost nothing: pre-encoded MQTT 3.1.1 QoS 1.

Real devices publish from thousands of other machines; on this 2-core box a Python MQTT
client publishing the load would take a core from the system under test and cap every
figure at its own speed. So the benchmark encodes every PUBLISH packet before the clock
starts and then only writes bytes to a socket, counting PUBACKs on a reader thread. The
broker sees an ordinary QoS 1 client (CONNECT with credentials, PUBLISH, PUBACK).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from urllib.parse import unquote, urlsplit

from ingest.receiver import encode_length, encode_string

_IDS = 65535  # packet identifiers 1..65535, reused once acknowledged


def connect_packet(client_id: str, username: str, password: str) -> bytes:
    # user name and password, clean session, no keepalive
    body = encode_string("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 0)
    body += encode_string(client_id) + encode_string(username) + encode_string(password)
    return b"\x10" + encode_length(len(body)) + body


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    body = encode_string(topic) + struct.pack("!H", packet_id) + payload
    return b"\x32" + encode_length(len(body)) + body


class WirePublisher:
    """One QoS 1 connection; ``send`` writes pre-encoded packets, ``acked`` counts PUBACKs."""

    def __init__(self, mqtt_url: str, client_id: str) -> None:
        u = urlsplit(mqtt_url)
        self.sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 1883), 10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(
            connect_packet(client_id, unquote(u.username or ""), unquote(u.password or ""))
        )
        connack = self._recv_exact(4)
        if connack[0] != 0x20 or connack[3] != 0:
            raise ConnectionError(f"broker refused the benchmark publisher: CONNACK {connack!r}")
        self.sock.settimeout(None)
        self.acked = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            buf += chunk
        return buf

    def _read(self) -> None:
        pending = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            pending += chunk
            whole = len(pending) // 4 * 4  # PUBACK is 4 bytes: 0x40 0x02 id id
            self.acked += whole // 4
            pending = pending[whole:]

    @staticmethod
    def encode(messages: list[tuple[str, bytes]]) -> list[bytes]:
        return [publish_packet(t, p, i % _IDS + 1) for i, (t, p) in enumerate(messages)]

    def send(self, packets: list[bytes], *, rate: float = 0.0, chunk: int = 500) -> list[int]:
        """Send all packets (``rate`` msg/s, 0 = flat out); return each one's send time
        (``time.time_ns``, comparable across processes)."""
        sent_ns = [0] * len(packets)
        t0 = time.perf_counter()
        step = chunk if not rate else max(1, int(rate / 1000))  # paced: ~1 ms slices
        for start in range(0, len(packets), step):
            if rate:
                ahead = t0 + start / rate - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
            # identifiers are reused after 65,535: wait until the earlier use is acknowledged
            while start + step - self.acked > _IDS - step:
                time.sleep(0.001)
            now = time.time_ns()
            part = packets[start : start + step]
            for i in range(start, start + len(part)):
                sent_ns[i] = now
            self.sock.sendall(b"".join(part))
        return sent_ns

    def wait_acked(self, n: int, timeout: float = 600) -> int:
        """Block until ``n`` PUBACKs arrived; return the wall-clock ns of the last."""
        deadline = time.monotonic() + timeout
        while self.acked < n:
            if time.monotonic() > deadline or not self._reader.is_alive():
                raise TimeoutError(f"only {self.acked} of {n} publications acknowledged")
            time.sleep(0.001)
        return time.time_ns()

    def close(self) -> None:
        try:
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        finally:
            self.sock.close()
