from __future__ import annotations

from pathlib import Path

import pytest

from estate.settings import Environment, SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DATABASE_URL",
        "MQTT_URL",
        "ESTATE_DATABASE_URL",
        "ESTATE_MQTT_URL",
        "ESTATE_PG_PORT",
        "ESTATE_ENVIRONMENT",
        "ESTATE_VAR_DIR",
        "ESTATE_DEVICE_SECRET",
    ):
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_the_embedded_stack() -> None:
    s = load_settings()
    assert s.database_url is None
    assert s.mqtt_url is None
    assert s.environment is Environment.DEVELOPMENT
    assert s.var_dir == Path(__file__).resolve().parents[2] / "var"


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("DATABASE_URL", "database_url"),
        ("ESTATE_DATABASE_URL", "database_url"),
        ("MQTT_URL", "mqtt_url"),
        ("ESTATE_MQTT_URL", "mqtt_url"),
    ],
)
def test_urls_accept_prefixed_and_conventional_names(
    monkeypatch: pytest.MonkeyPatch, name: str, field: str
) -> None:
    monkeypatch.setenv(name, "scheme://somewhere")
    assert getattr(load_settings(), field) == "scheme://somewhere"


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("ESTATE_PG_PORT", "abc", "valid integer"),
        ("ESTATE_PG_PORT", "70000", "less than or equal to 65535"),
        ("ESTATE_ENVIRONMENT", "prod", "'development', 'test' or 'production'"),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert f"{name}={value!r}" in str(info.value)
    assert says in str(info.value)


def test_raw_retention_must_outlive_the_oldest_accepted_timestamp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ESTATE_RETENTION_RAW_DAYS", "3")
    monkeypatch.setenv("ESTATE_TS_MAX_PAST_S", str(7 * 86400))
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "ESTATE_RETENTION_RAW_DAYS=3 must be longer than ESTATE_TS_MAX_PAST_S=604800" in str(
        info.value
    )
    monkeypatch.setenv("ESTATE_RETENTION_RAW_DAYS", "0")  # 0 keeps raw rows forever: fine
    assert load_settings().retention_raw_days == 0


PRODUCTION_OK = {
    "ESTATE_ENVIRONMENT": "production",
    "DATABASE_URL": "postgresql://estate@db.internal/estate",
    "MQTT_URL": "mqtt://estate-service:pw@broker.internal:1883",
    "ESTATE_DEVICE_SECRET": "x" * 43,
}


@pytest.mark.parametrize(
    ("unset", "says"),
    [
        ("DATABASE_URL", "needs DATABASE_URL"),
        ("MQTT_URL", "needs MQTT_URL"),
        ("ESTATE_DEVICE_SECRET", "needs ESTATE_DEVICE_SECRET"),
    ],
)
def test_production_refuses_to_start_without_its_own_servers_and_secret(
    monkeypatch: pytest.MonkeyPatch, unset: str, says: str
) -> None:
    for name, value in PRODUCTION_OK.items():
        if name != unset:
            monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=says) as info:
        load_settings()
    assert "production never starts the private servers" in str(info.value)


def test_production_refuses_a_short_device_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PRODUCTION_OK.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ESTATE_DEVICE_SECRET", "secret")
    with pytest.raises(SettingsError, match="ESTATE_DEVICE_SECRET is 6 characters"):
        load_settings()


def test_production_with_everything_set_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PRODUCTION_OK.items():
        monkeypatch.setenv(name, value)
    s = load_settings()
    assert s.environment is Environment.PRODUCTION
    assert s.device_secret == "x" * 43


def test_development_fills_the_secrets_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESTATE_ENVIRONMENT", "development")
    s = load_settings()  # no URLs, no secret: the private servers under var/ provide them
    assert (s.database_url, s.mqtt_url, s.device_secret) == (None, None, None)
