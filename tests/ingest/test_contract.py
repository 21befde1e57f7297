"""The device contract: topics, payloads, and the property that simulators speak it."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from estate import registry
from ingest import contract
from ingest.contract import Bounds, Channel, ContractError, Decoded, Reason, Rejection, Topic
from simulators import faults, runner
from simulators.devices import SIMULATORS

NOW = dt.datetime(2026, 11, 22, 2, 0, tzinfo=dt.UTC)
TEL = Topic.parse("estate/v1/HXY/elevator/B1-L1/telemetry")
EVT = Topic.parse("estate/v1/HXY/elevator/B1-L1/event")
STATUS = Topic.parse("estate/v1/HXY/elevator/B1-L1/status")


@pytest.mark.parametrize(
    ("topic", "says"),
    [
        pytest.param("estate/v2/E/elevator/D/telemetry", "contract version 'v2'", id="version"),
        pytest.param("estate/v1/E/lift/D/telemetry", "kind 'lift'", id="kind"),
        pytest.param("estate/v1/E E/elevator/D/telemetry", "estate code 'E E'", id="estate"),
        pytest.param("estate/v1/E/elevator/" + "d" * 65 + "/telemetry", "device code", id="long"),
        pytest.param("estate/v1/E/elevator/D/commands", "channel 'commands'", id="channel"),
        pytest.param("estate/v1/E/elevator/D", "is not estate/v1/", id="short"),
        pytest.param("other/v1/E/elevator/D/telemetry", "is not estate/v1/", id="root"),
    ],
)
def test_bad_topics_say_what_is_wrong(topic: str, says: str) -> None:
    with pytest.raises(ContractError, match=says):
        Topic.parse(topic)


def test_topic_round_trip() -> None:
    t = Topic.parse("estate/v1/HXY/fire/B1-SD1/event")
    assert (t.estate, t.kind, t.device, t.channel) == ("HXY", "fire", "B1-SD1", Channel.EVENT)
    assert str(t) == "estate/v1/HXY/fire/B1-SD1/event"


GOOD_TEL = {
    "ts": "2026-11-22T10:00:00.120+08:00",
    "seq": 1042,
    "values": {"floor": 12, "speed_mps": 1.5, "door_open": False},
}


def test_the_readme_examples_decode() -> None:
    d = contract.decode(TEL, json.dumps(GOOD_TEL).encode(), received_at=NOW)
    assert isinstance(d, Decoded)
    (r,) = d.records
    assert isinstance(r, contract.TelemetryMessage)
    assert r.ts == dt.datetime(2026, 11, 22, 2, 0, 0, 120000, tzinfo=dt.UTC)
    assert r.values == {"floor": 12.0, "speed_mps": 1.5, "door_open": False}
    e = contract.decode(
        EVT,
        b'{"ts": 1795312800120, "seq": 1043, "code": "trapped", '
        b'"detail": {"floor": 7, "door_open": false}}',
        received_at=NOW,
    )
    assert isinstance(e, Decoded)
    assert isinstance(e.records[0], contract.EventMessage)
    assert e.records[0].code == "trapped"


def test_gateway_arrays_and_unknown_metrics_are_kept() -> None:
    batch = [GOOD_TEL, {**GOOD_TEL, "seq": 1043, "values": {"floor": 11, "humidity": 40}}]
    d = contract.decode(TEL, json.dumps(batch).encode(), received_at=NOW)
    assert isinstance(d, Decoded)
    assert len(d.records) == 2
    assert d.unknown_metrics == ("humidity",)


@pytest.mark.parametrize(
    ("topic", "payload", "reason", "says"),
    [
        pytest.param(TEL, b"{", Reason.NOT_JSON, "not UTF-8 JSON", id="truncated"),
        pytest.param(TEL, b"\xff", Reason.NOT_JSON, "not UTF-8 JSON", id="binary"),
        pytest.param(
            TEL, b'{"seq": 1, "values": {"a": 1}}', Reason.SCHEMA, "ts: Field required", id="no-ts"
        ),
        pytest.param(
            TEL,
            b'{"ts": "2026-11-22T02:00:00", "seq": 1, "values": {"a": 1}}',
            Reason.SCHEMA,
            "has no UTC offset",
            id="naive-ts",
        ),
        pytest.param(
            TEL,
            b'{"ts": 1795312800120, "seq": 1.5, "values": {"a": 1}}',
            Reason.SCHEMA,
            "seq: Input should be a valid integer",
            id="float-seq",
        ),
        pytest.param(
            TEL,
            b'{"ts": 1795312800120, "seq": 4294967296, "values": {"a": 1}}',
            Reason.SCHEMA,
            "seq: Input should be less than or equal to 4294967295",
            id="seq-range",
        ),
        pytest.param(
            TEL,
            b'{"ts": 1795312800120, "seq": 1, "values": {"a": "1"}}',
            Reason.SCHEMA,
            "values.a: must be a number or true/false, not str",
            id="string-value",
        ),
        pytest.param(
            TEL,
            b'{"ts": 1795312800120, "seq": 1, "values": {"a": NaN}}',
            Reason.SCHEMA,
            "must be a finite number",
            id="nan",
        ),
        pytest.param(
            TEL,
            b'{"ts": 1795312800120, "seq": 1, "values": {"a": 1}, "x": 1}',
            Reason.SCHEMA,
            "x: Extra inputs are not permitted",
            id="extra-field",
        ),
        pytest.param(TEL, b"[]", Reason.SCHEMA, "an array of 1 to 250 objects", id="empty-array"),
        pytest.param(TEL, b'"hello"', Reason.SCHEMA, "Input should be an object", id="string"),
        pytest.param(
            STATUS,
            b'[{"online": true}]',
            Reason.SCHEMA,
            "one object, not an array",
            id="status-array",
        ),
        pytest.param(STATUS, b'{"online": "yes"}', Reason.SCHEMA, "valid boolean", id="status"),
        pytest.param(
            EVT,
            b'{"ts": 1795312800120, "seq": 1, "code": "fire_alarm"}',
            Reason.UNKNOWN_EVENT,
            "not in the elevator vocabulary",
            id="wrong-vocab",
        ),
        pytest.param(
            TEL,
            b'{"ts": 1000, "seq": 1, "values": {"a": 1}}',
            Reason.TS_OUT_OF_BOUNDS,
            "check the device clock",
            id="ts-1970",
        ),
        pytest.param(
            TEL,
            b'{"ts": "2026-11-22T03:00:00Z", "seq": 1, "values": {"a": 1}}',
            Reason.TS_OUT_OF_BOUNDS,
            "outside",
            id="ts-future",
        ),
        pytest.param(
            TEL,
            b" " * (contract.MAX_PAYLOAD_BYTES + 1),
            Reason.OVERSIZED,
            "over the 65536-byte limit",
            id="oversized",
        ),
    ],
)
def test_bad_payloads_are_rejected_with_a_reason(
    topic: Topic, payload: bytes, reason: Reason, says: str
) -> None:
    r = contract.decode(topic, payload, received_at=NOW)
    assert isinstance(r, Rejection)
    assert r.reason is reason
    assert says in r.detail, r.detail


def test_every_subtype_has_a_simulator_and_known_metrics() -> None:
    for kind, subtypes in registry.SUBTYPES.items():
        spec = contract.KINDS[kind]
        for subtype in subtypes:
            assert (kind, subtype) in SIMULATORS
            assert set(spec.subtype_metrics[subtype]) <= set(spec.metrics)


# --------------------------------------------------------------------------- properties

DEMO = registry.read(registry.demo_path())
DEVICES = [d.code for _, _, d in DEMO.devices()]
ESTATE_OF = {d.code: e.code for e, _, d in DEMO.devices()}
CONTRACT_FAULTS = sorted(set(faults.FAULTS) - faults.NEEDS_REGISTRY)


def _decode_all(sent: list[tuple[str, bytes, bool]], received_at: dt.datetime) -> list[Decoded]:
    out = []
    for topic, payload, _ in sent:
        d = contract.decode(
            Topic.parse(topic),
            payload,
            received_at=received_at,
            bounds=Bounds(future=dt.timedelta(hours=2)),
        )
        assert isinstance(d, Decoded), (topic, payload, d)
        out.append(d)
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    device=st.sampled_from(DEVICES),
    seed=st.integers(0, 2**32),
    seconds=st.integers(10, 300),
    skew=st.floats(-30, 30),
    ts_style=st.sampled_from(["rfc3339", "epoch_ms"]),
)
def test_every_simulated_payload_validates(
    device: str, seed: int, seconds: int, skew: float, ts_style: str
) -> None:
    fleet = runner.build_fleet(
        DEMO,
        seed=seed,
        estates=[ESTATE_OF[device]],
        devices=[device],
        interval_s=1.0,
        skew_s=skew,
        jitter_s=0.5,
        ts_style="epoch_ms" if ts_style == "epoch_ms" else "rfc3339",
    )
    sim = fleet[0]
    # Exercise the device's scenario actions too, so abnormal payloads are covered.
    rng = random.Random(seed)
    pub = runner.RecordingPublisher()
    report = runner.run(fleet, pub, start=NOW, duration_s=seconds, tick_s=1.0)
    for action in sim.ACTIONS:
        if action not in {"go_offline", "come_online"}:
            getattr(sim, action)(NOW + dt.timedelta(seconds=seconds))
    extra = sim.step(NOW + dt.timedelta(seconds=seconds + rng.randint(1, 60)), 1.0)
    pub.sent += [(sim.topic(o.channel), contract.dumps(o.payload), o.retain) for o in extra]
    decoded = _decode_all(pub.sent, NOW + dt.timedelta(seconds=seconds))
    metrics = contract.KINDS[sim.kind].subtype_metrics[sim.subtype]
    for d in decoded:
        assert d.unknown_metrics == ()
        for r in d.records:
            if isinstance(r, contract.TelemetryMessage):
                assert set(r.values) == set(metrics)
    # one publication per interval (1 s) after a random first offset within the interval
    sent = report.count(Channel.TELEMETRY)
    assert (seconds <= sent <= seconds + 1) if metrics else sent == 0


@settings(max_examples=60, deadline=None)
@given(
    fault=st.sampled_from(CONTRACT_FAULTS),
    device=st.sampled_from(DEVICES),
    seed=st.integers(0, 2**32),
)
def test_every_fault_gets_the_verdict_it_announces(fault: str, device: str, seed: int) -> None:
    sim = runner.build_fleet(DEMO, seed=seed, devices=[device], estates=[ESTATE_OF[device]])[0]
    rng = random.Random(seed)
    for inj in faults.FAULTS[fault](sim, NOW, rng):
        try:
            topic = Topic.parse(inj.topic)
        except ContractError:
            assert inj.reason is Reason.BAD_TOPIC
            continue
        result = contract.decode(topic, inj.payload, received_at=NOW)
        if inj.outcome == "reject":
            assert isinstance(result, Rejection), (inj, result)
            assert result.reason is inj.reason
            assert result.detail
        else:
            assert isinstance(result, Decoded), (inj, result)


@settings(max_examples=300, deadline=None)
@given(
    payload=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
            lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
            max_leaves=12,
        ).map(lambda v: json.dumps(v).encode()),
    ),
    channel=st.sampled_from(list(Channel)),
)
def test_decode_never_raises(payload: bytes, channel: Channel) -> None:
    topic = Topic("E", "fire", "D", channel)
    result = contract.decode(topic, payload, received_at=NOW)
    assert isinstance(result, Decoded | Rejection)


def test_the_documented_vocabulary_tables_match_the_code() -> None:
    from pathlib import Path  # noqa: PLC0415

    root = Path(__file__).resolve().parents[2]
    doc = (root / "docs" / "contract.md").read_text(encoding="utf-8")
    block = doc.split("<!-- contract:begin -->\n", 1)[1].split("<!-- contract:end -->", 1)[0]
    assert block == contract.markdown(), (
        "run `python -m ingest.contract` and paste into docs/contract.md"
    )


def test_service_output_is_told_apart_from_device_data() -> None:
    assert contract.ORGS == registry.ORGS
    for topic in (
        "estate/v1/HXY/alerts/elevator/B1-L1",
        "estate/v1/HXY/workorders/12",
        "estate/v1/HXY/dispatch/gaps",
        "estate/v1/orgs/EM-TS/notifications",
    ):
        assert contract.service_output(topic), topic
    for topic in ("estate/v1/HXY/elevator/B1-L1/telemetry", "estate/v1/HXY/fire/FP/event"):
        assert not contract.service_output(topic), topic
    with pytest.raises(registry.RegistryError, match="reserved"):
        registry.parse(
            "version: 1\nareas: [{code: C, name: c, level: city}]\n"
            "estates: [{code: orgs, name: x, area: C}]\n"
        )
