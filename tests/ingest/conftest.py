"""Fixtures of the ingest tests: two passenger lifts of one estate, loaded for a test."""

from __future__ import annotations

import pytest

from estate import registry
from estate.db import Conn
from ingest.batch import DeviceRef

REGISTRY = """
version: 1
areas: [{code: C, name: c, level: city}]
organisations:
  - {code: EM, name: em, roles: [elevator_maintenance]}
estates:
  - code: RE
    name: e
    area: C
    buildings:
      - code: B1
        name: b
        floors: 10
        devices:
          - {code: L1, kind: elevator, subtype: passenger, maintenance: EM}
          - {code: L2, kind: elevator, subtype: passenger, maintenance: EM}
"""


@pytest.fixture
def devices(conn: Conn) -> dict[str, DeviceRef]:
    registry.load(conn, registry.parse(REGISTRY))
    rows = conn.execute("SELECT id, estate_code, code, kind FROM devices").fetchall()
    return {c: DeviceRef(i, e, c, k) for i, e, c, k in rows}
