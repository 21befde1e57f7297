"""Fixtures of the alert pipeline's tests."""

from __future__ import annotations

import pytest

from estate import registry
from estate.db import Conn


@pytest.fixture
def county(conn: Conn) -> Conn:
    """The test's database with the demo county loaded."""
    registry.load(conn, registry.read(registry.demo_path()))
    return conn
