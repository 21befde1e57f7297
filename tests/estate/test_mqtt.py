"""Authenticated MQTT through the session's private Mosquitto."""

from __future__ import annotations

import queue
import threading
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def _client(stack: Stack, *, username: str | None, password: str | None) -> tuple[mqtt.Client, int]:
    url = urlsplit(stack.mqtt_url)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    if username is not None:
        c.username_pw_set(username, password)
    assert url.port is not None
    return c, url.port


def _service_client(stack: Stack) -> tuple[mqtt.Client, int]:
    url = urlsplit(stack.mqtt_url)
    return _client(stack, username=url.username, password=unquote(url.password or ""))


def _connect_result(c: mqtt.Client, port: int) -> ReasonCode:
    result: queue.Queue[ReasonCode] = queue.Queue()
    c.on_connect = lambda _c, _u, _f, rc, _p: result.put(rc)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        return result.get(timeout=10)
    finally:
        c.disconnect()
        c.loop_stop()


def test_authenticated_qos1_round_trip(stack: Stack, estate_code: str) -> None:
    topic = f"estate/v1/{estate_code}/elevator/L1/telemetry"
    payload = b'{"ts": 1795312800120, "seq": 1, "values": {"floor": 3}}'
    got: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    subscribed = threading.Event()

    sub, port = _service_client(stack)
    sub.on_message = lambda _c, _u, msg: got.put(msg)
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.on_connect = lambda c, _u, _f, rc, _p: c.subscribe(topic, qos=1)
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    try:
        assert subscribed.wait(10), "subscription was not acknowledged"
        pub, _ = _service_client(stack)
        pub.connect("127.0.0.1", port)
        pub.loop_start()
        info = pub.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout=10)
        assert info.is_published()
        pub.disconnect()
        pub.loop_stop()
        msg = got.get(timeout=10)
        assert (msg.topic, msg.payload, msg.qos) == (topic, payload, 1)
    finally:
        sub.disconnect()
        sub.loop_stop()


@pytest.mark.parametrize(
    ("username", "password"),
    [
        pytest.param(None, None, id="anonymous"),
        pytest.param("estate-service", "wrong-password", id="wrong-password"),
        pytest.param("nobody", "x", id="unknown-user"),
    ],
)
def test_broker_refuses_clients_without_valid_credentials(
    stack: Stack, username: str | None, password: str | None
) -> None:
    c, port = _client(stack, username=username, password=password)
    rc = _connect_result(c, port)
    assert rc.is_failure
    assert rc.getName() == "Not authorized"
