"""The registry file: validation with readable errors, loading, and the city generator."""

from __future__ import annotations

import io
import textwrap
from decimal import Decimal
from typing import get_args

import pytest

from estate import registry
from estate.db import Conn
from estate.generate import generate, write_yaml
from ingest import contract

GOOD = """\
version: 1
areas:
  - {code: C, name: 市, level: city}
  - {code: D, name: 区, level: district, parent: C}
  - {code: S, name: 街道, level: street, parent: D}
organisations:
  - {code: PF, name: 物业, roles: [property_firm]}
  - {code: EM, name: 电梯维保, roles: [elevator_maintenance]}
  - {code: FM, name: 消防维保, roles: [fire_maintenance]}
estates:
  - code: E1
    name: 小区
    area: S
    property_firm: PF
    buildings:
      - code: B1
        name: 1号楼
        floors: 3
        unit_layout: {per_floor_m2: [80.25, 100]}
        units:
          - {code: G01, floor: -0, area_m2: 20}
        devices:
          - {code: L1, kind: elevator, subtype: passenger, maintenance: EM}
          - {code: SD1, kind: fire, subtype: smoke_detector, maintenance: FM}
    devices:
      - {code: SUMP1, kind: drainage, subtype: sump_pit, maintenance: PF}
"""


def test_a_good_file_validates_and_expands_unit_layouts() -> None:
    reg = registry.parse(GOOD)
    building = reg.estates[0].buildings[0]
    units = building.all_units()
    assert [u.code for u in units] == ["G01", "101", "102", "201", "202", "301", "302"]
    assert units[1].area_m2 == Decimal("80.25")
    assert [(e.code, b.code if b else None, d.code) for e, b, d in reg.devices()] == [
        ("E1", None, "SUMP1"),
        ("E1", "B1", "L1"),
        ("E1", "B1", "SD1"),
    ]


def test_the_shipped_demo_registry_is_valid() -> None:
    reg = registry.read(registry.demo_path())
    kinds = {d.kind for _, _, d in reg.devices()}
    assert kinds == set(get_args(registry.Kind)) == set(contract.KINDS)  # every kind is shown
    assert {k: tuple(s.subtype_metrics) for k, s in contract.KINDS.items()} == registry.SUBTYPES
    roles = {r for o in reg.organisations for r in o.roles}
    assert roles == {
        "property_firm",
        "elevator_maintenance",
        "fire_maintenance",
        "fire_brigade",
        "market_supervision",
        "street_office",
        "housing_authority",
    }
    assert any(e.property_firm is None for e in reg.estates)  # a community-managed estate


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "subtype: passenger",
            "subtype: sump_pit",
            "estates[0].buildings[0].devices[0] (line 23): Value error, subtype "
            "'sump_pit' is not a subtype of kind 'elevator'",
            id="subtype-of-kind",
        ),
        pytest.param(
            "maintenance: EM}",
            "maintenance: FM}",
            "estates[0].buildings[0].devices[0].maintenance (line 23): organisation 'FM' "
            "does not have the role 'elevator_maintenance'",
            id="maintainer-role",
        ),
        pytest.param(
            "property_firm: PF",
            "property_firm: NOPE",
            "estates[0].property_firm (line 14): unknown organisation 'NOPE'",
            id="unknown-org",
        ),
        pytest.param(
            "area: S\n",
            "area: X\n",
            "estates[0].area (line 13): unknown area 'X'",
            id="unknown-area",
        ),
        pytest.param(
            "code: SD1",
            "code: L1",
            "estates[0] (line 11): device code 'L1' is used 2 times",
            id="dup-device",
        ),
        pytest.param(
            "floors: 3",
            "floors: 0",
            "estates[0].buildings[0].floors (line 18): Input should be greater than 0",
            id="floors",
        ),
        pytest.param(
            "level: district, parent: C",
            "level: district, parent: S",
            "areas[1].parent (line 4): a district cannot sit under a street ('S')",
            id="area-levels",
        ),
        pytest.param(
            "code: E1",
            "code: 'E 1'",
            "estates[0].code (line 11): String should match pattern",
            id="code-pattern",
        ),
        pytest.param(
            "area_m2: 20}",
            "area_m2: 20.123}",
            "estates[0].buildings[0].units[0].area_m2 (line 21): Decimal input should "
            "have no more than 2 decimal places",
            id="area-precision",
        ),
        pytest.param(
            "version: 1", "version: 2", "version (line 1): Input should be 1", id="version"
        ),
        pytest.param(
            "    name: 小区\n",
            "    name: 小区\n    colour: red\n",
            "estates[0].colour (line 13): Extra inputs are not permitted",
            id="unknown-field",
        ),
    ],
)
def test_problems_name_the_place_and_line(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    with pytest.raises(registry.RegistryError) as info:
        registry.parse(GOOD.replace(old, new, 1), source="city.yaml")
    message = str(info.value)
    assert message.startswith("city.yaml: ")
    assert expected in message, message


def test_every_problem_is_reported_at_once() -> None:
    text = GOOD.replace("area: S\n", "area: X\n").replace("property_firm: PF", "property_firm: EM")
    with pytest.raises(registry.RegistryError) as info:
        registry.parse(text)
    assert len(info.value.problems) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("version: [1\n", "not valid YAML", id="syntax"),
        pytest.param("- just a list\n", "expected a mapping", id="not-a-mapping"),
    ],
)
def test_unreadable_documents(text: str, expected: str) -> None:
    with pytest.raises(registry.RegistryError, match=expected):
        registry.parse(text)


@pytest.mark.integration
def test_load_inserts_then_updates(conn: Conn) -> None:
    reg = registry.parse(GOOD)
    first = registry.load(conn, reg)
    assert first.counts["devices"] == (3, 0)
    assert first.counts["units"] == (7, 0)
    second = registry.load(conn, registry.parse(GOOD.replace("name: 1号楼", "name: 一号楼")))
    assert second.counts["devices"] == (0, 3)
    assert conn.execute("SELECT name FROM buildings").fetchall() == [("一号楼",)]
    rows = conn.execute(
        "SELECT d.code, d.kind, b.code, d.maintenance_code FROM devices d"
        " LEFT JOIN buildings b ON b.id = d.building_id ORDER BY d.code"
    ).fetchall()
    assert rows == [
        ("L1", "elevator", "B1", "EM"),
        ("SD1", "fire", "B1", "FM"),
        ("SUMP1", "drainage", None, "PF"),
    ]
    assert conn.execute("SELECT sum(area_m2) FROM units").fetchone() == (Decimal("560.75"),)
    assert conn.execute("SELECT role FROM organisation_roles WHERE org_code = 'EM'").fetchall() == [
        ("elevator_maintenance",)
    ]


@pytest.mark.integration
def test_demo_registry_loads(conn: Conn) -> None:
    report = registry.load(conn, registry.read(registry.demo_path()))
    n_devices = sum(1 for _ in registry.read(registry.demo_path()).devices())
    assert report.counts["devices"] == (n_devices, 0)


def test_generated_city_is_valid_deterministic_and_proportioned() -> None:
    doc = generate(60, seed=3)
    out = io.StringIO()
    write_yaml(doc, out)
    reg = registry.parse(out.getvalue())
    assert len(reg.estates) == 60
    assert len({e.area for e in reg.estates}) == 2  # a street office per 25 estates
    roles = [r for o in reg.organisations for r in o.roles]
    assert roles.count("property_firm") == 12  # about five estates per firm (seed 003)
    again = io.StringIO()
    write_yaml(generate(60, seed=3), again)
    assert again.getvalue() == out.getvalue()
    other = io.StringIO()
    write_yaml(generate(60, seed=4), other)
    assert other.getvalue() != out.getvalue()


def test_progress_is_reported() -> None:
    seen: list[tuple[int, int]] = []
    generate(5, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]


def test_yaml_anchors_under_x_keys_are_allowed() -> None:
    text = GOOD.replace(
        "estates:\n",
        textwrap.dedent("""\
        x-templates:
          lift: &lift {kind: elevator, subtype: passenger, maintenance: EM}
        estates:
        """),
    ).replace(
        "- {code: L1, kind: elevator, subtype: passenger, maintenance: EM}",
        "- {<<: *lift, code: L1}",
    )
    reg = registry.parse(text)
    assert reg.estates[0].buildings[0].devices[0].maintenance == "EM"
