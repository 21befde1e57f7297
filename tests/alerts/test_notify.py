"""Notifications: webhooks to a real HTTP server (signed, retried with backoff, every
attempt logged), MQTT through the real broker, and what is given up and why."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from alerts import notify
from alerts.notify import MqttSender, Notifier, WebhookSender
from estate.db import Conn
from tests.support.data import T0
from tests.support.pipeline import wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


class Receiver:
    """A webhook receiver that answers ``codes`` in turn (then 200) and keeps requests."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = list(codes)
        self.got: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.got.append((dict(self.headers), body))
                self.send_response(outer.codes.pop(0) if outer.codes else 200)
                self.end_headers()

            def log_message(self, *_a: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def queue(conn: Conn, org: str, *, channels: tuple[str, ...], now: dt.datetime) -> int:
    return notify.tell(
        conn,
        org=org,
        channels=channels,
        event="workorder.dispatched",
        payload={"id": 7, "state": "dispatched", "device": "B1-L1"},
        now=now,
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([503, 500])
    yield r
    r.close()


def test_webhook_is_signed_retried_with_backoff_and_logged(
    county: Conn, receiver: Receiver
) -> None:
    conn = county
    conn.execute(
        "INSERT INTO webhooks (org_code, url, secret) VALUES ('EM-TS', %s, 's3cret')",
        (receiver.url,),
    )
    assert queue(conn, "EM-TS", channels=("webhook",), now=T0) == 1
    n = Notifier({"webhook": WebhookSender(timeout_s=5)}, backoff_s=(10, 60, 300))
    now = dt.datetime.now(dt.UTC)  # signatures carry real time: receivers reject old ones
    assert n.deliver(conn, now) == 1  # 503
    assert n.deliver(conn, now + dt.timedelta(seconds=9)) == 0  # backing off
    assert n.deliver(conn, now + dt.timedelta(seconds=10)) == 1  # 500
    assert n.deliver(conn, now + dt.timedelta(seconds=69)) == 0
    assert n.deliver(conn, now + dt.timedelta(seconds=70)) == 1  # 200
    row = conn.execute("SELECT state, attempts, last_error, sent_at FROM notifications").fetchone()
    assert row is not None
    assert row[:3] == ("sent", 3, None)
    assert len(receiver.got) == 3
    for headers, body in receiver.got:
        assert headers["X-Estate-Event"] == "workorder.dispatched"
        assert notify.verify_signature("s3cret", headers["X-Estate-Signature"], body, now)
        assert not notify.verify_signature("other", headers["X-Estate-Signature"], body, now)
        assert json.loads(body)["device"] == "B1-L1"
    # one delivery id across the retries: the receiver can drop duplicates
    assert len({h["X-Estate-Delivery"] for h, _ in receiver.got}) == 1
    # a replayed signature is refused once it is old
    h, body = receiver.got[0]
    later = now + dt.timedelta(seconds=600)
    assert not notify.verify_signature("s3cret", h["X-Estate-Signature"], body, later)


def test_a_refusing_or_absent_receiver_is_given_up_with_the_reason(county: Conn) -> None:
    conn = county
    refusing = Receiver([404])
    try:
        conn.execute(
            "INSERT INTO webhooks (org_code, url, secret) VALUES ('EM-TS', %s, 'x'),"
            " ('EM-TS', 'http://127.0.0.1:9/nothing-listens', 'y')",
            (refusing.url,),
        )
        assert queue(conn, "EM-TS", channels=("webhook",), now=T0) == 2
        n = Notifier({"webhook": WebhookSender(timeout_s=2)}, backoff_s=(1,))
        now = dt.datetime.now(dt.UTC)
        n.deliver(conn, now)
        n.deliver(conn, now + dt.timedelta(seconds=1))
        rows = {
            r[0]: r[1:]
            for r in conn.execute("SELECT target, state, attempts, last_error FROM notifications")
        }
    finally:
        refusing.close()
    state, attempts, error = rows[refusing.url]
    assert (state, attempts) == ("failed", 1)  # 404: retrying will not help
    assert "answered 404" in error
    state, attempts, error = rows["http://127.0.0.1:9/nothing-listens"]
    assert (state, attempts) == ("failed", 2)  # unreachable: retried, then given up
    assert "unreachable" in error


def test_mqtt_notifications_reach_the_units_topic(county: Conn, stack: Stack) -> None:
    conn = county
    u = urlsplit(stack.mqtt_url)
    got: list[tuple[str, bytes]] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t-notify-sub")
    sub.username_pw_set(u.username, unquote(u.password or ""))
    sub.on_message = lambda _c, _u, m: got.append((m.topic, bytes(m.payload)))
    sub.connect("127.0.0.1", u.port or 1883)
    sub.subscribe("estate/v1/orgs/+/notifications", qos=1)
    sub.loop_start()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t-notify-pub")
    pub.username_pw_set(u.username, unquote(u.password or ""))
    pub.connect("127.0.0.1", u.port or 1883)
    pub.loop_start()

    def publish(topic: str, body: bytes) -> None:
        info = pub.publish(topic, body, qos=1)
        info.wait_for_publish(timeout=5)
        if not info.is_published():
            raise RuntimeError("not acknowledged")

    try:
        wait_for(sub.is_connected, 10, "subscriber")
        assert queue(conn, "PF-HX", channels=("mqtt", "webhook"), now=T0) == 1  # no hook
        Notifier({"mqtt": MqttSender(publish)}).deliver(conn, T0)
        wait_for(lambda: bool(got), 10, "the notification")
    finally:
        for c in (sub, pub):
            c.loop_stop()
            c.disconnect()
    topic, body = got[0]
    assert topic == "estate/v1/orgs/PF-HX/notifications"
    assert json.loads(body)["event"] == "workorder.dispatched"
    assert conn.execute("SELECT state FROM notifications").fetchone() == ("sent",)
