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
    ):
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_the_embedded_stack() -> None:
    s = load_settings()
    assert s.database_url is None
    assert s.mqtt_url is None
    assert s.environment is Environment.DEVELOPMENT
    assert s.var_dir == Path(__file__).resolve().parents[1] / "var"


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
