"""Private PostgreSQL/TimescaleDB and Mosquitto instances under ``var/``.

The embedded default: with no ``DATABASE_URL``/``MQTT_URL`` the command line runs its own
servers on their own ports, data directories and sockets, and never touches the machine's
system services. Everything here is idempotent: starting a running instance is a no-op,
stale pid files and sockets left by a killed run are cleaned up, and a port held by some
other program is reported rather than fought over.

PostgreSQL refuses to run as root, so when we are root both servers run as an unprivileged
system user (``ESTATE_SERVICE_USER``, created by ``scripts/setup-system.sh``). That user
keeps ``CAP_DAC_READ_SEARCH`` as an ambient capability so it can reach ``var/`` inside a
checkout that sits under a private (0700) directory, such as a fresh clone in ``mktemp -d``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from estate.mqtt import SERVICE_ACCOUNT, write_broker_files, write_private
from estate.settings import Settings

log = logging.getLogger("estate.services")
DB_NAME = "estate"
DB_USER = "estate"


class ServiceError(RuntimeError):
    """A private service could not be set up, started or stopped; the message says why."""


@dataclass(frozen=True)
class Status:
    """What ``estate services status`` reports for one instance."""

    name: str
    running: bool
    pid: int | None
    address: str
    detail: str


@dataclass(frozen=True)
class Endpoints:
    """The URLs in use, embedded or external; ``mqtt_device_url`` (no credentials) is where
    devices connect."""

    database_url: str
    mqtt_url: str
    mqtt_device_url: str = ""


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Runner:
    """Runs service processes as ourselves, or as the service user when we are root."""

    uid: int
    gid: int
    prefix: tuple[str, ...]

    @classmethod
    def for_settings(cls, settings: Settings) -> Runner:
        if os.geteuid() != 0:
            return cls(uid=os.getuid(), gid=os.getgid(), prefix=())
        try:
            pw = pwd.getpwnam(settings.service_user)
        except KeyError:
            raise ServiceError(
                f"running as root, the private servers need the system user "
                f"{settings.service_user!r}, which does not exist: run scripts/setup-system.sh "
                f"(or `make setup`), or set ESTATE_SERVICE_USER to an existing unprivileged user"
            ) from None
        prefix = (
            "setpriv",
            f"--reuid={pw.pw_uid}",
            f"--regid={pw.pw_gid}",
            "--clear-groups",
            "--inh-caps=+dac_read_search",
            "--ambient-caps=+dac_read_search",
        )
        return cls(uid=pw.pw_uid, gid=pw.pw_gid, prefix=prefix)

    def owned_dir(self, path: Path, mode: int = 0o700) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, self.uid, self.gid)
        path.chmod(mode)
        return path

    def run(self, argv: list[str], *, what: str, timeout: float) -> str:
        """Run to completion; raise ServiceError with the program's own words on failure."""
        try:
            done = subprocess.run(
                [*self.prefix, *argv],
                capture_output=True,
                text=True,
                timeout=timeout,
                start_new_session=True,  # Ctrl-C in the terminal must not reach the servers
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise ServiceError(f"{what}: no answer after {timeout:.0f} s") from err
        if done.returncode != 0:
            raise ServiceError(f"{what} failed:\n{(done.stderr or done.stdout).strip()}")
        return done.stdout


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` s for ``pid`` to exit (reaping it if it is our child); True if
    it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _pid_cmdline(pid) is None:
            return True
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if we are its parent
        time.sleep(0.05)
    return False


def stop_pid(pid: int, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Send ``sig`` to a process of ours and wait for it; SIGKILL after ``timeout`` s."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    if not wait_gone(pid, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_gone(pid, 10)


def detach(argv: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """Start ``argv`` in the background, detached from us (a new session, reparented to init
    when the shell that starts it exits; output appended to ``log``); return its pid."""
    done = subprocess.run(
        ["/bin/sh", "-c", 'log=$1; shift; "$@" >>"$log" 2>&1 </dev/null & echo $!',
         "detach", str(log), *argv],
        capture_output=True, text=True, check=True, start_new_session=True, env=env,
    )  # fmt: skip
    return int(done.stdout.strip())


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _pid_cmdline(pid: int) -> str | None:
    """The command line of a live process, or None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    if not raw or _state(pid) in ("Z", "X"):
        return None  # a zombie (or being reaped): dead, waiting for its parent
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _state(pid: int) -> str | None:
    """The process's state letter from /proc (R, S, D, Z, …), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # "pid (comm) S ...": the command may contain spaces and parentheses
    return stat.rsplit(")", 1)[1].split()[0] if ")" in stat else None


def _read_pid(path: Path) -> int | None:
    try:
        first = path.read_text().split("\n", 1)[0].strip()
        return int(first)
    except (FileNotFoundError, ValueError):
        return None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


_SECRET_KEYS = ("db_password", "mqtt_password", "device_secret")


def load_secrets(var_dir: Path) -> dict[str, str]:
    """Secrets of the private instances, made once and kept in ``var/secrets.json`` (0600).

    ``device_secret`` derives every device's MQTT password (see estate.mqtt).
    """
    path = var_dir / "secrets.json"
    data: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [k for k in _SECRET_KEYS if k not in data]
    if missing:
        var_dir.mkdir(parents=True, exist_ok=True)
        data.update({k: secrets.token_urlsafe(18) for k in missing})
        write_private(path, json.dumps(data, indent=2))
    return data


# --------------------------------------------------------------------------- PostgreSQL


class PrivatePostgres:
    """A TimescaleDB-enabled PostgreSQL cluster in ``var/pg`` on ``ESTATE_PG_PORT``."""

    name = "postgres"

    def __init__(self, settings: Settings, runner: Runner) -> None:
        self.settings = settings
        self.runner = runner
        self.root = settings.var_dir / "pg"
        self.data = self.root / "data"
        self.sockets = self.root / "run"
        self.log = self.root / "postgres.log"
        self.port = settings.pg_port
        self.password = load_secrets(settings.var_dir)["db_password"]

    def _bin(self, name: str) -> str:
        path = self.settings.pg_bindir / name
        if not path.exists():
            raise ServiceError(
                f"{path} not found: install postgresql-15 (scripts/setup-system.sh does) "
                f"or set ESTATE_PG_BINDIR"
            )
        return str(path)

    @property
    def url(self) -> str:
        return (
            f"postgresql://{DB_USER}:{quote(self.password, safe='')}"
            f"@127.0.0.1:{self.port}/{DB_NAME}"
        )

    def _pid(self) -> int | None:
        """PID of our postmaster if it is alive, else None (a stale pid file is removed)."""
        pidfile = self.data / "postmaster.pid"
        pid = _read_pid(pidfile)
        if pid is None:
            return None
        cmdline = _pid_cmdline(pid)
        if cmdline is not None and "postgres" in cmdline and str(self.data) in cmdline:
            return pid
        # The server died without cleaning up (SIGKILL, power loss) and the pid may even be
        # reused by an unrelated process: the lock files are stale and would block a start.
        pidfile.unlink(missing_ok=True)
        for lock in self.sockets.glob(".s.PGSQL.*"):
            lock.unlink(missing_ok=True)
        return None

    def init(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        self.runner.owned_dir(self.root)
        self.runner.owned_dir(self.sockets)
        pwfile = self.root / "initdb.pw"
        write_private(pwfile, self.password + "\n", owner=(self.runner.uid, self.runner.gid))
        try:
            self.runner.run(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    DB_USER,
                    f"--pwfile={pwfile}",
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-instructions",
                ],
                what="initdb",
                timeout=self.settings.service_timeout_s,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with (self.data / "postgresql.conf").open("a") as f:
            f.write("\ninclude_if_exists = 'estate.conf'\n")

    def _write_conf(self) -> None:
        # Rewritten at every start so that a changed port or socket path takes effect.
        conf = f"""# written by estate/services.py at every start; edit there, not here
listen_addresses = '127.0.0.1'
port = {self.port}
unix_socket_directories = '{self.sockets}'
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
max_connections = 200
shared_buffers = '512MB'
work_mem = '16MB'
maintenance_work_mem = '256MB'
max_wal_size = '4GB'
checkpoint_timeout = '15min'
wal_compression = on
timezone = 'UTC'
log_timezone = 'UTC'
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
"""
        path = self.data / "estate.conf"
        path.write_text(conf)
        os.chown(path, self.runner.uid, self.runner.gid)

    def start(self) -> None:
        self.init()
        if self._pid() is not None:
            return
        if port_in_use(self.port):
            raise ServiceError(
                f"port {self.port} is taken by another program, not by this checkout's "
                f"PostgreSQL: stop it, or set ESTATE_PG_PORT to a free port"
            )
        self.runner.owned_dir(self.sockets)
        self._write_conf()
        try:
            self.runner.run(
                [
                    self._bin("pg_ctl"),
                    "start",
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.log),
                    "-w",
                    "-t",
                    str(int(self.settings.service_timeout_s)),
                ],
                what="pg_ctl start",
                timeout=self.settings.service_timeout_s + 5,
            )
        except ServiceError as err:
            raise ServiceError(f"{err}\nlast lines of {self.log}:\n{_tail(self.log)}") from err
        self._ensure_database()

    def _ensure_database(self) -> None:
        import psycopg  # noqa: PLC0415  (keep `estate services status` free of libpq)

        admin = self.url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,))
            if row.fetchone() is None:
                conn.execute(f"CREATE DATABASE {DB_NAME}")

    def stop(self) -> None:
        if self._pid() is None:
            return
        self.runner.run(
            [
                self._bin("pg_ctl"),
                "stop",
                "-D",
                str(self.data),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(self.settings.service_timeout_s)),
            ],
            what="pg_ctl stop",
            timeout=self.settings.service_timeout_s + 5,
        )

    def status(self) -> Status:
        pid = self._pid()
        detail = "running" if pid else ("stopped" if self.data.exists() else "not initialised")
        return Status(self.name, pid is not None, pid, f"127.0.0.1:{self.port}", detail)


class PrivateReplica(PrivatePostgres):
    """A hot standby of the private server, in ``var/pg-replica`` on
    ``ESTATE_PG_REPLICA_PORT``: PostgreSQL's own streaming replication (``pg_basebackup
    -R``), read-only, for the API's reads (``ESTATE_DATABASE_READ_URL``)."""

    name = "postgres-replica"

    def __init__(self, settings: Settings, runner: Runner) -> None:
        super().__init__(settings, runner)
        self.primary = PrivatePostgres(settings, runner)
        self.root = settings.var_dir / "pg-replica"
        self.data = self.root / "data"
        self.sockets = self.root / "run"
        self.log = self.root / "postgres.log"
        self.port = settings.pg_replica_port
        # the standby's connection to the primary reads its password here (libpq passfile)
        self.passfile = self.root / "pgpass"

    def init(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        if self.primary._pid() is None:
            raise ServiceError("the replica copies the private PostgreSQL: start it first")
        self.runner.owned_dir(self.root)
        self.runner.owned_dir(self.sockets)
        write_private(
            self.passfile,
            f"127.0.0.1:{self.primary.port}:*:{DB_USER}:{self.password}\n",
            owner=(self.runner.uid, self.runner.gid),
        )
        conninfo = (
            f"host=127.0.0.1 port={self.primary.port} user={DB_USER} passfile={self.passfile}"
            " application_name=estate-replica"
        )
        self.runner.run(
            [self._bin("pg_basebackup"), "-D", str(self.data), "-d", conninfo, "-R",
             "-X", "stream", "-c", "fast"],
            what="pg_basebackup",
            timeout=self.settings.service_timeout_s * 5,
        )  # fmt: skip

    def _ensure_database(self) -> None:
        """Nothing to create: the standby has what the primary has."""


# --------------------------------------------------------------------------- Mosquitto


class PrivateMosquitto:
    """A Mosquitto broker in ``var/mqtt``: auth, ACLs, persistence, and two listeners on
    127.0.0.1: ``ESTATE_MQTT_PORT`` for the service account (workers, API, supervisor),
    ``ESTATE_MQTT_DEVICE_PORT`` for devices, where a client id is the device's login
    (``use_username_as_clientid``), so nobody with a device's credentials can take over
    a worker's or another device's session (see estate.mqtt.write_broker_files)."""

    name = "mosquitto"

    def __init__(self, settings: Settings, runner: Runner) -> None:
        self.settings = settings
        self.runner = runner
        self.root = settings.var_dir / "mqtt"
        self.conf = self.root / "mosquitto.conf"
        self.passwd = self.root / "passwd"
        self.passwd_service = self.root / "passwd-service"
        self.acl = self.root / "acl"
        self.store = self.root / "data"
        self.pidfile = self.root / "mosquitto.pid"
        self.log = self.root / "mosquitto.log"
        self.port = settings.mqtt_port
        self.device_port = settings.mqtt_device_port
        self.password = load_secrets(settings.var_dir)["mqtt_password"]

    @property
    def url(self) -> str:
        return f"mqtt://{SERVICE_ACCOUNT}:{quote(self.password, safe='')}@127.0.0.1:{self.port}"

    @property
    def device_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.device_port}"

    def _pid(self) -> int | None:
        pid = _read_pid(self.pidfile)
        if pid is None:
            return None
        cmdline = _pid_cmdline(pid)
        if cmdline is not None and "mosquitto" in cmdline and str(self.conf) in cmdline:
            return pid
        self.pidfile.unlink(missing_ok=True)  # stale: the broker died without cleaning up
        return None

    def _write_files(self) -> None:
        owner = (self.runner.uid, self.runner.gid)
        self.runner.owned_dir(self.root)
        self.runner.owned_dir(self.store)
        if not all(p.exists() for p in (self.passwd, self.passwd_service, self.acl)):
            self.sync_devices([])
        # Mosquitto keeps its queues in memory and saves them every autosave_interval: a
        # crash (kill -9, power) loses what it accepted since the last save and had not yet
        # handed to a worker that committed it. One second bounds that window (measured by
        # tests/ingest/test_hostile.py::test_a_broker_crash_loses_at_most_its_save_window);
        # a clustered engine with a replicated log is the configuration that loses nothing.
        # Inflight and queue limits are sized for acknowledge-after-commit: the ingest worker
        # holds a whole batch unacknowledged until its COPY commits, so the broker must let
        # that many QoS 1 messages be in flight, and must queue a worker's backlog while it
        # is down (persistent session) instead of dropping it.
        conf = f"""# written by estate/services.py at every start; edit there, not here
per_listener_settings true
# the service's own clients (ingest workers, API, supervisor): only the service account
listener {self.port} 127.0.0.1
allow_anonymous false
password_file {self.passwd_service}
acl_file {self.acl}
# devices: the client id is the device's login, whatever the device asks for
listener {self.device_port} 127.0.0.1
allow_anonymous false
password_file {self.passwd}
acl_file {self.acl}
use_username_as_clientid true
persistence true
persistence_location {self.store}/
autosave_interval 1
pid_file {self.pidfile}
log_dest file {self.log}
log_type error
log_type warning
log_type notice
connection_messages true
max_inflight_messages 20000
max_queued_messages 2000000
max_queued_bytes 0
max_packet_size 1048576
persistent_client_expiration 7d
"""
        write_private(self.conf, conf, owner=owner)

    def start(self) -> None:
        if self._pid() is not None:
            return
        for port, var in (
            (self.port, "ESTATE_MQTT_PORT"),
            (self.device_port, "ESTATE_MQTT_DEVICE_PORT"),
        ):
            if port_in_use(port):
                raise ServiceError(
                    f"port {port} is taken by another program, not by this checkout's "
                    f"Mosquitto: stop it, or set {var} to a free port"
                )
        if not Path(self.settings.mosquitto_bin).exists():
            raise ServiceError(
                f"{self.settings.mosquitto_bin} not found: install mosquitto "
                f"(scripts/setup-system.sh does) or set ESTATE_MOSQUITTO_BIN"
            )
        self._write_files()
        # -d: mosquitto checks its configuration in the foreground (errors reach us on
        # stderr), then detaches and writes its pid file.
        self.runner.run(
            [str(self.settings.mosquitto_bin), "-c", str(self.conf), "-d"],
            what="mosquitto start",
            timeout=self.settings.service_timeout_s,
        )
        deadline = time.monotonic() + self.settings.service_timeout_s
        while time.monotonic() < deadline:
            if port_in_use(self.port) and port_in_use(self.device_port) and self._pid():
                return
            time.sleep(0.05)
        raise ServiceError(
            f"mosquitto did not open port {self.port}; last lines of {self.log}:\n{_tail(self.log)}"
        )

    def sync_devices(self, devices: Iterable[tuple[str, str, str]]) -> int:
        """Credentials for the service account and these (estate, kind, device); applied
        to a running broker without a restart. Returns the number of devices."""
        secret = load_secrets(self.settings.var_dir)["device_secret"]
        n = write_broker_files(
            self.root,
            service_password=self.password,
            secret=secret,
            devices=devices,
            owner=(self.runner.uid, self.runner.gid),
        )
        self.reload()
        return n

    def reload(self) -> None:
        """Re-read password and ACL files without dropping connections (SIGHUP)."""
        pid = self._pid()
        if pid is not None:
            os.kill(pid, signal.SIGHUP)

    def stop(self) -> None:
        pid = self._pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)  # mosquitto saves its persistence file on SIGTERM
        if self._gone(pid, self.settings.service_timeout_s):
            return
        # Still there: a broker that ignores SIGTERM must not outlive `estate services
        # stop` (its port and pid file would block the next start). What it had not saved
        # is lost, as after a crash; autosave_interval bounds that to a second.
        log.warning("mosquitto (pid %d) ignored SIGTERM for %.0f s: killing it", pid,
                    self.settings.service_timeout_s)  # fmt: skip
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not self._gone(pid, 10):
            raise ServiceError(f"mosquitto (pid {pid}) did not stop, even after SIGKILL")

    def _gone(self, pid: int, timeout: float) -> bool:
        """Wait up to ``timeout`` s for ``pid`` to exit; True (pid file removed) if it did."""
        if wait_gone(pid, timeout):
            self.pidfile.unlink(missing_ok=True)
            return True
        return False

    def status(self) -> Status:
        pid = self._pid()
        detail = "running" if pid else "stopped"
        address = f"127.0.0.1:{self.port} (devices :{self.device_port})"
        return Status(self.name, pid is not None, pid, address, detail)


# --------------------------------------------------------------------------- the stack


class PrivateServices:
    """Both private instances; only the ones whose URL is not configured are managed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._runner: Runner | None = None

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            self._runner = Runner.for_settings(self.settings)
        return self._runner

    def managed(self) -> list[PrivatePostgres | PrivateMosquitto]:
        # A URL naming the private instance's own address counts as unset: after
        # `eval "$(estate env --show-secrets)"` the shell exports exactly those URLs, and
        # `estate services stop` must still stop the private servers.
        s = self.settings
        out: list[PrivatePostgres | PrivateMosquitto] = []
        if s.database_url is None or _is_private(s.database_url, s.pg_port):
            out.append(PrivatePostgres(s, self.runner))
        if s.mqtt_url is None or _is_private(s.mqtt_url, s.mqtt_port):
            out.append(PrivateMosquitto(s, self.runner))
        return out

    def endpoints(self) -> Endpoints:
        """The URLs in use: the configured ones when set (even when they name a private
        instance, e.g. another database on it), else the private instances'."""
        s = self.settings
        db = s.database_url or PrivatePostgres(s, self.runner).url
        if s.mqtt_url is None or _is_private(s.mqtt_url, s.mqtt_port):
            mosq = PrivateMosquitto(s, self.runner)
            return Endpoints(db, s.mqtt_url or mosq.url, s.mqtt_device_url or mosq.device_url)
        device = s.mqtt_device_url
        if device is None:  # the external broker's one listener, without our credentials
            u = urlsplit(s.mqtt_url)
            device = f"{u.scheme}://{u.hostname or '127.0.0.1'}:{u.port or 1883}"
        return Endpoints(db, s.mqtt_url, device)

    def start(self) -> list[str]:
        """Start what is not running; return the names of the ones this call started."""
        started: list[str] = []
        try:
            for svc in self.managed():
                if not svc.status().running:
                    svc.start()
                    started.append(svc.name)
        except BaseException:
            self.stop(only=started)
            raise
        return started

    def stop(self, only: list[str] | None = None) -> None:
        errors: list[str] = []
        for svc in reversed(self.managed()):
            if only is None or svc.name in only:
                try:
                    svc.stop()
                except ServiceError as err:
                    errors.append(str(err))
        if errors:
            raise ServiceError("\n".join(errors))

    def status(self) -> list[Status]:
        return [svc.status() for svc in self.managed()]

    def _owner_file(self, name: str) -> Path:
        return self.settings.var_dir / f"{name}.owner"

    def disown(self) -> None:
        """Keep the running servers up after any ``running()`` block ends (services start)."""
        for svc in self.managed():
            self._owner_file(svc.name).unlink(missing_ok=True)

    def _adopt_orphans(self) -> list[str]:
        """Services a previous ``running()`` started and never stopped (it was killed)."""
        orphans = []
        for svc in self.managed():
            owner = _read_pid(self._owner_file(svc.name))
            if owner is not None and _pid_cmdline(owner) is None and svc.status().running:
                orphans.append(svc.name)
        return orphans

    @contextlib.contextmanager
    def running(self) -> Iterator[Endpoints]:
        """Yield the endpoints with everything up; on exit stop what was started here.

        Servers that an earlier ``running()`` started but could not stop (it was killed)
        are adopted and stopped too, so an interrupted demo leaves nothing behind for long.
        Servers started with ``estate services start`` are left running.
        """
        ours = self._adopt_orphans() + self.start()
        for name in ours:
            self._owner_file(name).write_text(f"{os.getpid()}\n")
        try:
            yield self.endpoints()
        finally:
            try:
                self.stop(only=ours)
            finally:
                for name in ours:
                    self._owner_file(name).unlink(missing_ok=True)


def _is_private(url: str, port: int) -> bool:
    parts = urlsplit(url)
    return parts.hostname in {"127.0.0.1", "localhost"} and parts.port == port


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, host = rest.rsplit("@", 1)
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in userinfo else url
