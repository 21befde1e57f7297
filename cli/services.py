"""``estate services``, ``env``, ``psql`` and ``api``: the private servers, their URLs, and the
HTTP API."""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Callable
from urllib.parse import urlsplit

from cli import common
from estate.cluster import LocalCluster
from estate.services import (
    PrivateReplica,
    PrivateServices,
    ServiceError,
    mask_url,
)
from estate.settings import Settings


def cmd_services(args: argparse.Namespace, settings: Settings) -> int:
    svc = PrivateServices(settings)
    if not svc.managed():
        common.echo("DATABASE_URL and MQTT_URL are both set: no private services to manage")
        return 0
    if args.action == "start":
        started = svc.start()
        svc.disown()
        for st in svc.status():
            verb = "started" if st.name in started else "already running"
            common.echo(f"{st.name}: {verb} on {st.address} (pid {st.pid})")
    elif args.action == "stop":
        svc.stop()
        common.echo("private services stopped")
    else:
        statuses = svc.status()
        for st in statuses:
            pid = f" (pid {st.pid})" if st.pid else ""
            common.echo(f"{st.name}: {st.detail} on {st.address}{pid}")
        return 0 if all(st.running for st in statuses) else 3
    return 0


def cmd_replica(args: argparse.Namespace, settings: Settings) -> int:
    """The private server's streaming replica (for the API's reads)."""
    svc = PrivateServices(settings)
    if not any(m.name == "postgres" for m in svc.managed()):
        raise ServiceError(
            "DATABASE_URL names an external server: make its replica there (pg_basebackup -R)"
            " and set ESTATE_DATABASE_READ_URL"
        )
    replica = PrivateReplica(settings, svc.runner)
    if args.action == "start":
        svc.start()  # the primary it copies and follows
        svc.disown()
        replica.start()
        common.echo(f"{replica.name}: streaming on 127.0.0.1:{replica.port}")
        common.echo(f"export ESTATE_DATABASE_READ_URL={shlex.quote(mask_url(replica.url))}")
    elif args.action == "stop":
        replica.stop()
        common.echo(f"{replica.name} stopped")
    else:
        st = replica.status()
        common.echo(f"{st.name}: {st.detail} on {st.address}")
        return 0 if st.running else 3
    return 0


def cmd_env(args: argparse.Namespace, settings: Settings) -> int:
    ep = PrivateServices(settings).endpoints()
    show: Callable[[str], str] = (lambda u: u) if args.show_secrets else mask_url
    mqtt = urlsplit(ep.mqtt_url)
    common.echo(f"export DATABASE_URL={shlex.quote(show(ep.database_url))}")
    common.echo(f"export MQTT_URL={shlex.quote(show(ep.mqtt_url))}")
    common.echo(f"export MQTT_HOST={mqtt.hostname} MQTT_PORT={mqtt.port}")
    common.echo(
        f"export ESTATE_MQTT_DEVICE_URL={shlex.quote(ep.mqtt_device_url)}  # where devices connect"
    )
    if not args.show_secrets:
        common.echo('# passwords masked; `eval "$(estate env --show-secrets)"` exports them, then:')
    common.echo('#   psql "$DATABASE_URL"')
    common.echo('#   mosquitto_sub -L "$MQTT_URL/estate/v1/#" -v')
    return 0


def cmd_psql(args: argparse.Namespace, settings: Settings) -> int:
    url = PrivateServices(settings).endpoints().database_url
    os.execvp("psql", ["psql", url, *args.psql_args])  # noqa: S606  (replaces this process)


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn  # noqa: PLC0415 - only this command needs the server

    from api.app import create_app  # noqa: PLC0415

    with common.servers(settings, upgrade=True) as ep:
        # beside the local cluster (estate cluster up) the live stream reads the changes
        # its workers and supervisor publish there, from whichever node is up
        mqtt_url = LocalCluster(settings).service_mqtt_url if args.cluster else ep.mqtt_url
        host, port = args.host or settings.api_host, args.port or settings.api_port
        common.echo(
            f"API on http://{host}:{port}/api/v1  (OpenAPI docs: http://{host}:{port}/docs)"
        )
        uvicorn.run(
            create_app(
                ep.database_url,
                token_ttl_s=settings.api_token_ttl_s,
                session_max_s=settings.api_session_max_h * 3600,
                mqtt_url=mqtt_url,
                read_url=settings.database_read_url,
            ),
            host=host,
            port=port,
            log_level="info",
        )
    return 0


def register(sub: common.SubParsers) -> None:
    """Add this module's commands to the ``estate`` parser."""
    s = sub.add_parser(
        "services", help="start, stop or inspect the private TimescaleDB and Mosquitto"
    )
    s.add_argument("action", choices=["start", "stop", "status"])
    s.set_defaults(func=cmd_services)
    s = sub.add_parser("env", help="print the database and broker URLs in use")
    s.add_argument("--show-secrets", action="store_true", help="print passwords instead of ***")
    s.set_defaults(func=cmd_env)
    s = sub.add_parser("psql", help="open psql on the database in use")
    s.add_argument("psql_args", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_psql)
    s = sub.add_parser(
        "replica", help="start, stop or inspect a streaming replica of the private PostgreSQL"
    )
    s.add_argument("action", choices=["start", "stop", "status"])
    s.set_defaults(func=cmd_replica)
    s = sub.add_parser("api", help="run the HTTP API (FastAPI under uvicorn) until stopped")
    s.add_argument("--host", help="default ESTATE_API_HOST (127.0.0.1)")
    s.add_argument("--port", type=int, help="default ESTATE_API_PORT (8700)")
    s.add_argument("--cluster", action="store_true",
                   help="the live stream from the local cluster (estate cluster up)")  # fmt: skip
    s.set_defaults(func=cmd_api)
