"""Mosquitto credential files: password hashes and ACLs, written without mosquitto_passwd.

Mosquitto 2.0 reads ``user:$7$<iterations>$<salt b64>$<PBKDF2-HMAC-SHA512 b64>`` lines;
computing them here lets the registry write thousands of device credentials in one pass.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

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
    u = urlsplit(mqtt_url)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"estate-{name}-{os.getpid()}",
        protocol=mqtt.MQTTv311,
    )  # fmt: skip
    if u.username:
        client.username_pw_set(unquote(u.username), unquote(u.password or ""))
    client.reconnect_delay_set(1, 30)
    client.connect_async(u.hostname or "127.0.0.1", u.port or 1883)
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
        client.loop_stop()
        client.disconnect()
