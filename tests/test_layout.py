"""The shape of the code: packages import one way (core at the bottom, entry points on
top), without cycles, and each says in its docstring what it owns."""

from __future__ import annotations

import ast
import graphlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What each product package may import of the project: the layers of ARCHITECTURE.md.
ALLOWED: dict[str, set[str]] = {
    "estate": set(),
    "ingest": {"estate"},
    "alerts": {"estate", "ingest"},
    "oversight": {"estate", "alerts"},
    "fund": {"estate"},
    "simulators": {"estate", "ingest"},
    "api": {"estate", "ingest", "alerts", "oversight", "fund"},
    "cli": {"estate", "ingest", "alerts", "oversight", "fund", "simulators", "api"},
}


def imports_of(package: str) -> dict[str, set[str]]:
    """Project packages imported by each module of ``package`` (any depth, lazy imports too)."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found |= {n.split(".")[0] for n in names} & (ALLOWED.keys() - {package})
        out[str(path.relative_to(ROOT))] = found
    return out


def package_graph() -> dict[str, set[str]]:
    return {p: set().union(*imports_of(p).values()) for p in ALLOWED}


def test_the_package_graph_has_no_cycle() -> None:
    order = list(graphlib.TopologicalSorter(package_graph()).static_order())
    assert order[0] == "estate"
    assert order[-1] == "cli"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    upward = {
        module: sorted(found - ALLOWED[package])
        for module, found in imports_of(package).items()
        if found - ALLOWED[package]
    }
    assert upward == {}, f"{package} may import only {sorted(ALLOWED[package]) or 'nothing'}"


def test_the_graph_check_reads_real_imports() -> None:
    """Not vacuous: lazy imports inside functions count, and known edges are seen."""
    assert "api" in imports_of("cli")["cli/services.py"]  # imported inside cmd_api
    assert imports_of("estate")["estate/mqtt.py"] == set()  # paho is not the project
    assert {"alerts", "oversight", "fund"} <= package_graph()["api"]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_says_what_it_owns(package: str) -> None:
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text()))
    assert doc is not None
    assert 1 <= len(doc.splitlines()) <= 4
    assert "import" in doc.lower()  # and what it may import


# The one module that writes each table (INSERT, UPDATE, DELETE, COPY). The batch writer
# also COPYs dead letters, in the same transaction as the readings they came with.
OWNERS: dict[str, set[str]] = {
    "schema_migrations": {"estate/db.py"},
    "areas": {"estate/registry.py"},
    "organisations": {"estate/registry.py"},
    "organisation_roles": {"estate/registry.py"},
    "estates": {"estate/registry.py"},
    "buildings": {"estate/registry.py"},
    "units": {"estate/registry.py"},
    "devices": {"estate/registry.py"},
    # where a reading is stored (raw, or in a run) is ingest.runs' SQL, run by the writer
    "telemetry": {"ingest/runs.py"},
    "telemetry_runs": {"ingest/runs.py"},
    "telemetry_runs_horizon": {"ingest/runs.py"},
    "events": {"ingest/writer.py"},
    "device_state": {"ingest/writer.py"},
    "dead_letters": {"ingest/deadletters.py", "ingest/writer.py"},
    "rollup_dirty": {"ingest/rollup.py"},
    "alerts": {"alerts/store.py"},
    "alert_changes": {"alerts/store.py"},
    "alert_engine_state": {"alerts/store.py"},
    "incidents": {"alerts/store.py"},
    "silences": {"alerts/silences.py"},
    "work_orders": {"alerts/orders.py"},
    "work_order_events": {"alerts/orders.py"},
    "work_order_breaches": {"alerts/orders.py"},
    "dispatch_gaps": {"alerts/dispatch.py"},
    "supervision_items": {"alerts/supervise.py"},
    "notifications": {"alerts/notify.py"},
    "webhooks": {"alerts/notify.py"},
    "responsibility_versions": {"alerts/responsibility.py"},
    "notices": {"oversight/notices.py"},
    "notice_events": {"oversight/notices.py"},
    "notice_problems": {"oversight/notices.py"},
    "attachments": {"oversight/attachments.py"},
    "maintenance_records": {"oversight/maintenance.py"},
    "inspection_records": {"oversight/maintenance.py"},
    "duty_shifts": {"oversight/duty.py"},
    "duty_log": {"oversight/duty.py"},
    "maintenance_spending": {"oversight/noticeboard.py"},
    "owner_votes": {"fund/cases.py"},
    "fund_objections": {"fund/cases.py"},
    "fund_accounts": {"fund/cases.py"},
    "fund_cases": {"fund/cases.py"},
    "fund_case_events": {"fund/cases.py"},
    "fund_shares": {"fund/cases.py"},
    "fund_journal": {"fund/ledger.py"},
    "fund_legs": {"fund/ledger.py"},
    "api_keys": {"api/auth.py"},
    "users": {"api/auth.py"},
    "user_tokens": {"api/auth.py"},
}
_WRITE = re.compile(r"\b(?:INSERT INTO|UPDATE|DELETE FROM|COPY)\s+([a-z_]+)")


def writers() -> dict[str, set[str]]:
    """Tables written by each product module, from the SQL in its source."""
    out: dict[str, set[str]] = {}
    for package in ALLOWED:
        for path in (ROOT / package).rglob("*.py"):
            for table in _WRITE.findall(path.read_text(encoding="utf-8")):
                out.setdefault(table, set()).add(str(path.relative_to(ROOT)))
    return out


def test_every_table_is_written_by_its_owner_only() -> None:
    found = {t: w for t, w in writers().items() if t in OWNERS}
    wrong = {t: sorted(w - OWNERS[t]) for t, w in found.items() if w - OWNERS[t]}
    assert wrong == {}, "write through the owner module instead"
    assert {"work_orders", "silences", "incidents", "alerts"} <= found.keys()
