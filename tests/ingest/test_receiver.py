"""The worker's MQTT receiver: its packets byte for byte, and its session on the real broker."""

from __future__ import annotations

import datetime as dt
import logging
import queue
import socket
import threading
import uuid
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from estate.mqtt import Address
from ingest.batch import Incoming
from ingest.receiver import (
    ProtocolError,
    Receiver,
    connect_packet,
    encode_length,
    encode_string,
    puback_packets,
    split_packets,
    subscribe_packet,
)
from tests.support.pipeline import forget_session
from tests.support.stack import Stack

T0 = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)


def test_packets_are_mqtt_311() -> None:
    # CONNECT flags 0xc0: user name, password, clean session 0 (the session persists)
    login = Address("h", 1883, "svc", "pw")
    assert connect_packet("w1", login, 30) == (
        b"\x10\x17\x00\x04MQTT\x04\xc0\x00\x1e\x00\x02w1\x00\x03svc\x00\x02pw"
    )
    anonymous = connect_packet("w1", Address("h"), 30)
    assert anonymous == b"\x10\x0e\x00\x04MQTT\x04\x00\x00\x1e\x00\x02w1"
    assert subscribe_packet(7, ["a/#"]) == b"\x82\x08\x00\x07\x00\x03a/#\x01"
    assert puback_packets([1, 65535]) == b"\x40\x02\x00\x01\x40\x02\xff\xff"


def _publish(topic: str, payload: bytes, mid: int) -> bytes:
    body = encode_string(topic) + mid.to_bytes(2, "big") + payload
    return b"\x32" + encode_length(len(body)) + body


def test_split_keeps_an_incomplete_packet_for_the_next_read() -> None:
    big = _publish("t/big", b"x" * 20_000, 2)  # a three-byte remaining length
    stream = _publish("t/a", b"{}", 1) + big + b"\xd0\x00"
    for cut in range(len(stream) + 1):  # every place a read can end
        buf = bytearray(stream[:cut])
        first, used = split_packets(buf)
        del buf[:used]
        buf += stream[cut:]
        second, used2 = split_packets(buf)
        assert used + used2 == len(stream)
        assert [p[0] for p in first + second] == [0x32, 0x32, 0xD0]
    [(first_byte, body)], used = split_packets(bytearray(big))
    assert (first_byte, used, body[-3:]) == (0x32, len(big), b"xxx")


def test_a_remaining_length_over_four_bytes_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="4 bytes"):
        split_packets(bytearray(b"\x30\xff\xff\xff\xff\x01"))


@pytest.fixture
def receiver(stack: Stack) -> Iterator[tuple[Receiver, queue.SimpleQueue[Incoming]]]:
    out: queue.SimpleQueue[Incoming] = queue.SimpleQueue()
    cid = f"test-recv-{uuid.uuid4().hex[:8]}"
    r = Receiver(stack.mqtt_url, client_id=cid, out=out, clock=lambda: T0)
    yield r, out
    r.stop()
    forget_session(stack, cid)


def _publisher(stack: Stack) -> mqtt.Client:
    a = Address.parse(stack.mqtt_url)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv311)
    c.username_pw_set(a.username or "", a.password or "")
    c.connect(a.host, a.port)
    c.loop_start()
    return c


def _take(out: queue.SimpleQueue[Incoming], n: int) -> list[Incoming]:
    return [out.get(timeout=10) for _ in range(n)]


def test_unacknowledged_messages_come_back_acknowledged_ones_do_not(
    stack: Stack, receiver: tuple[Receiver, queue.SimpleQueue[Incoming]]
) -> None:
    r, out = receiver
    topic = f"estate/test-recv/{uuid.uuid4().hex[:8]}"
    r.subscribe({f"{topic}/#"})
    r.start()
    pub = _publisher(stack)
    try:
        for i in range(10):
            pub.publish(f"{topic}/{i}", f'{{"n":{i}}}'.encode(), qos=1).wait_for_publish(5)
        got = _take(out, 10)
        assert [m.payload for m in got] == [f'{{"n":{i}}}'.encode() for i in range(10)]
        assert {(m.qos, m.generation) for m in got} == {(1, 1)}
        assert r.ack(got[:6]) == 6
        # Drop the connection as a network fault would: the session keeps the other four
        # and the broker redelivers them on the next connection, not the acknowledged six.
        assert r._sock is not None
        r._sock.shutdown(2)
        again = _take(out, 4)
        assert sorted(m.payload for m in again) == [f'{{"n":{i}}}'.encode() for i in range(6, 10)]
        assert {m.generation for m in again} == {2}
        # An old connection's ids are never acknowledged on the new one.
        assert r.ack(got[6:]) == 0
        assert r.ack(again) == 4
        pub.publish(f"{topic}/x", b"{}", qos=1).wait_for_publish(5)
        assert _take(out, 1)[0].topic == f"{topic}/x"
        assert out.empty()
    finally:
        pub.loop_stop()
        pub.disconnect()


def test_wrong_credentials_are_reported_not_retried_silently(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    a = Address.parse(stack.mqtt_url)
    url = f"mqtt://{a.username}:wrong@{a.host}:{a.port}"
    r = Receiver(url, client_id="test-recv-bad", out=queue.SimpleQueue(), clock=lambda: T0)
    with caplog.at_level(logging.WARNING, "estate.ingest"):
        with pytest.raises(ConnectionError, match="check MQTT_URL"):
            r.start(timeout=2)
        r.stop()
    assert "refused the ingest connection: not authorised" in caplog.text
    assert r.generation == 0


def test_a_malformed_packet_from_the_broker_reconnects_instead_of_stopping(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A PUBLISH cut short (its topic longer than the packet) drops the connection with a
    message that says so; the receiver connects again and goes on receiving."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    good = _publish("estate/v1/E/elevator/L1/telemetry", b"{}", 7)

    def broker() -> None:
        for first in (b"\x32\x04\x00\x09ab", good):  # topic length 9, two bytes of it
            conn, _ = server.accept()
            conn.recv(1024)  # CONNECT
            conn.sendall(b"\x20\x02\x00\x00")  # CONNACK: accepted
            packet_id = conn.recv(1024)[2:4]  # SUBSCRIBE
            conn.sendall(b"\x90\x03" + packet_id + b"\x01")  # SUBACK: QoS 1
            conn.sendall(first)
            if first == good:
                conn.recv(1024)  # the PUBACK (or the DISCONNECT at stop)
            conn.close()

    threading.Thread(target=broker, daemon=True).start()
    out: queue.SimpleQueue[Incoming] = queue.SimpleQueue()
    r = Receiver(
        f"mqtt://127.0.0.1:{port}", client_id="t", out=out, clock=lambda: T0, reconnect=(0.1, 1)
    )
    r.subscribe({"estate/v1/#"})
    with caplog.at_level(logging.WARNING, "estate.ingest"):
        r.start(timeout=5)
        m = out.get(timeout=10)
        r.stop()
    server.close()
    assert (m.topic, m.mid, m.generation) == ("estate/v1/E/elevator/L1/telemetry", 7, 2)
    assert "lost the broker (protocol error" in caplog.text
