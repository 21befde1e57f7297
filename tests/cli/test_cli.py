"""The command line as a person uses it: exit codes, messages, `estate demo` and Ctrl-C."""

from __future__ import annotations

import datetime as dt
import json
import shlex
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from estate.cluster import client_id
from estate.mqtt import (
    Address,
    close,
    connect_and_wait,
    device_password,
    device_username,
    new_client,
)
from estate.services import PrivateServices, _pid_cmdline, load_secrets, port_in_use
from ingest import contract
from tests.support.cli import ESTATE_CMD, estate_env, run_estate
from tests.support.stack import Stack, free_base, free_port, make_settings


def test_bad_configuration_exits_2_naming_the_variable(tmp_path: Path) -> None:
    env = estate_env(tmp_path, 1, 2, 3) | {"ESTATE_PG_PORT": "not-a-port"}
    done = run_estate(["env"], env)
    assert done.returncode == 2
    assert "ESTATE_PG_PORT='not-a-port'" in done.stderr


def test_registry_check_reports_problems_with_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nestates:\n  - {code: E1, name: e, area: nowhere}\n")
    done = run_estate(["registry", "check", str(bad)], estate_env(tmp_path, 1, 2, 3))
    assert done.returncode == 2
    assert "estates[0].area (line 3): unknown area 'nowhere'" in done.stderr


@pytest.mark.integration
def test_env_masks_passwords_unless_asked(stack: Stack) -> None:
    s = stack.settings
    env = estate_env(s.var_dir, s.pg_port, s.mqtt_port, s.mqtt_device_port)
    masked = run_estate(["env"], env).stdout
    assert "estate:***@" in masked
    assert "estate-service:***@" in masked
    shown = run_estate(["env", "--show-secrets"], env).stdout
    exports = dict(
        shlex.split(line)[1].split("=", 1)
        for line in shown.splitlines()
        if line.startswith("export") and "MQTT_HOST" not in line
    )
    assert exports == {
        "DATABASE_URL": stack.database_url,
        "MQTT_URL": stack.mqtt_url,
        "ESTATE_MQTT_DEVICE_URL": stack.mqtt_device_url,
    }


@pytest.mark.integration
def test_services_status_start_stop(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "var")
    env = estate_env(s.var_dir, s.pg_port, s.mqtt_port, s.mqtt_device_port)
    assert run_estate(["services", "status"], env).returncode == 3
    try:
        started = run_estate(["services", "start"], env)
        assert started.returncode == 0, started.stderr
        assert "postgres: started" in started.stdout
        status = run_estate(["services", "status"], env)
        assert status.returncode == 0
        assert "mosquitto: running" in status.stdout
        # A one-shot command reuses running services and leaves them running.
        assert run_estate(["db", "upgrade"], env).returncode == 0
        assert run_estate(["services", "status"], env).returncode == 0
    finally:
        assert run_estate(["services", "stop"], env).returncode == 0
    assert run_estate(["services", "status"], env).returncode == 3


def _start_demo(env: dict[str, str]) -> subprocess.Popen[str]:
    env = env | {"ESTATE_API_PORT": str(free_port())}
    proc = subprocess.Popen(
        [*ESTATE_CMD, "demo"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        lines.append(line)
        if "Ctrl-C stops" in line or time.monotonic() > deadline:
            break
    assert any("Ctrl-C stops" in ln for ln in lines), "".join(lines)
    # the demo serves the API too
    url = f"http://127.0.0.1:{env['ESTATE_API_PORT']}/healthz"
    for _ in range(100):
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                assert r.status == 200
                break
        except OSError:
            time.sleep(0.1)
    else:
        raise AssertionError(f"the demo's API did not answer at {url}")
    return proc


@pytest.mark.integration
def test_demo_stops_on_ctrl_c_leaving_no_process(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "var")
    env = estate_env(s.var_dir, s.pg_port, s.mqtt_port, s.mqtt_device_port)
    proc = _start_demo(env)
    pids = [st.pid for st in PrivateServices(s).status()]
    assert all(pids)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    assert proc.stdout is not None
    assert "stopping" in proc.stdout.read()
    proc.stdout.close()
    for pid in pids:
        assert pid is not None
        assert _pid_cmdline(pid) is None
    assert not port_in_use(s.pg_port)
    assert not port_in_use(s.mqtt_port)
    assert not port_in_use(s.mqtt_device_port)


@pytest.mark.integration
def test_a_killed_demo_does_not_break_the_next_one(tmp_path: Path) -> None:
    s = make_settings(tmp_path / "var")
    env = estate_env(s.var_dir, s.pg_port, s.mqtt_port, s.mqtt_device_port)
    proc = _start_demo(env)
    proc.kill()  # no chance to clean up: the servers are orphaned
    proc.wait(timeout=10)
    assert proc.stdout is not None
    proc.stdout.close()
    assert all(st.running for st in PrivateServices(s).status())
    again = run_estate(["demo", "--once"], env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "demo registry loaded" in again.stdout
    # The second run adopted the orphans and stopped them on its way out.
    assert not any(st.running for st in PrivateServices(s).status())
    assert not port_in_use(s.pg_port)


def test_simulate_lists_scenarios_and_refuses_unknown_faults(tmp_path: Path) -> None:
    env = estate_env(tmp_path, 1, 2, 3)
    listed = run_estate(["simulate", "--list-scenarios"], env)
    assert listed.returncode == 0
    assert "trapped_without_event" in listed.stdout
    bad = run_estate(["simulate", "--faults", "gremlins"], env)
    assert bad.returncode == 2
    assert "unknown fault(s) ['gremlins']" in bad.stderr


@pytest.mark.integration
def test_simulate_reports_counts_and_seq_ranges(stack: Stack, tmp_path: Path) -> None:
    s = stack.settings
    env = estate_env(s.var_dir, s.pg_port, s.mqtt_port, s.mqtt_device_port)
    out = tmp_path / "report.json"
    done = run_estate(
        [
            "simulate",
            "--scenario",
            "overspeed",
            "--speed",
            "0",
            "--faults",
            "duplicate,wrong_types",
            "--report",
            str(out),
        ],
        env,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    dev = report["devices"]["HXY/B2-L1"]
    assert dev["event"] == {
        "count": 1,
        "first_seq": dev["event"]["first_seq"],
        "last_seq": dev["event"]["first_seq"],
    }
    assert dev["telemetry"]["count"] == report["total"] - 1
    assert report["faults_injected"] == {"store_once": 2, "reject": 8}


@pytest.mark.integration
def test_maintain_rolls_up_and_applies_retention(stack: Stack, database_url: str) -> None:
    ts = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO telemetry (ts, device_id, seq, floor) VALUES (%s, 1, 1, 4)", [ts])
        conn.execute("INSERT INTO rollup_dirty VALUES ('1m', time_bucket('1 minute', %s))", [ts])
    env = estate_env(
        stack.settings.var_dir,
        stack.settings.pg_port,
        stack.settings.mqtt_port,
        stack.settings.mqtt_device_port,
    )
    env["DATABASE_URL"] = database_url
    env["ESTATE_RETENTION_RAW_DAYS"] = "60"
    done = run_estate(["maintain"], env)
    assert done.returncode == 0, done.stderr
    assert "rollups: 1 minutes and 1 hours recomputed" in done.stdout
    assert "retention: telemetry: 0 chunks dropped" in done.stdout
    env["ESTATE_RETENTION_RAW_DAYS"] = "30"
    done = run_estate(["maintain"], env)
    assert "rollups: 0 minutes and 0 hours recomputed" in done.stdout
    assert "retention: telemetry: 1 chunks dropped" in done.stdout
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM telemetry").fetchone() == (0,)
        assert conn.execute("SELECT floor_sum FROM telemetry_1h").fetchone() == (4.0,)


@pytest.mark.integration
def test_maintain_stores_old_days_as_runs(stack: Stack, database_url: str) -> None:
    day = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day -= dt.timedelta(days=5)
    with psycopg.connect(database_url, autocommit=True) as conn:
        for i in range(10):  # an idle lift's readings, the same every 2 s
            conn.execute(
                "INSERT INTO telemetry (ts, device_id, seq, floor) VALUES (%s, 1, %s, 4)",
                [day + dt.timedelta(hours=9, seconds=2 * i), i],
            )
    env = estate_env(
        stack.settings.var_dir,
        stack.settings.pg_port,
        stack.settings.mqtt_port,
        stack.settings.mqtt_device_port,
    )
    env["DATABASE_URL"] = database_url
    done = run_estate(["maintain"], env)  # off by default
    assert done.returncode == 0, done.stderr
    assert "stored as" not in done.stdout
    env["ESTATE_RUNS_AFTER_DAYS"] = "2"
    done = run_estate(["maintain"], env)
    assert done.returncode == 0, done.stderr
    assert "runs: 10 readings of a day stored as 1 runs" in done.stdout
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM telemetry").fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*), min(seq), max(seq) FROM telemetry_between(%s, %s)",
            (day, day + dt.timedelta(days=1)),
        ).fetchone() == (10, 0, 9)


@pytest.mark.integration
def test_apikey_add_list_revoke(stack: Stack, database_url: str) -> None:
    env = estate_env(
        stack.settings.var_dir,
        stack.settings.pg_port,
        stack.settings.mqtt_port,
        stack.settings.mqtt_device_port,
    )
    env["DATABASE_URL"] = database_url
    refused = run_estate(["apikey", "add", "control-room", "--role", "operator"], env)
    assert refused.returncode == 2
    assert "role operator needs --org" in refused.stderr
    added = run_estate(["apikey", "add", "ops-bot"], env)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("se_")
    assert "shown once" in added.stderr
    assert "ops-bot" in run_estate(["apikey", "list"], env).stdout
    assert run_estate(["apikey", "revoke", "ops-bot"], env).returncode == 0
    assert "revoked" in run_estate(["apikey", "list"], env).stdout
    assert run_estate(["apikey", "revoke", "ops-bot"], env).returncode == 2


@pytest.mark.integration
def test_silence_add_list_and_alerts(stack: Stack, database_url: str) -> None:
    env = estate_env(
        stack.settings.var_dir,
        stack.settings.pg_port,
        stack.settings.mqtt_port,
        stack.settings.mqtt_device_port,
    )
    env["DATABASE_URL"] = database_url
    assert run_estate(["registry", "load", "demo"], env).returncode == 0
    refused = run_estate(["silence", "add", "--estate", "HXY", "--hours", "2"], env)
    assert refused.returncode == 2
    assert "needs --estate, --hours and --reason" in refused.stderr
    added = run_estate(
        [
            "silence",
            "add",
            "--estate",
            "HXY",
            "--building",
            "B1",
            "--alert",
            "fire.door_open",
            "--hours",
            "2",
            "--reason",
            "door closer replaced",
            "--author",
            "wang",
        ],
        env,
    )
    assert added.returncode == 0, added.stderr
    listed = run_estate(["silence", "list"], env).stdout
    assert "HXY/B1/* fire.door_open" in listed
    assert "by wang: door closer replaced" in listed
    alerts = run_estate(["alerts", "--all"], env)
    assert (alerts.returncode, alerts.stdout) == (0, "")
    rules = run_estate(["rules", "check"], env)
    assert "rules (drainage" in rules.stdout
    no_cause = run_estate(["alerts", "false-alarm", "--id", "1"], env)
    assert no_cause.returncode == 2
    assert "needs --cause" in no_cause.stderr
    missing = run_estate(["alerts", "confirm", "--id", "999"], env)
    assert missing.returncode == 2
    assert "no alert 999" in missing.stderr


@pytest.mark.integration
def test_dispatch_commands(stack: Stack, database_url: str, tmp_path: Path) -> None:
    env = estate_env(
        stack.settings.var_dir,
        stack.settings.pg_port,
        stack.settings.mqtt_port,
        stack.settings.mqtt_device_port,
    )
    env["DATABASE_URL"] = database_url
    assert run_estate(["registry", "load", "demo"], env).returncode == 0
    shown = run_estate(["responsibility", "show"], env)
    assert shown.returncode == 0, shown.stderr
    assert "# version 0" in shown.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrows: [{kind: elevator, responsible: x}]\n")
    refused = run_estate(["responsibility", "push", str(bad), "--comment", "x"], env)
    assert refused.returncode == 2
    assert "dispatching row needs responsible, deadlines and escalation" in refused.stderr
    pushed = run_estate(
        ["responsibility", "push", "alerts/responsibility.yaml", "--comment", "as shipped"], env
    )
    assert pushed.returncode == 0, pushed.stderr
    assert "version 1 saved" in pushed.stdout
    assert "as shipped" in run_estate(["responsibility", "history"], env).stdout
    missing = run_estate(["orders", "acknowledge", "--id", "99"], env)
    assert missing.returncode == 2
    assert "no work order 99" in missing.stderr
    hook = run_estate(["webhook", "add", "--org", "NOPE", "--url", "http://x/h"], env)
    assert hook.returncode == 2
    assert "not in the registry" in hook.stderr
    hook = run_estate(["webhook", "add", "--org", "EM-TS", "--url", "http://127.0.0.1/h"], env)
    assert "signing secret (shown once)" in hook.stdout
    out = tmp_path / "ledger.xlsx"
    made = run_estate(
        ["ledger", "--start", "2026-01-01", "--end", "2027-01-01", "-o", str(out)], env
    )
    assert made.returncode == 0, made.stderr
    assert out.read_bytes()[:2] == b"PK"  # a zip: the xlsx container


@pytest.mark.integration
def test_cluster_up_status_down(tmp_path: Path) -> None:
    """`estate cluster up` on loopback: three NATS nodes, two workers, primary + replica; a
    device publishes to a node with its own login and the reading is stored; a device added
    to the registry can log in without a restart; `down` stops it all."""
    s = make_settings(tmp_path / "var")
    base = free_base()
    env = estate_env(s.var_dir, s.pg_port, s.mqtt_port, s.mqtt_device_port) | {
        "ESTATE_PG_REPLICA_PORT": str(free_port()), "ESTATE_CLUSTER_PORT": str(base),
        "ESTATE_CLUSTER_PARTITIONS": "4",
    }  # fmt: skip
    reg = tmp_path / "city.yaml"

    def registry(*codes: str) -> None:
        devices = ", ".join(
            f"{{code: {c}, kind: elevator, subtype: passenger, maintenance: EM}}" for c in codes
        )
        reg.write_text(
            "version: 1\nareas:\n  - {code: C, name: 市, level: city}\norganisations:\n"
            "  - {code: EM, name: 安达电梯, roles: [elevator_maintenance]}\n"
            "  - {code: PF, name: 东苑物业, roles: [property_firm]}\n"
            "estates:\n  - {code: E1, name: 东苑, area: C, property_firm: PF, buildings: ["
            "{code: B1, name: 1号楼,"
            f" floors: 9, devices: [{devices}]}}]}}\n"
        )
        done = run_estate(["registry", "load", str(reg)], env)
        assert done.returncode == 0, done.stderr

    def publish(code: str, seq: int, event: str | None = None) -> None:
        secret = load_secrets(s.var_dir)["device_secret"]
        login = Address("127.0.0.1", base + 12).login(
            device_username("E1", code), device_password(secret, "E1", code)
        )
        client = new_client(login, client_id("E1", code), clean_session=True)
        try:
            connect_and_wait(client, login, who=f"device E1/{code}")
            now = dt.datetime.now(dt.UTC)
            body = (contract.event(now, seq, event) if event
                    else contract.telemetry(now, seq, {"floor": 3.0}))  # fmt: skip
            topic = f"estate/v1/E1/elevator/{code}/{'event' if event else 'telemetry'}"
            client.publish(topic, contract.dumps(body), qos=1).wait_for_publish(10)
        finally:
            close(client)

    try:
        registry("L1")
        up = run_estate(["cluster", "up"], env)
        assert up.returncode == 0, up.stderr
        assert "3 NATS nodes, 4 partitions, 1 device logins, 2 ingest workers" in up.stdout
        deadline = time.monotonic() + 60
        # both workers hold a share (the first may take all, then gives half back)
        while True:
            status = run_estate(["cluster", "status"], env)
            if status.returncode == 0 and status.stdout.count("lease session") == 2:
                break
            assert time.monotonic() < deadline, status.stdout
            time.sleep(1)
        assert "postgres-replica: running" in status.stdout
        assert "supervisor: running" in status.stdout
        assert "log: 0 messages waiting" in status.stdout, status.stdout
        publish("L1", 7)
        registry("L1", "L2")  # the new lift's login reaches the running nodes
        publish("L2", 8)
        url = PrivateServices(s).endpoints().database_url
        # L1's reading stored; L2's stored too, or (the workers re-read the registry every
        # 30 s) a dead letter for an unknown device, replayable: never lost
        deadline = time.monotonic() + 30
        while True:
            with psycopg.connect(url) as conn:
                stored = {
                    f"{c}:{q}" for c, q in conn.execute(
                        "SELECT d.code, t.seq FROM telemetry t"
                        " JOIN devices d ON d.id = t.device_id")
                } | {
                    f"{t.split('/')[4]}:dead" for (t,) in conn.execute(
                        "SELECT topic FROM dead_letters WHERE reason = 'unknown_device'")
                }  # fmt: skip
            if stored >= {"L1:7"} and stored & {"L2:8", "L2:dead"}:
                break
            assert time.monotonic() < deadline, stored
            time.sleep(0.5)
        # a trapped passenger through the cluster: its alert, and the supervisor that
        # `cluster up` started dispatches the order to the lift's maintenance company
        publish("L1", 9, "trapped")
        deadline = time.monotonic() + 30
        while True:
            with psycopg.connect(url) as conn:
                order = conn.execute(
                    "SELECT assignee FROM work_orders WHERE device_code = 'L1'"
                    " AND alert_type = 'elevator.trapped'"
                ).fetchone()
            if order is not None:
                break
            assert time.monotonic() < deadline, "no work order for the trapped passenger"
            time.sleep(0.5)
        assert order[0] == "EM"
        down = run_estate(["cluster", "down"], env)
        assert down.returncode == 0, down.stderr
        assert run_estate(["cluster", "status"], env).returncode == 3
    finally:
        run_estate(["cluster", "down"], env)
        run_estate(["services", "stop"], env)
