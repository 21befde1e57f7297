"""The shape of the code: packages import one way (core at the bottom, entry points on
top), without cycles, and each says in its docstring what it owns."""

from __future__ import annotations

import ast
import graphlib
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
