"""``estate cluster up|down|status``: the clustered deployment on loopback ports (three NATS
nodes with JetStream and MQTT, two ingest workers sharing the partitions, the private
PostgreSQL and its streaming replica), for tests and demos; docs/scale.md."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import psycopg

from cli import common
from estate import db
from estate.cluster import LocalCluster
from estate.services import (
    PrivateReplica,
    PrivateServices,
    _pid_cmdline,
    _read_pid,
    detach,
    stop_pid,
)
from estate.settings import Settings
from ingest.cluster import held_partitions

WORKERS = 2
# the service's own processes of the local cluster, by name: two ingest workers sharing the
# partitions, and the supervisor (dispatch, deadlines, escalation, notifications: without
# it a trapped passenger's alert would get no work order)
PROCESSES: dict[str, list[str]] = {
    **{f"w{i}": ["ingest", "--cluster", "--name", f"w{i}"] for i in range(1, WORKERS + 1)},
    "supervisor": ["supervise", "--cluster"],
}


def _devices(database_url: str) -> list[tuple[str, str, str]]:
    with db.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT estate_code, kind, code FROM devices WHERE active ORDER BY 1, 3"
        ).fetchall()
    return [(str(e), str(k), str(c)) for e, k, c in rows]


def _pidfile(cluster: LocalCluster, name: str) -> Path:
    return cluster.root / f"{name}.pid"


def process_pid(cluster: LocalCluster, name: str) -> int | None:
    """The pid of the named process if it runs (its pid file and its command line agree)."""
    pid = _read_pid(_pidfile(cluster, name))
    if pid is None:
        return None
    cmdline = _pid_cmdline(pid) or ""
    return pid if all(arg in cmdline for arg in PROCESSES[name]) else None


def start_process(cluster: LocalCluster, name: str, settings: Settings) -> int:
    """The named `estate` process in the background, its log beside the nodes."""
    env = {**os.environ, "ESTATE_VAR_DIR": str(settings.var_dir)}
    argv = [sys.executable, "-m", "cli", *PROCESSES[name]]
    pid = detach(argv, cluster.root / f"{name}.log", env)
    _pidfile(cluster, name).write_text(f"{pid}\n")
    return pid


def stop_process(cluster: LocalCluster, name: str, sig: int = signal.SIGTERM) -> None:
    pid = process_pid(cluster, name)
    if pid is not None:
        stop_pid(pid, sig, timeout=60)  # a worker flushes its batches first
    _pidfile(cluster, name).unlink(missing_ok=True)


def cmd_cluster(args: argparse.Namespace, settings: Settings) -> int:
    svc = PrivateServices(settings)
    cluster = LocalCluster(settings)
    replica = PrivateReplica(settings, svc.runner)
    if args.action == "up":
        return _up(settings, svc, cluster, replica)
    if args.action == "down":
        for name in PROCESSES:
            stop_process(cluster, name)
        cluster.down()
        replica.stop()
        common.echo("cluster stopped (workers, supervisor, nodes, replica); the primary"
                    " PostgreSQL stays"
                    " up: `estate services stop` stops it")  # fmt: skip
        return 0
    return _status(cluster, svc, replica)


def _up(
    settings: Settings, svc: PrivateServices, cluster: LocalCluster, replica: PrivateReplica
) -> int:
    svc.start()
    svc.disown()
    ep = svc.endpoints()
    db.upgrade(ep.database_url)
    replica.start()
    devices = _devices(ep.database_url)
    cluster.up(devices)
    for name in PROCESSES:
        if process_pid(cluster, name) is None:
            start_process(cluster, name, settings)
    common.echo(f"cluster: {len(cluster.nodes)} NATS nodes, {cluster.partitions} partitions,"
                f" {len(devices)} device logins, {WORKERS} ingest workers, the supervisor"
                " (dispatch and deadlines)")  # fmt: skip
    for node, url in zip(cluster.nodes, cluster.mqtt_urls, strict=True):
        common.echo(f"  {node.name}: devices connect to {url}")
    common.echo(f"  replica: 127.0.0.1:{replica.port}; `estate cluster status` shows who"
                " holds which partition")  # fmt: skip
    return 0


def _log_line(cluster: LocalCluster) -> bool:
    """The log's backlog in one line; False when no node answers."""
    try:
        if not any(node.pid() for node in cluster.nodes):
            raise ConnectionError("no node running")
        backlog = cluster.backlog()
    except Exception as err:  # no node answers: said above per node
        common.echo(f"log: no answer from the cluster ({type(err).__name__})")
        return False
    waiting = sum(n for n, _ in backlog.values())
    unacked = sum(n for _, n in backlog.values())
    worst = max(backlog.items(), key=lambda kv: kv[1][0], default=("", (0, 0)))
    common.echo(
        f"log: {waiting} messages waiting, {unacked} being committed"
        + (f" (most behind: {worst[0]}, {worst[1][0]})" if worst[1][0] else "")
    )
    return True


def _status(cluster: LocalCluster, svc: PrivateServices, replica: PrivateReplica) -> int:
    """Nodes, workers, who holds which partition, the log's backlog, the replica; 3 when
    anything is down or a partition has no holder."""
    ok = True
    for st in cluster.status():
        ok &= st.running
        common.echo(f"{st.name}: {st.detail} on {st.address}")
    try:
        held = held_partitions(svc.endpoints().database_url)
    except psycopg.Error as err:
        held = {}
        common.echo(f"partitions: the database is not reachable ({err})")
    for name in PROCESSES:
        pid = process_pid(cluster, name)
        ok &= pid is not None
        what = "supervisor" if name == "supervisor" else f"ingest worker {name}"
        common.echo(f"{what}: {'running, pid ' + str(pid) if pid else 'stopped'}")
    for lease_pid, parts in held.items():
        common.echo(f"  lease session {lease_pid}: partitions {', '.join(map(str, parts))}")
    ok &= _log_line(cluster)
    free = set(range(cluster.partitions)) - {k for p in held.values() for k in p}
    if free:
        ok = False
        common.echo(f"  partitions nobody holds: {', '.join(map(str, sorted(free)))}")
    st = replica.status()
    common.echo(f"{st.name}: {st.detail} on {st.address}")
    return 0 if ok and st.running else 3


def register(sub: common.SubParsers) -> None:
    """Add this module's commands to the ``estate`` parser."""
    s = sub.add_parser(
        "cluster",
        help="start, stop or inspect the local clustered deployment (3 NATS nodes, 2 ingest"
        " workers, primary + replica)",
    )
    s.add_argument("action", choices=["up", "down", "status"])
    s.set_defaults(func=cmd_cluster)
