"""Every scenario through the real broker, with per-device credentials and Last Wills:
what arrives is exactly what the simulators reported sending, and all of it is contract."""

from __future__ import annotations

import datetime as dt
import json
import queue
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from estate import registry
from estate.mqtt import MqttError, close
from estate.services import PrivateMosquitto, load_secrets
from ingest import contract
from simulators import runner, scenarios
from tests.support.cli import estate_env, run_estate
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

DEMO = registry.read(registry.demo_path())


@pytest.fixture(scope="module")
def device_secret(stack: Stack) -> str:
    mosq = PrivateMosquitto(stack.settings, stack.services.runner)
    mosq.sync_devices((e.code, d.kind, d.code) for e, _, d in DEMO.devices())
    time.sleep(0.3)  # the broker re-reads its files on SIGHUP
    return load_secrets(stack.settings.var_dir)["device_secret"]


class Listener:
    """A service-account subscriber that keeps live (not retained) messages."""

    def __init__(self, stack: Stack, topic_filter: str) -> None:
        url = urlsplit(stack.mqtt_url)
        self.port = url.port or 1883
        self.got: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(url.username, unquote(url.password or ""))
        ready = threading.Event()
        self.client.on_subscribe = lambda *_a: ready.set()
        self.client.on_connect = lambda c, *_a: c.subscribe(topic_filter, qos=1)
        self.client.on_message = lambda _c, _u, m: None if m.retain else self.got.put(m)
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert ready.wait(10), "subscription not acknowledged"

    def collect(self, at_least: int, timeout: float = 30) -> list[mqtt.MQTTMessage]:
        out: list[mqtt.MQTTMessage] = []
        deadline = time.monotonic() + timeout
        while len(out) < at_least and time.monotonic() < deadline:
            try:
                out.append(self.got.get(timeout=0.2))
            except queue.Empty:
                continue
        time.sleep(0.3)  # anything extra (duplicates) would show up now
        while not self.got.empty():
            out.append(self.got.get())
        return out

    def close(self) -> None:
        close(self.client)


@pytest.fixture
def listener_factory(stack: Stack) -> Iterator[list[Listener]]:
    made: list[Listener] = []
    yield made
    for lis in made:
        lis.close()


@pytest.mark.parametrize("name", sorted(scenarios.load()))
def test_scenario_on_the_wire(
    name: str, stack: Stack, device_secret: str, listener_factory: list[Listener]
) -> None:
    s = scenarios.load()[name]
    listener = Listener(stack, f"estate/v1/{s.estate}/#")
    listener_factory.append(listener)
    fleet = runner.build_fleet(DEMO, seed=7, estates=[s.estate], devices=s.devices)
    pub = runner.MqttPublisher(
        host="127.0.0.1", port=stack.device_port, mode="device", device_secret=device_secret
    )
    start = dt.datetime.now(dt.UTC)
    report = runner.run(
        fleet, pub, start=start, duration_s=s.duration_s, tick_s=s.tick_s, scenario=s
    )
    statuses = len(fleet) + sum(1 for st in s.steps if st.action in {"go_offline", "come_online"})
    msgs = listener.collect(report.total + statuses)

    seqs: dict[tuple[str, str], list[int]] = defaultdict(list)
    status: dict[str, list[bool]] = defaultdict(list)
    end = start + dt.timedelta(seconds=s.duration_s)
    for m in msgs:
        topic = contract.Topic.parse(m.topic)
        d = contract.decode(topic, bytes(m.payload), received_at=end)
        assert isinstance(d, contract.Decoded), (m.topic, m.payload, d)
        if topic.channel is contract.Channel.STATUS:
            status[topic.device].append(json.loads(m.payload)["online"])
            continue
        seqs[(topic.device, topic.channel.value)] += [
            r.seq for r in d.records if not isinstance(r, contract.StatusMessage)
        ]

    # Exactly what the simulators reported: same counts, same seq ranges, no duplicates.
    for dev, per in report.devices.items():
        code = dev.split("/", 1)[1]
        for channel, c in per.items():
            got = seqs[(code, channel)]
            assert len(got) == c.count == len(set(got)), (dev, channel)
            assert (min(got), max(got)) == (c.first_seq, c.last_seq)
    assert sum(len(v) for v in seqs.values()) == report.total
    # Each device announced itself online; a device that vanished got its Last Will.
    for sim in fleet:
        assert status[sim.code][0] is True
    for st in s.steps:
        if st.action == "go_offline":
            assert status[st.device][-1] is False


def test_a_device_cannot_publish_as_another(
    stack: Stack, device_secret: str, listener_factory: list[Listener]
) -> None:
    listener = Listener(stack, "estate/v1/HXY/elevator/#")
    listener_factory.append(listener)
    fleet = runner.build_fleet(DEMO, seed=1, estates=["HXY"], devices=["B1-L1"])
    pub = runner.MqttPublisher(
        host="127.0.0.1", port=stack.device_port, mode="device", device_secret=device_secret
    )
    now = dt.datetime.now(dt.UTC)
    pub.connect(fleet, now)
    payload = contract.dumps(contract.telemetry(now, 1, {"floor": 1.0}))
    pub.publish(fleet[0], "estate/v1/HXY/elevator/B1-L2/telemetry", payload, retain=False)
    pub.publish(fleet[0], "estate/v1/HXY/elevator/B1-L1/telemetry", payload, retain=False)
    pub.close()
    topics = [m.topic for m in listener.collect(2, timeout=5)]
    assert "estate/v1/HXY/elevator/B1-L1/telemetry" in topics
    assert "estate/v1/HXY/elevator/B1-L2/telemetry" not in topics


def test_wrong_device_password_is_refused(stack: Stack, device_secret: str) -> None:
    fleet = runner.build_fleet(DEMO, seed=1, estates=["HXY"], devices=["B1-L1"])
    pub = runner.MqttPublisher(
        host="127.0.0.1", port=stack.device_port, mode="device", device_secret="not-the-secret"
    )
    with pytest.raises(MqttError, match="refused the connection"):
        pub.connect(fleet, dt.datetime.now(dt.UTC))
    pub.close()


def test_registry_load_lets_a_new_device_in_without_a_broker_restart(
    stack: Stack, database_url: str, tmp_path: Path
) -> None:
    env = estate_env(
        stack.settings.var_dir,
        stack.settings.pg_port,
        stack.settings.mqtt_port,
        stack.settings.mqtt_device_port,
    )
    env["DATABASE_URL"] = database_url
    code = f"N{uuid.uuid4().hex[:8]}"
    doc = tmp_path / "new.yaml"
    doc.write_text(
        "version: 1\nareas: [{code: C, name: c, level: city}]\n"
        f"estates: [{{code: {code}, name: n, area: C, buildings: [{{code: B1, name: b,"
        " floors: 5, devices: [{code: L1, kind: elevator, subtype: passenger}]}]}]\n"
    )
    reg = registry.read(doc)
    fleet = runner.build_fleet(reg, seed=1)
    port = stack.device_port
    secret = load_secrets(stack.settings.var_dir)["device_secret"]
    mosq = PrivateMosquitto(stack.settings, stack.services.runner)
    pid = mosq.status().pid

    def publisher() -> runner.MqttPublisher:
        return runner.MqttPublisher(
            host="127.0.0.1", port=port, mode="device", device_secret=secret
        )

    before = publisher()
    with pytest.raises(MqttError, match="refused the connection"):
        before.connect(fleet, dt.datetime.now(dt.UTC))
    before.close()
    loaded = run_estate(["registry", "load", str(doc)], env)
    assert loaded.returncode == 0, loaded.stderr
    assert "applied (no restart)" in loaded.stdout
    time.sleep(0.3)  # the broker re-reads its files on SIGHUP
    after = publisher()
    after.connect(fleet, dt.datetime.now(dt.UTC))  # accepted now
    after.close()
    assert mosq.status().pid == pid  # the same broker process: not restarted
