"""``estate registry`` and ``estate broker``: the registry file into the database, and device
credentials and ACLs into the broker."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

from cli import common
from estate import db, registry
from estate.cluster import LocalCluster
from estate.generate import ProgressBar, generate, write_yaml
from estate.mqtt import write_broker_files
from estate.settings import Settings, SettingsError


def cmd_registry(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "generate":
        bar = ProgressBar("generating")
        doc = generate(args.estates, seed=args.seed, progress=bar)
        if args.output == "-":
            write_yaml(doc, sys.stdout)
        else:
            with Path(args.output).open("w", encoding="utf-8") as f:
                write_yaml(doc, f, progress=ProgressBar("writing   "))
            common.echo_err(f"wrote {args.output}")
        return 0
    path = registry.demo_path() if args.file == "demo" else Path(args.file)
    reg = registry.read(path)
    n_dev = sum(1 for _ in reg.devices())
    common.echo(f"{path}: valid ({len(reg.estates)} estates, {n_dev} devices)")
    if args.action == "check":
        return 0
    with common.servers(settings, upgrade=True) as ep:
        with db.connect(ep.database_url) as conn:
            report = registry.load(conn, reg)
        common.echo(f"loaded: {report}")
        synced = _sync_private_broker(settings, ep.database_url)
        nodes = 0
        if (settings.var_dir / "cluster").is_dir():  # `estate cluster up` made one here
            nodes = LocalCluster(settings).sync_devices(_devices(ep.database_url))
    if synced is not None:
        common.echo(f"broker: credentials and ACLs for {synced} devices applied (no restart)")
    else:
        common.echo("broker: external; write its files with `estate broker sync --out DIR`")
    if nodes:
        common.echo(f"cluster: the logins applied on {nodes} running NATS nodes (no restart)")
    return 0


def _sync_private_broker(settings: Settings, database_url: str) -> int | None:
    """Every active device's password and ACL into the private broker, applied with
    SIGHUP; None when the broker is external."""
    mosq = common.private_mosquitto(settings)
    if mosq is None:
        return None
    return mosq.sync_devices(_devices(database_url))


def cmd_broker(args: argparse.Namespace, settings: Settings) -> int:
    """Device credentials and ACLs from the registry: into the private broker (applied at
    once), or as files for an external Mosquitto (``--out``)."""
    with common.servers(settings) as ep:
        if args.out is None:
            n = _sync_private_broker(settings, ep.database_url)
            if n is None:
                raise SettingsError(
                    "the broker is external (MQTT_URL is set): use --out DIR, copy the files to"
                    " its password_file and acl_file, and send it SIGHUP"
                )
            common.echo(f"broker: credentials and ACLs for {n} devices applied (no restart)")
            return 0
        if settings.device_secret is None:
            raise SettingsError("--out needs ESTATE_DEVICE_SECRET (it derives device passwords)")
        service = unquote(urlsplit(ep.mqtt_url).password or "")
        n = write_broker_files(
            Path(args.out),
            service_password=service,
            secret=settings.device_secret,
            devices=_devices(ep.database_url),
        )
    common.echo(
        f"{args.out}/passwd (devices), passwd-service and acl written for {n} devices: give"
        " devices a listener of their own with passwd and use_username_as_clientid true, the"
        " service one with passwd-service (per_listener_settings true), then SIGHUP"
    )
    return 0


def _devices(database_url: str) -> list[tuple[str, str, str]]:
    with db.connect(database_url) as conn:
        return registry.active_devices(conn)


def register(sub: common.SubParsers) -> None:
    """Add this module's commands to the ``estate`` parser."""
    s = sub.add_parser("registry", help="load, check or generate a registry YAML file")
    rsub = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (
        ("load", "validate FILE and load it into the database"),
        ("check", "validate FILE only"),
    ):
        r = rsub.add_parser(name, help=text)
        r.add_argument("file", help="registry YAML file, or 'demo' for the shipped demo county")
        r.set_defaults(func=cmd_registry)
    r = rsub.add_parser("generate", help="write a synthetic city of N estates")
    r.add_argument("--estates", type=int, required=True, metavar="N")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("-o", "--output", default="-", help="output file (default: stdout)")
    r.set_defaults(func=cmd_registry)
    s = sub.add_parser("broker", help="device credentials and ACLs from the registry")
    s.add_argument("action", choices=["sync"])
    s.add_argument("--out", help="write passwd and acl here (for an external Mosquitto)")
    s.set_defaults(func=cmd_broker)
