"""The one MQTT module: broker addresses, clients, publishing, device credentials.

Every paho client of the project is made here (``new_client``) from an ``Address`` parsed
once from a URL (``mqtt://user:password@host:port``); callers add only their callbacks.
The protocol is MQTT 3.1.1, what the device contract and Mosquitto 2.0 speak.

Mosquitto credential files are written here too, without mosquitto_passwd: Mosquitto 2.0
reads ``user:$7$<iterations>$<salt b64>$<PBKDF2-HMAC-SHA512 b64>`` lines; computing them
lets the registry write thousands of device credentials in one pass.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

DEFAULT_PORT = 1883


class MqttError(RuntimeError):
    """The broker refused or did not answer a connection; the message says which and why."""


@dataclass(frozen=True)
class Address:
    """Where a broker is and who logs in: the parsed form of an MQTT URL. ``others``: the
    further nodes of a clustered broker, tried in turn when the current one fails."""

    host: str
    port: int = DEFAULT_PORT
    username: str | None = None
    password: str | None = None
    others: tuple[tuple[str, int], ...] = ()

    @classmethod
    def parse(cls, url: str) -> Address:
        """``mqtt://[user[:password]@]host[:port][,host[:port]...]``; percent-escapes in
        the login decoded. Several hosts (libpq's multi-host form) are one clustered
        broker's nodes: clients connect to the first and fail over to the next."""
        u = urlsplit(url)
        login, _, hosts = u.netloc.rpartition("@")
        first, *rest = hosts.split(",")
        head = urlsplit(f"mqtt://{login}@{first}" if login else f"mqtt://{first}")
        others = []
        for h in rest:
            n = urlsplit(f"mqtt://{h}")
            others.append((n.hostname or "127.0.0.1", n.port or DEFAULT_PORT))
        return cls(
            host=head.hostname or "127.0.0.1",
            port=head.port or DEFAULT_PORT,
            username=unquote(head.username) if head.username else None,
            password=unquote(head.password or "") if head.username else None,
            others=tuple(others),
        )

    def login(self, username: str, password: str) -> Address:
        """The same broker with another login (a device's own)."""
        return Address(self.host, self.port, username, password, self.others)

    @property
    def nodes(self) -> tuple[tuple[str, int], ...]:
        """Every (host, port) of the broker, the first first."""
        return ((self.host, self.port), *self.others)


class _FailoverClient(mqtt.Client):
    """A paho client that, when (re)connecting to the current node fails, moves to the
    next node of a clustered broker (paho itself reconnects to one host only). Sessions
    are the cluster's, so a persistent session resumes on the next node."""

    def __init__(self, *args: Any, nodes: tuple[tuple[str, int], ...], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._nodes = nodes
        self._at = 0

    def reconnect(self) -> MQTTErrorCode:
        try:
            return super().reconnect()
        except OSError:
            # paho's host/port setters refuse while a lost connection is being retried
            self._at = (self._at + 1) % len(self._nodes)
            self._host, self._port = self._nodes[self._at]
            raise


def new_client(
    address: Address,
    client_id: str,
    *,
    clean_session: bool | None = None,
    manual_ack: bool = False,
    reconnect: tuple[int, int] = (1, 30),
) -> mqtt.Client:
    """A paho client (callback API 2, MQTT 3.1.1) with ``address``'s login set and
    reconnection backing off between ``reconnect`` seconds, moving on to the next node
    when ``address`` has several; not connected yet."""
    options: dict[str, Any] = {
        "client_id": client_id,
        "clean_session": clean_session,
        "protocol": mqtt.MQTTv311,
        "manual_ack": manual_ack,
    }
    c = (
        _FailoverClient(CallbackAPIVersion.VERSION2, nodes=address.nodes, **options)
        if address.others
        else mqtt.Client(CallbackAPIVersion.VERSION2, **options)
    )
    if address.username is not None:
        c.username_pw_set(address.username, address.password or "")
    c.reconnect_delay_set(*reconnect)
    return c


def close(client: mqtt.Client) -> None:
    """Disconnect, stop the network thread and close the client's sockets.

    paho 2.x leaves the wake-up socket pair that ``loop_start`` opens to ``__del__``;
    a client in a reference cycle (its callbacks are bound methods) is collected by the
    cycle collector, which may finalise those sockets first: a ResourceWarning at a
    random later moment (an error in the test suite). Closing them here is deterministic.
    """
    with contextlib.suppress(Exception):
        client.disconnect()
    client.loop_stop()
    client._reset_sockets()


def connect_and_wait(
    client: mqtt.Client, address: Address, *, who: str, timeout: float = 10.0
) -> None:
    """Connect, start the network loop and wait for CONNACK; raises ``MqttError`` saying
    whether the broker refused (and why) or never answered."""
    done = threading.Event()
    result: list[Any] = []

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        result.append(rc)
        done.set()

    client.on_connect = on_connect
    client.connect(address.host, address.port, keepalive=30)
    client.loop_start()
    if not done.wait(timeout) or result[0].is_failure:
        close(client)
        if not result:
            raise MqttError(f"{who}: no answer from the broker at {address.host}:{address.port}")
        raise MqttError(
            f"{who}: broker refused the connection ({result[0]}); check its "
            "credentials (`estate simulate` syncs them for the private broker)"
        )


_ITERATIONS = 101  # mosquitto_passwd's own default for $7$ hashes
SERVICE_ACCOUNT = "estate-service"


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """Return a Mosquitto 2.0 ``$7$`` password hash for ``password``."""
    salt = secrets.token_bytes(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, _ITERATIONS)
    b64 = base64.b64encode
    return f"$7${_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


@dataclass(frozen=True)
class AclEntry:
    """One ``user`` block of an ACL file: topics the user may read, write or both."""

    user: str
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    readwrite: tuple[str, ...] = ()


def service_acl() -> AclEntry:
    """The service account reads every estate topic and publishes alerts and notifications."""
    return AclEntry(user=SERVICE_ACCOUNT, readwrite=("estate/#",), read=("$SYS/#",))


def render_acl(entries: Iterable[AclEntry]) -> str:
    """ACL file text; anything not listed is denied (Mosquitto's default with an ACL file)."""
    out: list[str] = []
    for e in entries:
        out.append(f"user {e.user}")
        out.extend(f"topic read {t}" for t in e.read)
        out.extend(f"topic write {t}" for t in e.write)
        out.extend(f"topic readwrite {t}" for t in e.readwrite)
        out.append("")
    return "\n".join(out)


def write_private(path: Path, text: str, *, owner: tuple[int, int] | None = None) -> None:
    """Write ``text`` atomically with mode 0600 (optionally chowned to ``owner``)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    if owner is not None:
        os.chown(tmp, *owner)
    os.replace(tmp, path)


def render_passwords(users: dict[str, str]) -> str:
    """Password file text for ``{user: clear-text password}``."""
    return "".join(f"{user}:{hash_password(pw)}\n" for user, pw in sorted(users.items()))


# --------------------------------------------------------------------------- devices


def device_username(estate: str, device: str) -> str:
    """A device's MQTT user name. Codes never contain '.', so the pair stays unambiguous."""
    return f"{estate}.{device}"


def device_password(secret: str, estate: str, device: str) -> str:
    """A device's password, derived from the deployment secret (HMAC-SHA256).

    Deriving instead of storing lets the broker files and the simulators agree on
    100,000 devices without a password table; rotating the secret rotates them all.
    """
    mac = hmac.new(secret.encode(), device_username(estate, device).encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:18]).decode()


def device_acl(estate: str, kind: str, device: str) -> AclEntry:
    """A device may publish only under its own topics (and read nothing)."""
    return AclEntry(
        user=device_username(estate, device), write=(f"estate/v1/{estate}/{kind}/{device}/#",)
    )


def write_broker_files(
    directory: Path,
    *,
    service_password: str,
    secret: str,
    devices: Iterable[tuple[str, str, str]],
    owner: tuple[int, int] | None = None,
) -> int:
    """Write ``passwd`` (every (estate, kind, device)), ``passwd-service`` (the service
    account) and ``acl`` (both).

    The broker has two listeners (``estate.services.PrivateMosquitto``): devices log in
    on theirs with ``passwd`` and ``use_username_as_clientid``, so a device's client id
    is always its own login and no device can take over a worker's or another device's
    session; the service logs in on its own with ``passwd-service``, where device logins
    are refused. Returns the number of devices written; the broker re-reads the files on
    SIGHUP.
    """
    users: dict[str, str] = {}
    acl = [service_acl()]
    for estate, kind, device in devices:
        users[device_username(estate, device)] = device_password(secret, estate, device)
        acl.append(device_acl(estate, kind, device))
    write_private(directory / "passwd", render_passwords(users), owner=owner)
    write_private(
        directory / "passwd-service",
        render_passwords({SERVICE_ACCOUNT: service_password}),
        owner=owner,
    )
    write_private(directory / "acl", render_acl(acl), owner=owner)
    return len(users)


@contextlib.contextmanager
def service_publisher(mqtt_url: str, name: str) -> Iterator[Callable[[str, bytes], None]]:
    """A QoS 1 publisher as the service account; ``publish`` returns once the broker has
    the message and raises when it has not within 10 s."""
    address = Address.parse(mqtt_url)
    client = new_client(address, f"estate-{name}-{os.getpid()}")
    client.connect_async(address.host, address.port)
    client.loop_start()
    deadline = time.monotonic() + 10
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.02)  # not fatal: publish raises until connected, and callers retry

    def publish(topic: str, body: bytes) -> None:
        info = client.publish(topic, body, qos=1)
        info.wait_for_publish(timeout=10)
        if not info.is_published():
            raise TimeoutError(f"the broker did not acknowledge {topic} within 10 s")

    try:
        yield publish
    finally:
        close(client)
