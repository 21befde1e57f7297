"""Receiving alone: the worker's MQTT receiver against paho, the same stream side by side.

    python -m bench.receive [--messages 100000] [--rounds 2]

Each side subscribes with a persistent session at QoS 1 and acknowledges from a second
thread in batches of up to 5,000, as the ingest worker does, and does nothing else (no
decoding, no database). ``paho`` is how the worker received until 2026-12-06 (paho-mqtt
2.x, manual acknowledgement, ``on_message`` putting each message on the queue);
``receiver`` is ``ingest.receiver``. Printed per round: messages/s from the first
publication to the last message acknowledged, and this process's CPU time per message
(both threads). The publishers are bench.ingest's (pre-encoded packets, two processes).
Ends with ``receive_ratio=R``: the receiver's median rate over paho's.
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import threading
import time
from typing import Any, Protocol

import paho.mqtt.client as mqtt

from bench.ingest import Msg, _client, publish, split
from estate.mqtt import Address, close, new_client
from estate.services import PrivateServices
from estate.settings import load_settings
from ingest.batch import Incoming
from ingest.receiver import Receiver
from ingest.worker import utcnow

BATCH = 5000


class Consumer(Protocol):
    def subscribe(self, filters: set[str]) -> None: ...
    def start(self, timeout: float = 30) -> None: ...
    def ack(self, messages: list[Incoming]) -> int: ...
    def stop(self) -> None: ...


class PahoConsumer:
    """The worker's former receiving path on paho (manual acknowledgement)."""

    def __init__(self, url: str, client_id: str, out: queue.SimpleQueue[Incoming]) -> None:
        self.address, self.out = Address.parse(url), out
        self.filters: set[str] = set()
        self.ready = threading.Event()
        c = new_client(self.address, client_id, clean_session=False, manual_ack=True)
        c.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe([(f, 1) for f in self.filters])
        c.on_subscribe = lambda *_: self.ready.set()
        c.on_message = self._on_message
        self.client = c

    def _on_message(self, _c: mqtt.Client, _u: Any, m: mqtt.MQTTMessage) -> None:
        self.out.put(Incoming(m.topic, bytes(m.payload), m.mid, m.qos, 1, utcnow()))

    def subscribe(self, filters: set[str]) -> None:
        self.filters |= filters

    def start(self, timeout: float = 30) -> None:
        self.client.connect(self.address.host, self.address.port, keepalive=30)
        self.client.loop_start()
        if not self.ready.wait(timeout):
            raise ConnectionError("paho consumer: no subscription acknowledged")

    def ack(self, messages: list[Incoming]) -> int:
        for m in messages:
            self.client.ack(m.mid, m.qos)
        return len(messages)

    def stop(self) -> None:
        close(self.client)


def stream(n: int) -> list[Msg]:
    payload = (
        b'{"ts":%d,"seq":%d,"floor":3,"speed_mps":1.2,"direction":"up","door_open":false,'
        b'"in_door_zone":true,"occupied":true,"load_pct":40,"mode":"normal","running":true}'
    )
    ts = int(time.time() * 1000)
    return [
        (f"estate/v1/E{i % 50}/elevator/L{i % 200}/telemetry", payload % (ts + i, i))
        for i in range(n)
    ]


def run(side: str, url: str, msgs: list[Msg]) -> tuple[float, float]:
    """(messages/s, µs of CPU per message) for one side."""
    out: queue.SimpleQueue[Incoming] = queue.SimpleQueue()
    cid = f"bench-receive-{side}-{os.getpid()}"
    consumer: Consumer = (
        PahoConsumer(url, cid, out)
        if side == "paho"
        else Receiver(url, client_id=cid, out=out, clock=utcnow)
    )
    consumer.subscribe({"estate/v1/#"})
    consumer.start()
    done = threading.Event()

    def take() -> None:
        got = 0
        while got < len(msgs):
            batch = [out.get()]
            while len(batch) < BATCH:
                try:
                    batch.append(out.get_nowait())
                except queue.Empty:
                    break
            consumer.ack(batch)
            got += len(batch)
        done.set()

    threading.Thread(target=take, daemon=True).start()
    cpu0 = time.process_time()
    sent, _ = publish(url, split(msgs, 2))
    done.wait()
    end = time.time_ns()
    cpu = time.process_time() - cpu0
    time.sleep(0.5)  # the last acknowledgements reach the broker
    consumer.stop()
    forget(url, cid)  # a persistent session left behind would queue every later run
    first = min(s[0] for s in sent if s)
    return len(msgs) / ((end - first) / 1e9), cpu * 1e6 / len(msgs)


def forget(url: str, client_id: str) -> None:
    c = _client(url, client_id)  # a clean session replaces (deletes) the persistent one
    time.sleep(0.2)
    close(c)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    msgs = stream(args.messages)
    rates: dict[str, list[float]] = {"paho": [], "receiver": []}
    with PrivateServices(load_settings()).running() as ep:
        print(f"{'round':>5} {'side':10} {'msgs/s':>9} {'CPU µs/msg':>11}", flush=True)
        for r in range(1, args.rounds + 1):
            for side, seen in rates.items():
                rate, cpu = run(side, ep.mqtt_url, msgs)
                seen.append(rate)
                print(f"{r:5} {side:10} {rate:9.0f} {cpu:11.1f}", flush=True)
    ratio = statistics.median(rates["receiver"]) / statistics.median(rates["paho"])
    print(f"receive_ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
