"""Life cycle of the private servers: idempotent start and stop, stale state, port clashes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from estate.services import (
    PrivateMosquitto,
    PrivateServices,
    ServiceError,
    _pid_cmdline,
    port_in_use,
)
from tests.support.stack import make_settings

pytestmark = pytest.mark.integration


def _wait_gone(pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while _pid_cmdline(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _pid_cmdline(pid) is None, f"process {pid} is still alive"


def test_start_stop_are_idempotent_and_leave_nothing(tmp_path: Path) -> None:
    svc = PrivateServices(make_settings(tmp_path / "var"))
    try:
        assert svc.start() == ["postgres", "mosquitto"]
        assert svc.start() == []
        statuses = svc.status()
        assert [s.running for s in statuses] == [True, True]
        pids = [s.pid for s in statuses]
        with psycopg.connect(svc.endpoints().database_url) as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
    finally:
        svc.stop()
    svc.stop()  # stopping twice is fine
    for pid in pids:
        assert pid is not None
        _wait_gone(pid)
    assert not port_in_use(svc.settings.pg_port)
    assert not port_in_use(svc.settings.mqtt_port)


def test_killed_servers_leave_stale_files_that_the_next_start_clears(tmp_path: Path) -> None:
    svc = PrivateServices(make_settings(tmp_path / "var"))
    svc.start()
    try:
        for st in svc.status():
            assert st.pid is not None
            os.kill(st.pid, signal.SIGKILL)  # servers this test started
            _wait_gone(st.pid)
        pg_root = svc.settings.var_dir / "pg"
        assert (pg_root / "data" / "postmaster.pid").exists()
        assert (svc.settings.var_dir / "mqtt" / "mosquitto.pid").exists()
        assert [s.running for s in svc.status()] == [False, False]
        assert svc.start() == ["postgres", "mosquitto"]
        with psycopg.connect(svc.endpoints().database_url) as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
    finally:
        svc.stop()


def test_pid_file_naming_an_unrelated_live_process_is_stale(tmp_path: Path) -> None:
    svc = PrivateServices(make_settings(tmp_path / "var"))
    mqtt_root = svc.settings.var_dir / "mqtt"
    mqtt_root.mkdir(parents=True)
    (mqtt_root / "mosquitto.pid").write_text(f"{os.getpid()}\n")  # alive, but not mosquitto
    assert [s.running for s in svc.status()] == [False, False]
    try:
        assert "mosquitto" in svc.start()
    finally:
        svc.stop()
    assert _pid_cmdline(os.getpid()) is not None  # and we were not killed


def test_a_port_held_by_another_program_is_reported(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "var")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.mqtt_port))
        squatter.listen()
        svc = PrivateServices(settings)
        try:
            with pytest.raises(ServiceError, match="ESTATE_MQTT_PORT"):
                svc.start()
            # a failed start stops what it had started, leaving nothing running
            assert [s.running for s in svc.status()] == [False, False]
        finally:
            svc.stop()


def test_external_urls_mean_nothing_is_managed(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "var").model_copy(
        update={"database_url": "postgresql://x@h/db", "mqtt_url": "mqtt://u:p@h:1"}
    )
    svc = PrivateServices(settings)
    assert svc.managed() == []
    assert svc.start() == []
    assert svc.endpoints().database_url == "postgresql://x@h/db"
    assert not (tmp_path / "var").exists()


def test_urls_of_the_private_instances_still_count_as_private(tmp_path: Path) -> None:
    """After `eval "$(estate env --show-secrets)"` the shell exports the private URLs."""
    base = make_settings(tmp_path / "var")
    private = PrivateServices(base).endpoints()
    exported = base.model_copy(
        update={"database_url": private.database_url, "mqtt_url": private.mqtt_url}
    )
    assert [s.name for s in PrivateServices(exported).managed()] == ["postgres", "mosquitto"]
    other = base.model_copy(update={"database_url": "postgresql://u@127.0.0.1:5432/x"})
    assert [s.name for s in PrivateServices(other).managed()] == ["mosquitto"]


def test_a_url_naming_another_database_on_the_private_server_is_used_as_given(
    tmp_path: Path,
) -> None:
    base = make_settings(tmp_path / "var")
    private = PrivateServices(base).endpoints().database_url
    other = private.rsplit("/", 1)[0] + "/other_db"
    settings = base.model_copy(update={"database_url": other})
    svc = PrivateServices(settings)
    assert svc.endpoints().database_url == other
    assert [s.name for s in svc.managed()] == ["postgres", "mosquitto"]


def test_a_broker_that_ignores_sigterm_is_killed(tmp_path: Path) -> None:
    """`estate services stop` never leaves a broker behind: past the timeout it is killed
    (and says so) instead of failing with the port still taken."""
    settings = make_settings(tmp_path / "var").model_copy(update={"service_timeout_s": 0.5})
    mosq = next(s for s in PrivateServices(settings).managed() if s.name == "mosquitto")
    assert isinstance(mosq, PrivateMosquitto)
    mosq.root.mkdir(parents=True)
    stubborn = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);" \
        " print('ready', flush=True); time.sleep(60)"  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", stubborn, "mosquitto", "-c", str(mosq.conf)],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"  # SIGTERM is ignored from here on
        mosq.pidfile.write_text(f"{proc.pid}\n")
        mosq.stop()
        assert proc.wait(5) == -signal.SIGKILL
        assert not mosq.pidfile.exists()
    finally:
        proc.kill()
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
