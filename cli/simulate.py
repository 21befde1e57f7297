"""``estate simulate``: simulated devices against the broker, in device or shared mode, with
scenarios and faults."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
from pathlib import Path

from cli import common
from estate import registry
from estate.services import (
    Endpoints,
    load_secrets,
)
from estate.settings import Settings, SettingsError
from ingest.contract import Channel
from simulators import scenarios
from simulators.devices import DeviceSim
from simulators.faults import FAULTS
from simulators.runner import MqttPublisher, build_fleet
from simulators.runner import run as run_simulation


def publisher(
    args: argparse.Namespace, settings: Settings, ep: Endpoints, reg: registry.Registry
) -> MqttPublisher:
    """A publisher for the broker in use; in device mode it connects where devices do,
    and with the private broker the registry's device credentials are written first."""
    secret = settings.device_secret
    mosq = common.private_mosquitto(settings)
    if args.mode == "device" and mosq is not None:
        secret = load_secrets(settings.var_dir)["device_secret"]
        mosq.sync_devices((e.code, d.kind, d.code) for e, _, d in reg.devices())
    if args.mode == "device" and secret is None:
        raise SettingsError("device mode with an external broker needs ESTATE_DEVICE_SECRET")
    return MqttPublisher.at(
        ep.mqtt_device_url if args.mode == "device" else ep.mqtt_url,
        mode=args.mode,
        device_secret=secret,
        connections=args.connections,
    )


def _inject_faults(names: list[str], sim: DeviceSim, mqtt_url: str, seed: int) -> dict[str, int]:
    """Publish each named fault once (as the service account); count by expected outcome."""
    pub = MqttPublisher.at(mqtt_url, mode="shared", connections=1)
    rng = random.Random(seed)  # noqa: S311  (simulation)
    injected: dict[str, int] = {}
    pub.connect([], dt.datetime.now(dt.UTC))
    try:
        for name in names:
            for msg in FAULTS[name](sim, dt.datetime.now(dt.UTC), rng):
                pub.publish(sim, msg.topic, msg.payload, retain=False)
                injected[msg.outcome] = injected.get(msg.outcome, 0) + 1
    finally:
        pub.close()
    return injected


def _lead_s(speed: float, duration_s: float) -> float:
    """How far in the past a simulation at ``speed`` (0: as fast as possible) starts.

    Faster than real time, the simulated clock would run ahead of the wall clock and
    ingest would refuse timestamps from the future: start in the past instead, so that
    the simulated run ends about when the real one does.
    """
    if speed == 0:
        return duration_s
    return duration_s * (1 - 1 / speed) if speed > 1 else 0.0


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    all_scenarios = scenarios.load()
    fault_names = [f for f in (args.faults or "").split(",") if f]
    unknown = sorted(set(fault_names) - set(FAULTS))
    if unknown:
        raise SettingsError(f"unknown fault(s) {unknown}; known: {', '.join(FAULTS)}")
    if args.list_scenarios:
        for sc in all_scenarios.values():
            common.echo(f"{sc.name:26} {sc.duration_s:6.0f} s  {sc.title}")
        return 0
    if args.scenario and args.scenario not in all_scenarios:
        raise SettingsError(
            f"no scenario {args.scenario!r}; see `estate simulate --list-scenarios`"
        )
    scenario = all_scenarios[args.scenario] if args.scenario else None
    reg = registry.read(registry.demo_path() if args.registry == "demo" else Path(args.registry))
    fleet = build_fleet(
        reg,
        seed=args.seed,
        estates=[scenario.estate] if scenario else (args.estate or None),
        devices=scenario.devices if scenario else None,
        skew_s=args.skew,
        jitter_s=args.jitter,
    )
    if not fleet:
        raise SettingsError("no devices match; check --estate against the registry")
    tick = args.tick or (scenario.tick_s if scenario else 1.0)
    if args.rate:
        for sim in fleet:
            sim.interval_s = len(fleet) / args.rate
        tick = min(tick, len(fleet) / args.rate)
    duration = args.duration or (scenario.duration_s if scenario else 60.0)
    lead = _lead_s(args.speed, duration)
    with common.servers(settings) as ep:
        pub = publisher(args, settings, ep, reg)
        report = run_simulation(
            fleet,
            pub,
            start=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=lead),
            duration_s=duration,
            tick_s=tick,
            speed=args.speed,
            scenario=scenario,
        )
        injected = _inject_faults(fault_names, fleet[0], ep.mqtt_url, args.seed)
    if args.report:
        summary = report.as_dict() | {"faults_injected": injected}
        Path(args.report).write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    common.echo(
        f"sent {report.total} messages from {len(fleet)} devices over {duration:.0f} s "
        f"simulated (telemetry {report.count(Channel.TELEMETRY)}, "
        f"events {report.count(Channel.EVENT)})"
        + (f"; faults injected {injected}" if injected else "")
    )
    if report.behind_s > 1:
        common.echo_err(
            f"estate: the simulator fell {report.behind_s:.1f} s behind the requested pace "
            "(too many devices or too high a rate for this machine); figures above are what "
            "was sent, not the requested rate"
        )
    if not args.report:
        for dev, per in sorted(report.devices.items()):
            cols = ", ".join(
                f"{ch} {c.count} (seq {c.first_seq}..{c.last_seq})" for ch, c in per.items()
            )
            common.echo(f"  {dev}: {cols}")
    return 0


def register(sub: common.SubParsers) -> None:
    """Add this module's commands to the ``estate`` parser."""
    s = sub.add_parser("simulate", help="run simulated devices against the broker")
    s.add_argument("--registry", default="demo", help="registry YAML, or 'demo' (default)")
    s.add_argument("--estate", action="append", help="only this estate (repeatable)")
    s.add_argument("--scenario", help="run a scripted scenario (see --list-scenarios)")
    s.add_argument("--list-scenarios", action="store_true")
    s.add_argument("--duration", type=float, help="simulated seconds (default: scenario's or 60)")
    s.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="simulated seconds per real second; 0 = as fast as possible",
    )
    s.add_argument("--tick", type=float, help="simulation step in seconds (default 1)")
    s.add_argument("--rate", type=float, help="target telemetry messages/s over the whole fleet")
    s.add_argument(
        "--mode",
        choices=["device", "shared"],
        default="device",
        help="device: a connection per device with its own credentials and Last "
        "Will; shared: a few service connections (cities, benchmarks)",
    )
    s.add_argument("--connections", type=int, default=4, help="connections in shared mode")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--skew", type=float, default=0.0, help="device clock skew, seconds")
    s.add_argument("--jitter", type=float, default=0.0, help="publication jitter, seconds")
    s.add_argument("--faults", help="comma-separated faults to inject after the run")
    s.add_argument("--report", help="write the per-device report (JSON) to this file")
    s.set_defaults(func=cmd_simulate)
