"""One typed settings object, read from the environment.

Every variable has the prefix ``ESTATE_``; the two connection URLs also accept their
conventional unprefixed names ``DATABASE_URL`` and ``MQTT_URL``. With neither URL set, the
command line runs private PostgreSQL/TimescaleDB and Mosquitto instances under ``var/``.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AliasChoices, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PREFIX = "ESTATE_"
# The estates' zone: what a date or a year means to the people using the service (the
# API's times without an offset, the fund's yearly reports). ESTATE_TIMEZONE is the command
# line's, for the person at the terminal.
LOCAL_ZONE = ZoneInfo("Asia/Shanghai")
MIN_SECRET = 32  # characters of ESTATE_DEVICE_SECRET in production (it derives every password)


def _default_var_dir() -> Path:
    # In a checkout (editable install) var/ sits beside pyproject.toml whatever the cwd is.
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file():
        return root / "var"
    return Path.cwd() / "var"


Port = Annotated[int, Field(ge=1, le=65535)]


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """The whole configuration; ``markdown()`` writes its table (docs/configuration.md)."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        frozen=True,
        extra="ignore",
        populate_by_name=True,
        use_attribute_docstrings=True,  # each field's docstring: docs/configuration.md
    )

    environment: Environment = Environment.DEVELOPMENT
    """`development`, `test` or `production` (which refuses to start without its own
    servers and device secret)"""
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("ESTATE_DATABASE_URL", "DATABASE_URL")
    )
    """external PostgreSQL/TimescaleDB; unset → private server"""
    database_read_url: str | None = None
    """a streaming replica of that database: the API serves reads (GET) from it, writes and
    logins from the primary (docs/operations.md); unset → everything from the primary"""
    mqtt_url: str | None = Field(
        default=None, validation_alias=AliasChoices("ESTATE_MQTT_URL", "MQTT_URL")
    )
    """external broker, `mqtt://user:password@host:port`; unset → private broker"""
    timezone: str = "Asia/Shanghai"
    """the zone of every time a person reads or types at the command line: listings, logs,
    `estate ledger` periods (stored times are UTC)"""
    var_dir: Path = Field(default_factory=_default_var_dir)
    """where the private servers keep everything"""
    pg_bindir: Path = Path("/usr/lib/postgresql/15/bin")
    """PostgreSQL server binaries"""
    pg_port: Port = 55432
    """private PostgreSQL port (127.0.0.1 only)"""
    pg_replica_port: Port = 55433
    """private streaming replica's port (`estate replica start`; 127.0.0.1 only)"""
    mqtt_port: Port = 11883
    """private Mosquitto port for the service's own clients (127.0.0.1 only)"""
    mqtt_device_port: Port = 11884
    """private Mosquitto port for devices: there a client id is the device's login, so no
    device can take over a worker's (or another device's) session"""
    mqtt_device_url: str | None = None
    """where devices connect to an external broker (and `estate simulate --mode device`);
    unset: `MQTT_URL`'s host and port"""
    cluster_port: Port = 11900
    """`estate cluster up`: node i (1-3) of the local NATS cluster listens for NATS clients
    on this + i, for MQTT devices on this + 10 + i, for its routes on this + 20 + i, and
    for monitoring on this + 30 + i (127.0.0.1 only)"""
    cluster_partitions: int = Field(default=16, ge=1, le=1024)
    """partitions of the cluster's log (the estate is the key); fixed once devices publish"""
    mosquitto_bin: Path = Path("/usr/sbin/mosquitto")
    """Mosquitto binary"""
    service_user: str = "smartestate"
    """user the private servers run as when invoked as root"""
    device_secret: str | None = None
    """derives every device's MQTT password (HMAC, `estate.mqtt.device_password`); unset
    with the private broker: generated in `var/secrets.json`; required otherwise"""
    service_timeout_s: float = Field(default=60.0, gt=0)
    """how long to wait for a server to start or stop"""
    ingest_batch_size: int = Field(default=5000, ge=1, le=100_000)
    """messages per batch at most"""
    ingest_batch_age_ms: float = Field(default=20.0, gt=0)
    """a batch is written this long after its first message at most"""
    ts_max_past_s: float = Field(default=7 * 86400, gt=0)
    """older device timestamps are dead-lettered (`ts_out_of_bounds`); 7 days"""
    ts_max_future_s: float = Field(default=300, gt=0)
    """device clocks further ahead are dead-lettered"""
    silence_s: float = Field(default=300, gt=0)
    """a device silent this long is marked offline (cause `silence`)"""
    metrics_port: Port | None = None
    """Prometheus `/metrics` of `estate ingest` on 127.0.0.1; shard k uses this port + k"""
    ingest_client_prefix: str = "estate-ingest"
    """MQTT client id prefix; shard k of N is `{prefix}-{k}of{N}` (the persistent session),
    `…-events` its event lane's session, `…-out` its publications"""
    ingest_event_lane: bool = True
    """device events also on a session, queue and transaction of their own, judged ahead of
    telemetry (docs/ingest.md); off: events share the telemetry batches"""
    ingest_catch_all: str = "estate/#"
    """what a single worker, or shard 0, subscribes to beyond its estates"""
    alert_rules: Path | None = None
    """the alert rules file (reloaded when it changes); unset: the shipped
    `alerts/rules.yaml`"""
    emergency_list: Path | None = None
    """the fund's emergency repair list, per city; unset: the shipped `fund/emergency.yaml`"""
    api_host: str = "127.0.0.1"
    """where `estate api` listens"""
    api_port: Port = 8700
    """the API's port"""
    api_token_ttl_s: float = Field(default=900, gt=0, le=86400)
    """how long a login token lasts unless refreshed (at most a day)"""
    api_session_max_h: float = Field(default=12, gt=0, le=24 * 7)
    """`POST /api/v1/auth/refresh` keeps a token alive this long after the password login
    at most (a duty shift); then the password is asked again"""
    rollup_every_s: float = Field(default=15, gt=0)
    """how often ingest shard 0 recomputes pending rollups"""
    rollup_settle_s: float = Field(default=5, ge=0)
    """a minute is rolled up this long after it ends"""
    retention_raw_days: float = Field(default=30, ge=0)
    """raw telemetry kept (whole day chunks dropped after); `0` = forever; must exceed
    `ESTATE_TS_MAX_PAST_S`"""
    runs_after_days: float = Field(default=0, ge=0)
    """raw telemetry days older than this are stored as runs: a device's unchanged
    readings kept once with each repeat's time and sequence, losslessly (on a
    Timescale-licensed server: TimescaleDB's compression instead; docs/scale.md); `0` =
    never (the default); a city sets 2"""
    retention_events_days: float = Field(default=365, ge=0)
    """device events kept"""
    retention_1m_days: float = Field(default=90, ge=0)
    """per-minute rollups kept"""
    retention_1h_days: float = Field(default=1830, ge=0)
    """hourly rollups kept (five years)"""

    @model_validator(mode="after")
    def _known_zone(self) -> Settings:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"ESTATE_TIMEZONE={self.timezone!r} is not an IANA zone, e.g. Asia/Shanghai"
            ) from None
        return self

    @model_validator(mode="after")
    def _two_listeners(self) -> Settings:
        if self.mqtt_device_port == self.mqtt_port:
            raise ValueError(
                f"ESTATE_MQTT_DEVICE_PORT={self.mqtt_device_port} must differ from "
                "ESTATE_MQTT_PORT: devices and the service have listeners of their own"
            )
        return self

    @model_validator(mode="after")
    def _production_brings_its_own_secrets(self) -> Settings:
        # In development the private servers under var/ fill these in (generated secrets,
        # local URLs); a production service must never fall back to them silently.
        if self.environment is not Environment.PRODUCTION:
            return self
        missing = [
            name
            for name, value in (
                ("DATABASE_URL", self.database_url),
                ("MQTT_URL", self.mqtt_url),
                ("ESTATE_DEVICE_SECRET", self.device_secret),
            )
            if not value
        ]
        if missing:
            raise ValueError(
                f"ESTATE_ENVIRONMENT=production needs {', '.join(missing)}: production never "
                "starts the private servers or generates their secrets; set them to your "
                "TimescaleDB, your broker and the deployment's device secret"
            )
        if self.device_secret is not None and len(self.device_secret) < MIN_SECRET:
            raise ValueError(
                f"ESTATE_DEVICE_SECRET is {len(self.device_secret)} characters: production "
                f"needs at least {MIN_SECRET} (`python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'` makes one)"
            )
        return self

    @model_validator(mode="after")
    def _raw_outlives_late_messages(self) -> Settings:
        # A message up to ts_max_past_s old is still accepted; its raw chunk must still be
        # there, or its minute would be rolled up from the late rows alone.
        if self.retention_raw_days and self.retention_raw_days * 86400 <= self.ts_max_past_s:
            raise ValueError(
                f"ESTATE_RETENTION_RAW_DAYS={self.retention_raw_days:g} must be longer than "
                f"ESTATE_TS_MAX_PAST_S={self.ts_max_past_s:g} s (the oldest timestamp ingest "
                "accepts): raise the first or lower the second"
            )
        return self


class SettingsError(ValueError):
    """A configuration value is wrong; the message names the variable and what to do."""


def load_settings() -> Settings:
    """Read settings from the process environment.

    Raises SettingsError naming each bad variable, its value and the rule it broke.
    """
    try:
        return Settings()
    except ValidationError as err:
        lines = []
        for e in err.errors():
            if not e["loc"]:  # a rule across several variables: its message names them
                lines.append(str(e["msg"]).removeprefix("Value error, "))
                continue
            names = _env_names(e["loc"])
            raw = next((os.environ[n] for n in names if n in os.environ), None)
            lines.append(f"{' or '.join(names)}={raw!r}: {e['msg']}")
        raise SettingsError("bad configuration:\n  " + "\n  ".join(lines)) from err


def _env_names(loc: tuple[int | str, ...]) -> list[str]:
    field = str(loc[0]) if loc else "?"
    names = [f"{PREFIX}{field.upper()}"]
    if field in {"database_url", "mqtt_url"}:
        names.append(field.upper())
    return names


def markdown() -> str:
    """The configuration table of docs/configuration.md, from the fields themselves."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, f in Settings.model_fields.items():
        names = _env_names((name,))
        var = " or ".join(f"`{n}`" for n in reversed(names)) if len(names) > 1 else f"`{names[0]}`"
        if f.default_factory is not None:
            default = "`var/` in the checkout"
        elif f.default is None:
            default = "unset"
        else:
            shown = f.default.value if isinstance(f.default, StrEnum) else f.default
            default = f"`{shown}`"
        meaning = " ".join((f.description or "").split())
        lines.append(f"| {var} | {default} | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(markdown())
