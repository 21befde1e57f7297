"""Times at the command line: in ESTATE_TIMEZONE with the offset shown, as the console."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator

import pytest

from cli import common
from cli.main import LocalFormatter
from estate.settings import Settings, SettingsError, load_settings

UTC_NOON = dt.datetime(2026, 12, 4, 12, 0, 5, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def shanghai() -> Iterator[None]:
    common.use_zone("Asia/Shanghai")
    yield
    common.use_zone("Asia/Shanghai")


def test_a_stored_utc_time_is_shown_in_the_zone_with_its_offset() -> None:
    assert common.local(UTC_NOON) == "2026-12-04 20:00:05+08:00"
    assert common.local(UTC_NOON, seconds=False) == "2026-12-04 20:00+08:00"
    assert common.local(dt.datetime(2026, 12, 4, 17, 0, tzinfo=dt.UTC), date_only=True) == (
        "2026-12-05"  # already the next day in Shanghai
    )
    assert common.local(None) == "-"
    common.use_zone("Europe/Berlin")
    assert common.local(UTC_NOON) == "2026-12-04 13:00:05+01:00"


def test_a_typed_date_is_in_the_zone_unless_it_names_one() -> None:
    assert common.parse_local("2026-11-01") == dt.datetime(2026, 10, 31, 16, 0, tzinfo=dt.UTC)
    assert common.parse_local("2026-11-01T00:00+00:00") == dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def test_log_lines_carry_the_zone() -> None:
    record = logging.LogRecord("estate", logging.INFO, __file__, 1, "hello", None, None)
    record.created = UTC_NOON.timestamp()
    line = LocalFormatter("%(asctime)s %(message)s").format(record)
    assert line == "2026-12-04 20:00:05.000+08:00 hello"


def test_an_unknown_zone_is_refused_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ESTATE_TIMEZONE", "Mars/Olympus")
    with pytest.raises(SettingsError, match="ESTATE_TIMEZONE='Mars/Olympus' is not an IANA zone"):
        load_settings()
    monkeypatch.delenv("ESTATE_TIMEZONE")
    assert Settings().timezone == "Asia/Shanghai"
