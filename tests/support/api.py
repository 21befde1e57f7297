"""API keys for the tests that call the API as several roles."""

from __future__ import annotations

from collections.abc import Mapping

from api.auth import Role, create_key
from estate import registry
from estate.db import Conn

KeySpec = Mapping[str, tuple[Role, dict[str, str]]]


def demo_keys(conn: Conn, spec: KeySpec) -> dict[str, dict[str, str]]:
    """Load the demo county and make one API key per entry of ``spec`` (name → role and
    binding); returns the Authorization header of each, by name."""
    registry.load(conn, registry.read(registry.demo_path()))
    return {
        who: {"Authorization": f"Bearer {create_key(conn, who.replace(' ', '-'), r, **b)}"}
        for who, (r, b) in spec.items()
    }
