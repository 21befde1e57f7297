"""One list of work-order states (``alerts.orders.OrderState``): the table's CHECK
constraint, the API's schema and the console's labels all agree with it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

from alerts import dispatch, orders, supervise
from alerts.orders import OrderState
from api.app import create_app

ROOT = Path(__file__).resolve().parents[2]
STATES = {s.value for s in OrderState}


@pytest.mark.integration
def test_the_table_constraint_allows_exactly_the_states(
    conn: psycopg.Connection[tuple[Any, ...]],
) -> None:
    defs = [
        str(r[0])
        for r in conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'work_orders'::regclass AND contype = 'c'"
        )
    ]
    state_check = next(d for d in defs if "state" in d and "verifying" in d)
    assert set(re.findall(r"'([a-z_]+)'::text", state_check)) == STATES


def test_the_api_schema_lists_exactly_the_states() -> None:
    doc = create_app("postgresql://unused/unused").openapi()
    assert set(doc["components"]["schemas"]["OrderState"]["enum"]) == STATES
    order = doc["components"]["schemas"]["OrderOut"]["properties"]["state"]
    assert order == {"$ref": "#/components/schemas/OrderState"}
    param = next(
        p for p in doc["paths"]["/api/v1/work-orders"]["get"]["parameters"] if p["name"] == "state"
    )
    refs = {s.get("$ref") for s in param["schema"]["anyOf"]}
    assert "#/components/schemas/OrderState" in refs


def test_the_console_has_a_label_for_every_state() -> None:
    text = (ROOT / "api/web/src/i18n.js").read_text(encoding="utf-8")
    block = text[text.index("const STATES = {") :]
    block = block[: block.index("};")]
    labelled = set(re.findall(r"\b([a-z_]+): \[", block))
    assert labelled >= STATES, f"no console label for {sorted(STATES - labelled)}"


def test_the_pipeline_uses_only_the_states() -> None:
    used = {s for _, (to, frm) in dispatch.ACTIONS.items() for s in (to, *frm)}
    used |= {s for states in supervise.UNMET.values() for s in states}
    assert used <= set(OrderState)
    assert set(orders.LIVE) | set(orders.DONE) == set(OrderState)
    assert not set(orders.LIVE) & set(orders.DONE)
