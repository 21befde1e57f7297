"""Batch decoding, without broker or database: every message ends in exactly one place."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.batch import (
    METRIC_COLUMNS,
    DeviceRef,
    Incoming,
    decode_batch,
    parse_topic,
    settle,
    shard_of,
)
from ingest.contract import Bounds

NOW = dt.datetime(2026, 11, 22, 2, 0, tzinfo=dt.UTC)
DEVICES = {
    ("E1", "L1"): DeviceRef(1, "E1", "L1", "elevator"),
    ("E1", "SUMP"): DeviceRef(2, "E1", "SUMP", "drainage"),
}


def lookup(estate: str, code: str) -> DeviceRef | None:
    return DEVICES.get((estate, code))


def msg(topic: str, payload: object) -> Incoming:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Incoming(topic, raw, 1, 1, 1, NOW)


TS = "2026-11-22T02:00:00Z"
L1 = "estate/v1/E1/elevator/L1"


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        pytest.param("estate/v1/E1/elevator", {}, "bad_topic", id="bad-topic"),
        pytest.param("estate/v1/E1/elevator/L9/telemetry", {}, "unknown_device", id="unknown"),
        pytest.param("estate/v1/E9/elevator/L1/telemetry", {}, "unknown_device", id="estate"),
        pytest.param("estate/v1/E1/fire/L1/telemetry", {}, "kind_mismatch", id="kind"),
        pytest.param(f"{L1}/telemetry", b"{", "not_json", id="json"),
        pytest.param(
            f"{L1}/telemetry", {"ts": TS, "seq": "1", "values": {"floor": 1}}, "schema", id="schema"
        ),
        pytest.param(
            f"{L1}/event", {"ts": TS, "seq": 1, "code": "fire_alarm"}, "unknown_event", id="vocab"
        ),
        pytest.param(
            f"{L1}/telemetry",
            {"ts": "2020-01-01T00:00:00Z", "seq": 1, "values": {"floor": 1}},
            "ts_out_of_bounds",
            id="old",
        ),
    ],
)
def test_each_rejection_becomes_one_dead_letter(topic: str, payload: object, reason: str) -> None:
    rows = decode_batch([msg(topic, payload)], lookup, bounds=Bounds())
    assert rows.telemetry == rows.events == []
    assert len(rows.dead) == 1
    received_at, got_topic, raw, got_reason, detail, _, _ = rows.dead[0]
    assert (received_at, got_topic, got_reason) == (NOW, topic, reason)
    assert raw == msg(topic, payload).payload
    assert detail


def test_telemetry_maps_to_wide_columns_with_unknowns_in_extra() -> None:
    m = msg(
        f"{L1}/telemetry",
        {
            "ts": TS,
            "seq": 5,
            "values": {"floor": 3, "door_open": True, "humidity": 40},
        },
    )
    rows = decode_batch([m], lookup, bounds=Bounds())
    (row,) = rows.telemetry
    assert row[:3] == (NOW, 1, 5)
    cols = dict(zip(METRIC_COLUMNS, row[3:-1], strict=True))
    assert cols["floor"] == 3.0
    assert cols["door_open"] is True
    assert cols["running"] is None
    assert row[-1] == {"humidity": 40.0}  # an unknown metric is kept in extra
    assert rows.unknown_metrics == {"humidity": 1}


def test_a_known_metric_of_the_wrong_type_is_refused_not_coerced() -> None:
    for values, says in (
        ({"running": 1}, "running is a boolean, not a number"),
        ({"floor": True}, "floor is a number, not true/false"),
    ):
        m = msg(f"{L1}/telemetry", {"ts": TS, "seq": 5, "values": values})
        rows = decode_batch([m], lookup, bounds=Bounds())
        assert rows.telemetry == []
        (dead,) = rows.dead
        assert dead[3] == "schema"
        assert says in dead[4]


def test_device_state_keeps_the_newest_values_and_the_status() -> None:
    later = {"ts": "2026-11-22T02:00:05Z", "seq": 6, "values": {"level_m": 1.5}}
    earlier = {
        "ts": "2026-11-22T02:00:01Z",
        "seq": 2,
        "values": {"level_m": 0.5, "pump_running": False},
    }
    t = "estate/v1/E1/drainage/SUMP"
    rows = decode_batch(
        [
            msg(f"{t}/telemetry", later),
            msg(f"{t}/telemetry", earlier),
            msg(f"{t}/status", {"online": False}),
        ],
        lookup,
        bounds=Bounds(),
    )
    seen = rows.devices[2]
    assert seen.last_seq == 6
    assert seen.latest == {"level_m": 1.5, "pump_running": False}
    assert seen.online is False


def test_gateway_array_yields_one_row_per_element() -> None:
    batch = [{"ts": TS, "seq": i, "values": {"floor": i}} for i in range(5)]
    rows = decode_batch([msg(f"{L1}/telemetry", batch)], lookup, bounds=Bounds())
    assert [r[2] for r in rows.telemetry] == [0, 1, 2, 3, 4]


def test_shards_are_stable_and_spread() -> None:
    codes = [f"E{i:05d}" for i in range(2000)]
    assert shard_of("HXY", 4) == shard_of("HXY", 4) == 2  # CRC-32, same in every process
    counts = [sum(shard_of(c, 4) == k for c in codes) for k in range(4)]
    assert min(counts) > 400


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["telemetry", "event"]),
            st.integers(0, 30),  # seconds after TS: late and out-of-order messages
            st.dictionaries(st.sampled_from(["floor", "load_pct", "speed_mps"]),
                            st.integers(0, 9), max_size=3),
        ),
        max_size=25,
        unique_by=lambda x: x[1],  # one message per instant: "newest" is unambiguous
    )
)  # fmt: skip
def test_state_settled_while_decoding_equals_settling_the_whole_batch(
    script: list[tuple[str, int, dict[str, int]]],
) -> None:
    messages = []
    for seq, (channel, sec, values) in enumerate(script):
        ts = (NOW + dt.timedelta(seconds=sec)).isoformat()
        body: dict[str, object] = {"ts": ts, "seq": seq}
        if channel == "event":
            body["code"] = "trapped"
        else:
            body["values"] = values or {"floor": 1}
        messages.append(msg(f"{L1}/{channel}", body))
    rows = decode_batch(messages, lookup, bounds=Bounds(past=dt.timedelta(days=1)))
    got = {d: (s.last_ts, s.last_seq, dict(s.latest)) for d, s in rows.devices.items()}
    settle(rows)
    assert got == {d: (s.last_ts, s.last_seq, dict(s.latest)) for d, s in rows.devices.items()}


def test_a_topic_is_parsed_once_and_a_refused_one_every_time() -> None:
    parse_topic.cache_clear()
    for _ in range(3):
        decode_batch([msg(f"{L1}/telemetry", {"ts": TS, "seq": 1, "values": {}})], lookup,
                     bounds=Bounds(past=dt.timedelta(days=1)))  # fmt: skip
        rows = decode_batch([msg("estate/v1/E1/elevator/L 1/telemetry", {})], lookup,
                            bounds=Bounds())  # fmt: skip
        assert rows.dead_reasons == {"bad_topic": 1}
    info = parse_topic.cache_info()
    assert (info.hits, info.currsize) == (2, 1)
