"""Run simulated devices: build a fleet from the registry, step it through time, publish.

Time is a parameter: ``run`` steps simulated time from ``start`` in ``tick_s`` increments and,
with ``speed`` > 0, sleeps so that one simulated second takes ``1/speed`` real seconds
(``speed=0``: as fast as possible). What was sent is counted per device and channel with
its seq range, so a test downstream can prove nothing was lost.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import paho.mqtt.client as mqtt

from estate import registry
from estate.mqtt import (
    Address,
    MqttError,
    close,
    connect_and_wait,
    device_password,
    device_username,
    new_client,
)
from ingest import contract
from ingest.contract import Channel
from simulators.devices import DeviceSim, Outgoing, make_sim
from simulators.scenarios import Loop, LoopStep, Scenario, Step

# --------------------------------------------------------------------------- fleet


def build_fleet(
    reg: registry.Registry,
    *,
    seed: int,
    estates: Iterable[str] | None = None,
    devices: Iterable[str] | None = None,
    interval_s: float | None = None,
    skew_s: float = 0.0,
    jitter_s: float = 0.0,
    ts_style: Literal["rfc3339", "epoch_ms"] = "rfc3339",
) -> list[DeviceSim]:
    """Simulators for the registry's devices (optionally only some estates or devices).

    Each device gets its own random stream derived from ``seed`` and its identity, so
    adding a device does not change how the others behave.
    """
    wanted_estates = set(estates) if estates is not None else None
    wanted_devices = set(devices) if devices is not None else None
    fleet = []
    for e, _, d in reg.devices():
        if wanted_estates is not None and e.code not in wanted_estates:
            continue
        if wanted_devices is not None and d.code not in wanted_devices:
            continue
        rng = random.Random(f"{seed}/{e.code}/{d.code}")  # noqa: S311  (simulation)
        fleet.append(
            make_sim(
                estate=e.code,
                code=d.code,
                kind=d.kind,
                subtype=d.subtype,
                rng=rng,
                params=d.params,
                interval_s=interval_s,
                skew_s=skew_s,
                jitter_s=jitter_s,
                ts_style=ts_style,
            )
        )
    return fleet


# --------------------------------------------------------------------------- report


@dataclass
class ChannelCount:
    count: int = 0
    first_seq: int | None = None
    last_seq: int | None = None


@dataclass
class Report:
    """What was published, per device (``estate/device``) and channel."""

    devices: dict[str, dict[str, ChannelCount]] = field(default_factory=dict)
    started: dt.datetime | None = None
    ended: dt.datetime | None = None
    behind_s: float = 0.0  # how far real time fell behind the requested speed, at worst

    def record(self, sim: DeviceSim, out: Outgoing) -> None:
        per = self.devices.setdefault(f"{sim.estate}/{sim.code}", {})
        c = per.setdefault(str(out.channel), ChannelCount())
        c.count += 1
        seq = out.payload.get("seq")
        if isinstance(seq, int):
            if c.first_seq is None:
                c.first_seq = seq
            c.last_seq = seq

    @property
    def total(self) -> int:
        return sum(c.count for per in self.devices.values() for c in per.values())

    def count(self, channel: Channel) -> int:
        return sum(per[channel].count for per in self.devices.values() if channel in per)

    def as_dict(self) -> dict[str, Any]:
        return {
            "started": self.started.isoformat() if self.started else None,
            "ended": self.ended.isoformat() if self.ended else None,
            "total": self.total,
            "behind_s": round(self.behind_s, 3),
            "devices": {
                dev: {
                    ch: {"count": c.count, "first_seq": c.first_seq, "last_seq": c.last_seq}
                    for ch, c in per.items()
                }
                for dev, per in sorted(self.devices.items())
            },
        }


# --------------------------------------------------------------------------- publishers


class Publisher(Protocol):
    """Where simulated devices' messages go."""

    def connect(self, sims: list[DeviceSim], now: dt.datetime) -> None: ...
    def publish(self, sim: DeviceSim, topic: str, payload: bytes, *, retain: bool) -> None: ...
    def drop(self, sim: DeviceSim) -> None: ...
    def reconnect(self, sim: DeviceSim, now: dt.datetime) -> None: ...
    def close(self) -> None: ...


@dataclass
class RecordingPublisher:
    """Keeps every publication in memory (for tests of behaviour without a broker)."""

    sent: list[tuple[str, bytes, bool]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def connect(self, sims: list[DeviceSim], now: dt.datetime) -> None:
        for sim in sims:
            self.publish(
                sim,
                sim.topic(Channel.STATUS),
                contract.dumps(sim.status(True, now).payload),
                retain=True,
            )

    def publish(self, sim: DeviceSim, topic: str, payload: bytes, *, retain: bool) -> None:
        self.sent.append((topic, payload, retain))

    def drop(self, sim: DeviceSim) -> None:
        # What the broker does with the Last Will of a device that vanished.
        self.dropped.append(sim.code)
        self.sent.append((sim.topic(Channel.STATUS), contract.dumps({"online": False}), True))

    def reconnect(self, sim: DeviceSim, now: dt.datetime) -> None:
        self.publish(
            sim,
            sim.topic(Channel.STATUS),
            contract.dumps(sim.status(True, now).payload),
            retain=True,
        )

    def close(self) -> None:
        pass


class MqttPublisher:
    """Publishes at QoS 1 to a real broker.

    ``mode="device"``: one connection per device, with the device's own credentials and a
    retained Last Will ``{"online": false}`` on its status topic, as real devices do.
    ``mode="shared"``: a few connections with one account (a gateway, or the benchmark),
    for a whole city where one connection per device is not practical.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        mode: Literal["device", "shared"] = "device",
        device_secret: str | None = None,
        username: str | None = None,
        password: str | None = None,
        connections: int = 4,
        timeout: float = 10.0,
        max_inflight: int = 1000,
    ) -> None:
        if mode == "device" and device_secret is None:
            raise ValueError("device mode needs the device secret to derive passwords")
        self.address = Address(host, port, username, password)
        self.mode, self.secret = mode, device_secret
        self.n_shared = max(1, connections)
        self.timeout, self.max_inflight = timeout, max_inflight
        self.clients: dict[str, mqtt.Client] = {}
        self.shared: list[mqtt.Client] = []
        self._pending: list[mqtt.MQTTMessageInfo] = []

    @classmethod
    def at(cls, url: str, **kwargs: Any) -> MqttPublisher:
        """A publisher for the broker at ``url`` (its login is the shared connections')."""
        a = Address.parse(url)
        return cls(host=a.host, port=a.port, username=a.username, password=a.password, **kwargs)

    def _device_client(self, sim: DeviceSim, now: dt.datetime) -> mqtt.Client:
        assert self.secret is not None
        user = device_username(sim.estate, sim.code)
        login = self.address.login(user, device_password(self.secret, sim.estate, sim.code))
        # unique per run: a second simulator of the same device (a scenario beside
        # `make demo`) must not take the first one's connection over
        c = new_client(login, f"sim-{user}-{os.getpid()}", clean_session=True)
        c.will_set(sim.topic(Channel.STATUS), contract.dumps({"online": False}), qos=1, retain=True)
        c.max_inflight_messages_set(self.max_inflight)
        connect_and_wait(c, login, who=f"device {sim.estate}/{sim.code}", timeout=self.timeout)
        status = sim.status(True, now)
        c.publish(sim.topic(Channel.STATUS), contract.dumps(status.payload), qos=1, retain=True)
        return c

    def connect(self, sims: list[DeviceSim], now: dt.datetime) -> None:
        if self.mode == "device":
            for sim in sims:
                self.clients[sim.topic_base] = self._device_client(sim, now)
            return
        for i in range(self.n_shared):
            c = new_client(self.address, f"sim-shared-{i}-{id(self)}")
            c.max_inflight_messages_set(self.max_inflight)
            connect_and_wait(c, self.address, who=f"shared connection {i}", timeout=self.timeout)
            self.shared.append(c)

    def _client_for(self, sim: DeviceSim) -> mqtt.Client:
        if self.mode == "device":
            return self.clients[sim.topic_base]
        return self.shared[hash(sim.topic_base) % len(self.shared)]

    def publish(self, sim: DeviceSim, topic: str, payload: bytes, *, retain: bool) -> None:
        info = self._client_for(sim).publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise MqttError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        self._pending.append(info)
        if len(self._pending) >= 10_000:
            self.flush()

    def flush(self) -> None:
        """Wait until every QoS 1 publication so far is acknowledged by the broker."""
        for info in self._pending:
            info.wait_for_publish(self.timeout)
            if not info.is_published():
                raise MqttError("the broker did not acknowledge a publication in time")
        self._pending.clear()

    def drop(self, sim: DeviceSim) -> None:
        """Vanish without DISCONNECT, so the broker publishes the device's Last Will."""
        if self.mode != "device":
            return
        self.flush()
        c = self.clients.pop(sim.topic_base)
        c.loop_stop()
        sock = c.socket()
        if sock is not None:
            sock.close()

    def reconnect(self, sim: DeviceSim, now: dt.datetime) -> None:
        if self.mode == "device":
            self.clients[sim.topic_base] = self._device_client(sim, now)

    def close(self) -> None:
        self.flush()
        for c in [*self.clients.values(), *self.shared]:
            close(c)
        self.clients.clear()
        self.shared.clear()


# --------------------------------------------------------------------------- the loop


def _act(step: Step, sim: DeviceSim, publisher: Publisher, now: dt.datetime) -> None:
    getattr(sim, step.action)(now, **step.args)
    if step.action == "go_offline":
        publisher.drop(sim)
    elif step.action == "come_online":
        publisher.reconnect(sim, now)


def run(
    fleet: list[DeviceSim],
    publisher: Publisher,
    *,
    start: dt.datetime,
    duration_s: float,
    tick_s: float = 1.0,
    speed: float = 0.0,
    scenario: Scenario | None = None,
    loop: Loop | None = None,
    stop: threading.Event | None = None,
) -> Report:
    """Step ``fleet`` from ``start`` for ``duration_s`` simulated seconds (or until ``stop``)
    and publish; ``scenario``'s steps are played once, ``loop``'s every cycle."""
    stop = stop or threading.Event()
    by_code = {sim.code: sim for sim in fleet}
    by_place = {(sim.estate, sim.code): sim for sim in fleet}
    steps = sorted(scenario.steps if scenario else [], key=lambda s: s.at_s)
    looped: list[tuple[float, LoopStep]] = []
    next_cycle = 0.0
    report = Report(started=start)
    publisher.connect(fleet, start)
    t0 = time.monotonic()
    elapsed = 0.0
    try:
        while elapsed <= duration_s and not stop.is_set():
            now = start + dt.timedelta(seconds=elapsed)
            while steps and steps[0].at_s <= elapsed:
                step = steps.pop(0)
                _act(step, by_code[step.device], publisher, now)
            if loop is not None and elapsed >= next_cycle:
                looped += sorted(((next_cycle + s.at_s, s) for s in loop.steps), key=lambda x: x[0])
                next_cycle += loop.cycle_s
            while looped and looped[0][0] <= elapsed:
                _, ls = looped.pop(0)
                if (ls.estate, ls.device) in by_place:
                    _act(ls, by_place[(ls.estate, ls.device)], publisher, now)
            for sim in fleet:
                for out in sim.step(now, tick_s):
                    payload = contract.dumps(out.payload)
                    publisher.publish(sim, sim.topic(out.channel), payload, retain=out.retain)
                    report.record(sim, out)
            elapsed += tick_s
            if speed > 0:
                ahead = elapsed / speed - (time.monotonic() - t0)
                if ahead > 0:
                    stop.wait(ahead)
                else:
                    report.behind_s = max(report.behind_s, -ahead)
    finally:
        publisher.close()
    report.ended = start + dt.timedelta(seconds=min(elapsed, duration_s))
    return report
