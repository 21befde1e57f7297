"""Notifications: written to an outbox with the change they report, delivered after.

``tell`` and ``stream`` insert ``notifications`` rows in the caller's transaction, so a
work order is never dispatched without its notification and never notified without
being stored. The ``Notifier`` delivers due rows through a ``Sender`` per channel and
keeps every outcome (attempts, last error, sent time): the delivery log.

Channels:
- ``mqtt``: one topic per organisation, ``estate/v1/orgs/{org}/notifications`` (QoS 1).
- ``webhook``: a POST per registered URL of the organisation, signed with its secret
  (``X-Estate-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">``, checked by
  ``verify_signature``), retried with backoff on network errors, 408, 429 and 5xx;
  another 4xx fails at once (the receiver refuses it: retrying will not help).
- ``stream``: the live feed of one order, ``estate/v1/{estate}/workorders/{id}``.

Another channel (SMS, WeCom) is a ``Sender`` and a target rule in ``tell``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
from psycopg.types.json import Jsonb

from estate.db import Conn

log = logging.getLogger("estate.notify")


def org_topic(org: str) -> str:
    return f"estate/v1/orgs/{org}/notifications"


def order_topic(estate: str, order_id: int) -> str:
    return f"estate/v1/{estate}/workorders/{order_id}"


def tell(
    conn: Conn,
    *,
    org: str | None,
    channels: Sequence[str],
    event: str,
    payload: Mapping[str, Any],
    now: dt.datetime,
    order_id: int | None = None,
) -> int:
    """Queue ``event`` for organisation ``org`` on each of its ``channels``; returns how
    many deliveries were queued (an organisation with no webhook gets none there)."""
    if org is None:
        return 0
    body = Jsonb({"event": event, **payload})
    n = 0
    if "mqtt" in channels:
        conn.execute(
            "INSERT INTO notifications (order_id, org_code, channel, target, event, payload,"
            " next_attempt_at, created_at) VALUES (%s, %s, 'mqtt', %s, %s, %s, %s, %s)",
            (order_id, org, org_topic(org), event, body, now, now),
        )
        n += 1
    if "webhook" in channels:
        cur = conn.execute(
            "INSERT INTO notifications (order_id, org_code, channel, target, event, payload,"
            " next_attempt_at, created_at)"
            " SELECT %s, org_code, 'webhook', url, %s, %s, %s, %s FROM webhooks"
            " WHERE org_code = %s AND active",
            (order_id, event, body, now, now, org),
        )
        n += cur.rowcount
    return n


def stream(
    conn: Conn,
    *,
    topic: str,
    event: str,
    payload: Mapping[str, Any],
    now: dt.datetime,
    order_id: int | None = None,
) -> None:
    """Queue ``event`` for the live stream on ``topic``."""
    conn.execute(
        "INSERT INTO notifications (order_id, channel, target, event, payload,"
        " next_attempt_at, created_at) VALUES (%s, 'stream', %s, %s, %s, %s, %s)",
        (order_id, topic, event, Jsonb({"event": event, **payload}), now, now),
    )


# ---------------------------------------------------------------------- senders


class DeliveryError(Exception):
    """A delivery failed; ``retry`` says whether trying again may help."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class Delivery:
    id: int
    channel: str
    target: str
    event: str
    body: bytes
    secret: str | None  # webhooks only
    attempts: int


class Sender(Protocol):
    def send(self, d: Delivery, now: dt.datetime) -> None:
        """Deliver or raise ``DeliveryError``."""


class MqttSender:
    """Publishes through ``publish(topic, body)``, which must block until the broker has
    acknowledged (QoS 1) and raise when it cannot."""

    def __init__(self, publish: Callable[[str, bytes], None]) -> None:
        self.publish = publish

    def send(self, d: Delivery, now: dt.datetime) -> None:
        try:
            self.publish(d.target, d.body)
        except Exception as err:  # paho raises several kinds; all mean "not delivered"
            raise DeliveryError(f"MQTT publish to {d.target} failed: {err}") from err


def sign(secret: str, body: bytes, t: int) -> str:
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_signature(
    secret: str, header: str, body: bytes, now: dt.datetime, tolerance_s: int = 300
) -> bool:
    """A receiver's check: the signature matches and is recent (no replays)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now.timestamp() - t) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, t), header)


class WebhookSender:
    def __init__(self, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s

    def send(self, d: Delivery, now: dt.datetime) -> None:
        if d.secret is None:
            raise DeliveryError(f"webhook {d.target} is no longer registered", retry=False)
        req = urllib.request.Request(  # noqa: S310 (the URL is checked to be http(s) in the table)
            d.target,
            data=d.body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "smart-estate-notifier",
                "X-Estate-Event": d.event,
                "X-Estate-Delivery": str(d.id),  # receivers dedupe retries on this
                "X-Estate-Signature": sign(d.secret, d.body, int(now.timestamp())),
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310
                resp.read(1024)
        except urllib.error.HTTPError as err:
            retry = err.code in (408, 429) or err.code >= 500
            raise DeliveryError(f"webhook {d.target} answered {err.code}", retry=retry) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise DeliveryError(f"webhook {d.target} unreachable: {reason}") from None


# ---------------------------------------------------------------------- notifier


@dataclass
class Notifier:
    """Delivers due notifications; a failure is retried after ``backoff_s[attempt]``
    seconds and gives up (state 'failed', logged) after ``len(backoff_s) + 1`` attempts."""

    senders: Mapping[str, Sender]
    backoff_s: Sequence[float] = (5, 30, 120, 600, 1800, 3600, 7200)
    counts: dict[str, int] = field(default_factory=lambda: {"sent": 0, "retry": 0, "failed": 0})

    def deliver(self, conn: Conn, now: dt.datetime, limit: int = 200) -> int:
        """Try every notification due at ``now`` (up to ``limit``); returns how many were
        tried. Several notifiers may run: rows are claimed with SKIP LOCKED."""
        with conn.transaction():
            rows = conn.execute(
                "SELECT n.id, n.channel, n.target, n.event, n.payload, w.secret, n.attempts"
                " FROM notifications n LEFT JOIN webhooks w ON n.channel = 'webhook'"
                " AND w.org_code = n.org_code AND w.url = n.target AND w.active"
                " WHERE n.state = 'pending' AND n.next_attempt_at <= %s"
                " ORDER BY n.next_attempt_at, n.id LIMIT %s FOR UPDATE OF n SKIP LOCKED",
                (now, limit),
            ).fetchall()
            for r in rows:
                body = json.dumps(r[4], ensure_ascii=False, separators=(",", ":")).encode()
                self._one(conn, Delivery(int(r[0]), r[1], r[2], r[3], body, r[5], r[6]), now)
        return len(rows)

    def _one(self, conn: Conn, d: Delivery, now: dt.datetime) -> None:
        sender = self.senders.get(d.channel)
        try:
            if sender is None:
                raise DeliveryError(f"no sender for channel {d.channel!r}", retry=False)
            sender.send(d, now)
        except DeliveryError as err:
            attempts = d.attempts + 1
            give_up = not err.retry or attempts > len(self.backoff_s)
            wait = 0.0 if give_up else self.backoff_s[attempts - 1]
            conn.execute(
                "UPDATE notifications SET attempts = %s, last_error = %s, state = %s,"
                " next_attempt_at = %s WHERE id = %s",
                (
                    attempts,
                    str(err),
                    "failed" if give_up else "pending",
                    now + dt.timedelta(seconds=wait),
                    d.id,
                ),
            )
            self.counts["failed" if give_up else "retry"] += 1
            if give_up:
                log.error(
                    "notification %d (%s) given up after %d attempts: %s",
                    d.id,
                    d.event,
                    attempts,
                    err,
                )
            else:
                log.warning(
                    "notification %d (%s) failed, retry in %.0f s: %s", d.id, d.event, wait, err
                )
            return
        conn.execute(
            "UPDATE notifications SET attempts = attempts + 1, state = 'sent', sent_at = %s,"
            " last_error = NULL WHERE id = %s",
            (now, d.id),
        )
        self.counts["sent"] += 1


# ---------------------------------------------------------------------- webhooks


class WebhookError(ValueError):
    """The webhook cannot be registered; the message says why."""


def add_webhook(conn: Conn, *, org: str, url: str, secret: str) -> None:
    """Register ``org``'s webhook with its signing secret."""
    try:
        conn.execute(
            "INSERT INTO webhooks (org_code, url, secret) VALUES (%s, %s, %s)", (org, url, secret)
        )
    except psycopg.errors.ForeignKeyViolation:
        raise WebhookError(f"organisation {org!r} is not in the registry") from None
    except psycopg.errors.CheckViolation:
        raise WebhookError(f"{url!r} is not an http(s) URL") from None
    except psycopg.errors.UniqueViolation:
        raise WebhookError(f"{org} has that webhook already") from None


def webhooks(conn: Conn) -> list[tuple[str, str, bool]]:
    """(organisation, URL, active) of every webhook."""
    rows = conn.execute("SELECT org_code, url, active FROM webhooks ORDER BY org_code, url")
    return [(str(o), str(u), bool(a)) for o, u, a in rows]
