"""The private servers of a test session and throw-away databases copied from a
migrated template."""

from __future__ import annotations

import contextlib
import random
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from estate.services import PrivateServices, port_in_use
from estate.settings import Environment, Settings

TEMPLATE = "estate_template"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports. Every socket stays bound until all are: one at a time, the
    kernel may hand out the port it just took back (it did: the service's and the devices'
    MQTT listeners got one port, and the settings refused it)."""
    with contextlib.ExitStack() as held:
        socks = [held.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]


def free_base() -> int:
    """A base port whose node ports (+1..+33) are all free."""
    for _ in range(50):
        # below the kernel's ephemeral range (32768 up): no client socket takes one of
        # these between the check and the nodes' start
        base = random.randrange(20_000, 32_600, 100)
        if not any(port_in_use(base + i) for i in range(1, 34)):
            return base
    raise RuntimeError("no free port range for the cluster")


def make_settings(var_dir: Path) -> Settings:
    """Settings for a private stack in ``var_dir`` on fresh ports, ignoring any external URLs."""
    pg_port, mqtt_port, device_port = free_ports(3)
    return Settings(
        environment=Environment.TEST,
        database_url=None,
        mqtt_url=None,
        var_dir=var_dir,
        pg_port=pg_port,
        mqtt_port=mqtt_port,
        mqtt_device_port=device_port,
    )


@dataclass(frozen=True)
class Stack:
    settings: Settings
    services: PrivateServices
    database_url: str  # the stack's main database ("estate")
    mqtt_url: str
    mqtt_device_url: str  # the devices' listener (client id = login)

    @property
    def device_port(self) -> int:
        return int(self.mqtt_device_url.rsplit(":", 1)[1])

    def url_for(self, dbname: str) -> str:
        return self.database_url.rsplit("/", 1)[0] + "/" + dbname


def copy_template(admin: psycopg.Connection[tuple[Any, ...]], name: str, template: str) -> None:
    """CREATE DATABASE from the migrated template, waiting out a session that is still
    going away from it (a terminated background worker can take a moment)."""
    for attempt in range(50):
        try:
            admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
            return
        except psycopg.errors.ObjectInUse:
            if attempt == 49:
                raise
            time.sleep(0.1)


@contextlib.contextmanager
def scratch_database(stack: Stack, prefix: str) -> Iterator[str]:
    """A migrated database of its own (for module-scoped fixtures); dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin_url = stack.url_for("postgres")
    with psycopg.connect(admin_url, autocommit=True) as c:
        copy_template(c, name, TEMPLATE)
    try:
        yield stack.url_for(name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as c:
            c.execute(f"DROP DATABASE {name} WITH (FORCE)")
