"""The clustered deployment on loopback (issue 21): three NATS nodes with JetStream and MQTT,
two ingest worker processes sharing the partitions by lease, the real database.

Devices publish numbered QoS 1 messages for many estates to all three nodes while a broker
node and an ingest worker are killed (SIGKILL) mid-run. Afterwards every message a device
got a PUBACK for is stored exactly once, no partition was ever held by two workers, every
partition is held again, and the takeover time is printed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest

from estate import registry
from estate.cluster import LocalCluster, client_id, partition_of
from estate.mqtt import (
    Address,
    close,
    connect_and_wait,
    device_password,
    device_username,
    new_client,
)
from estate.services import PrivatePostgres, load_secrets
from ingest import contract
from ingest.cluster import held_partitions
from tests.support.data import count
from tests.support.pipeline import wait_for
from tests.support.stack import Stack, free_base

pytestmark = pytest.mark.integration

ESTATES = 24
PARTITIONS = 8
PER_DEVICE = 150


def world() -> str:
    estates = "\n".join(
        f"  - {{code: C{i:02d}, name: 小区{i}, area: D, buildings: [{{code: B1, name: 1号楼,"
        f" floors: 9, devices: [{{code: L1, kind: elevator, subtype: passenger}}]}}]}}"
        for i in range(ESTATES)
    )
    return (
        "version: 1\nareas:\n  - {code: C, name: 市, level: city}\n"
        "  - {code: D, name: 区, level: district, parent: C}\n"
        f"organisations: []\nestates:\n{estates}\n"
    )


@pytest.fixture
def cluster(stack: Stack, database_url: str) -> Iterator[tuple[LocalCluster, dict[str, str]]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        registry.load(conn, registry.parse(world()))
        devices = [(str(e), str(k), str(c)) for e, k, c in conn.execute(
            "SELECT estate_code, kind, code FROM devices ORDER BY 1")]  # fmt: skip
    settings = stack.settings.model_copy(
        update={"cluster_port": free_base(), "cluster_partitions": PARTITIONS}
    )
    c = LocalCluster(settings)
    # each test its own log: the stack's var dir outlives a test's database, and a log left
    # by the test before would deliver that test's messages into this one's database (its
    # seq 71 next to this test's seq 71: "stored twice")
    shutil.rmtree(c.root, ignore_errors=True)
    env = {
        **os.environ, "DATABASE_URL": database_url, "ESTATE_VAR_DIR": str(settings.var_dir),
        "ESTATE_CLUSTER_PORT": str(settings.cluster_port),
        "ESTATE_CLUSTER_PARTITIONS": str(PARTITIONS), "ESTATE_ENVIRONMENT": "test",
    }  # fmt: skip
    try:
        c.up(devices)
        yield c, env
    finally:
        c.down()
        shutil.rmtree(c.root, ignore_errors=True)


def start_worker(env: dict[str, str], name: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", "ingest", "--cluster", "--name", name],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each worker still running; SIGKILL one that has not left within 60 s."""
    for w in workers:
        if w.poll() is None:
            w.send_signal(signal.SIGTERM)
            try:
                w.wait(60)
            except subprocess.TimeoutExpired:
                w.kill()


def every_partition_held(database_url: str) -> bool:
    return sum(len(p) for p in held_partitions(database_url).values()) == PARTITIONS


class Device:
    """One lift publishing numbered readings over QoS 1 to one node; ``acked`` holds the
    sequence numbers the node acknowledged."""

    def __init__(self, c: LocalCluster, secret: str, estate: str, port: int) -> None:
        self.estate = estate
        login = Address("127.0.0.1", port).login(
            device_username(estate, "L1"), device_password(secret, estate, "L1")
        )
        self.client = new_client(login, client_id(estate, "L1"), clean_session=True)
        self.client.max_inflight_messages_set(20)
        self.mids: dict[int, int] = {}
        self.acked: set[int] = set()
        self.early: set[int] = set()
        self.lock = threading.Lock()
        self.client.on_publish = self._on_publish
        connect_and_wait(self.client, login, who=f"device {estate}/L1")

    # paho calls on_publish on its network thread holding its own lock, and publish()
    # takes that lock: so publish() is never called while holding ours (a deadlock that
    # showed under load), and a PUBACK may arrive before the mid is recorded ("early")
    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, *_: object) -> None:
        with self.lock:
            seq = self.mids.pop(mid, None)
            if seq is None:
                self.early.add(mid)
            else:
                self.acked.add(seq)

    def send(self, seq: int) -> None:
        now = dt.datetime.now(dt.UTC)
        body = contract.telemetry(now, seq, {"floor": float(seq % 9 + 1)})
        topic = f"estate/v1/{self.estate}/elevator/L1/telemetry"
        info = self.client.publish(topic, contract.dumps(body), qos=1)
        with self.lock:
            if info.mid in self.early:
                self.early.discard(info.mid)
                self.acked.add(seq)
            else:
                self.mids[info.mid] = seq


def stored_once(
    database_url: str, acked: set[tuple[str, int]]
) -> tuple[set[tuple[str, int]], dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """Waits until every acknowledged (estate, seq) is stored; (missing, stored more than
    once, all stored) then."""

    def stored_now() -> dict[tuple[str, int], int]:
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                "SELECT v.estate_code, t.seq, count(*) FROM telemetry t"
                " JOIN devices v ON v.id = t.device_id GROUP BY 1, 2"
            ).fetchall()
        return {(str(e), int(s)): int(n) for e, s, n in rows}

    with contextlib.suppress(AssertionError):  # a loss is reported by the caller, with keys
        wait_for(lambda: not acked - stored_now().keys(), 120,
                 "every acknowledged message stored")  # fmt: skip
    stored = stored_now()
    return acked - stored.keys(), {k: n for k, n in stored.items() if n > 1}, stored


def test_every_acknowledged_message_survives_a_dead_node_and_a_dead_worker(
    cluster: tuple[LocalCluster, dict[str, str]], database_url: str, tmp_path: Path
) -> None:
    c, env = cluster
    secret = load_secrets(c.settings.var_dir)["device_secret"]
    workers = [start_worker(env, f"w{i}", tmp_path / f"w{i}.log") for i in (1, 2)]
    try:
        wait_for(lambda: every_partition_held(database_url)
                 and len(held_partitions(database_url)) == 2, 60,
                 "both workers holding their share")  # fmt: skip
        # the devices: estates spread over the nodes (node 2 is the one to die)
        estates = [f"C{i:02d}" for i in range(ESTATES)]
        devices = [Device(c, secret, e, c.nodes[i % 3].mqtt_port) for i, e in enumerate(estates)]
        overlaps: list[dict[int, list[int]]] = []
        watching = threading.Event()

        def watch() -> None:  # no partition is ever held by two lease sessions
            while not watching.is_set():
                held = held_partitions(database_url)
                every = [k for parts in held.values() for k in parts]
                if len(every) != len(set(every)):
                    overlaps.append(held)
                time.sleep(0.1)

        # an event (through the event lane and the main path) and a topic no mapping
        # matches (a device's own subtree, but not a message type): a dead letter, not lost
        oops = devices[0].client.publish(
            f"estate/v1/{devices[0].estate}/elevator/L1/bogus", b"{}", qos=1
        )
        event = contract.event(dt.datetime.now(dt.UTC), 10_000, "overspeed", {"mps": 2.4})
        devices[2].client.publish(
            f"estate/v1/{devices[2].estate}/elevator/L1/event", contract.dumps(event), qos=1
        ).wait_for_publish(10)
        oops.wait_for_publish(10)
        # a device may publish only its own subjects: one lift's reading forged by another
        # is acknowledged (MQTT 3.1.1 lets a broker drop what it refuses) and stored nowhere
        forged = contract.telemetry(dt.datetime.now(dt.UTC), 99_999, {"floor": 1.0})
        devices[0].client.publish(
            f"estate/v1/{devices[1].estate}/elevator/L1/telemetry", contract.dumps(forged), qos=1
        ).wait_for_publish(10)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        killed_at = 0.0
        for seq in range(1, PER_DEVICE + 1):
            for d in devices:
                d.send(seq)
            if seq == PER_DEVICE // 3:
                workers[0].send_signal(signal.SIGKILL)  # mid-batch: it held half the log
                killed_at = time.monotonic()
            if seq == PER_DEVICE // 2:
                c.stop_node(c.nodes[1], signal.SIGKILL)
            time.sleep(0.01)
        # the survivor holds every partition: the takeover
        wait_for(lambda: held_partitions(database_url).get(
            next(iter(held_partitions(database_url)), 0), []) == list(range(PARTITIONS)),
            60, "the survivor holding every partition")  # fmt: skip
        takeover = time.monotonic() - killed_at
        # the devices' last PUBACKs: until each has none outstanding (those on the dead node
        # never get theirs)
        wait_for(lambda: all(not d.mids for i, d in enumerate(devices) if i % 3 != 1), 60,
                 "the devices' PUBACKs")  # fmt: skip
        acked = {(d.estate, s) for d in devices for s in d.acked}

        missing, twice, stored = stored_once(database_url, acked)
        watching.set()
        watcher.join(5)
        by_node = [sum(len(d.acked) for i, d in enumerate(devices) if i % 3 == n) for n in range(3)]
        print(
            f"\ncluster: {len(acked)} messages acknowledged (by node {by_node}),"
            f" {len(stored)} stored,"
            f" takeover of a killed worker's partitions {takeover:.1f} s"
            f" (node 2 killed too; {PARTITIONS} partitions,"
            f" {len({partition_of(e, PARTITIONS) for e in estates})} in use)"
        )
        assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:5]}"
        assert not twice, f"stored more than once: {list(twice.items())[:5]}"
        assert not overlaps, f"a partition held twice: {overlaps[:2]}"
        wait_for(lambda: count(database_url, "SELECT count(*) FROM dead_letters WHERE topic ="
                               " %s", f"estate/v1/{estates[0]}/elevator/L1/bogus") == 1, 30,
                 "the wrong topic as a dead letter")  # fmt: skip
        assert count(database_url, "SELECT count(*) FROM events WHERE code = 'overspeed'") == 1
        assert count(database_url, "SELECT count(*) FROM telemetry WHERE seq = 99999") == 0
        wait_for(lambda: count(database_url, "SELECT count(*) FROM alerts WHERE estate_code = %s"
                               " AND alert_type = 'elevator.overspeed'", estates[2]) == 1, 30,
                 "the overspeed alert")  # fmt: skip
        # publishing went on through both kills: the devices on the surviving nodes got
        # PUBACKs for readings sent after node 2 died
        late = {d.estate for d in devices if max(d.acked, default=0) > PER_DEVICE // 2 + 10}
        survivors = {d.estate for i, d in enumerate(devices) if i % 3 != 1}
        assert late >= survivors, sorted(survivors - late)
        for d in devices:
            close(d.client)
    finally:
        stop_workers(workers)


def test_a_database_restart_loses_nothing_on_the_cluster(
    cluster: tuple[LocalCluster, dict[str, str]], stack: Stack, database_url: str, tmp_path: Path
) -> None:
    """PostgreSQL stops for a few seconds mid-run under two workers: their leases die with
    it, the workers stop their partitions and wait; when it is back they hold every
    partition again and every acknowledged message is stored exactly once (what was not
    committed is read again from the log's ack floor)."""
    c, env = cluster
    secret = load_secrets(c.settings.var_dir)["device_secret"]
    workers = [start_worker(env, f"w{i}", tmp_path / f"w{i}.log") for i in (1, 2)]
    pg = PrivatePostgres(stack.settings, stack.services.runner)
    try:
        wait_for(lambda: every_partition_held(database_url), 60,
                 "the workers holding every partition")  # fmt: skip
        estates = [f"C{i:02d}" for i in range(ESTATES)]
        devices = [Device(c, secret, e, c.nodes[i % 3].mqtt_port) for i, e in enumerate(estates)]
        down = 0.0
        for seq in range(1, PER_DEVICE + 1):
            for d in devices:
                d.send(seq)
            if seq == PER_DEVICE // 3:
                pg.stop()
                down = time.monotonic()
            if seq == PER_DEVICE // 2:
                time.sleep(max(0.0, 3.0 - (time.monotonic() - down)))
                pg.start()
            time.sleep(0.01)
        wait_for(lambda: all(not d.mids for d in devices), 60, "the devices' PUBACKs")
        acked = {(d.estate, s) for d in devices for s in d.acked}
        assert len(acked) == ESTATES * PER_DEVICE  # the log took them all while PG was down
        missing, twice, _ = stored_once(database_url, acked)
        assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:5]}"
        assert not twice, f"stored more than once: {list(twice.items())[:5]}"
        wait_for(lambda: every_partition_held(database_url), 60, "every partition held again")
        logs = "".join((tmp_path / f"w{i}.log").read_text() for i in (1, 2))
        assert "lease lost" in logs  # they did see the outage
        for d in devices:
            close(d.client)
    finally:
        pg.start()  # no-op when it runs
        stop_workers(workers)


def test_the_service_clients_move_to_another_node_when_theirs_dies(
    cluster: tuple[LocalCluster, dict[str, str]], database_url: str, tmp_path: Path
) -> None:
    """The alert stage's output and a subscriber of the changes (as the API's live stream
    and the supervisor connect: the service URL lists every node) both start on node 1;
    node 1 is killed; an alert raised afterwards still reaches the subscriber."""
    c, env = cluster
    secret = load_secrets(c.settings.var_dir)["device_secret"]
    address = Address.parse(c.service_mqtt_url)
    assert [p for _, p in address.nodes] == [n.mqtt_port for n in c.nodes]
    worker = start_worker(env, "w1", tmp_path / "w1.log")
    seen: list[str] = []
    got = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        seen.append(m.topic)
        got.set()

    sub = new_client(address, "test-alerts", clean_session=False)
    sub.on_message = on_message
    try:
        connect_and_wait(sub, address, who="the alerts subscriber")
        sub.subscribe("estate/v1/+/alerts/#", qos=1)
        wait_for(lambda: every_partition_held(database_url), 60,
                 "the worker holding every partition")  # fmt: skip
        devices = [Device(c, secret, f"C{i:02d}", c.nodes[i % 3].mqtt_port) for i in (1, 2)]

        def overspeed(d: Device) -> None:
            event = contract.event(dt.datetime.now(dt.UTC), 1, "overspeed", {"mps": 2.4})
            d.client.publish(
                f"estate/v1/{d.estate}/elevator/L1/event", contract.dumps(event), qos=1
            ).wait_for_publish(10)

        overspeed(devices[1])  # through node 3; the worker's output is on node 1
        assert got.wait(30), "no alert before the kill"
        assert seen[-1].startswith("estate/v1/C02/alerts/")
        got.clear()
        c.stop_node(c.nodes[0], signal.SIGKILL)
        overspeed(devices[0])  # through node 2
        assert got.wait(60), f"the alert raised after node 1 died never arrived: {seen}"
        assert seen[-1].startswith("estate/v1/C01/alerts/")
        for d in devices:
            close(d.client)
    finally:
        close(sub)
        stop_workers([worker])
