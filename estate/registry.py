"""The registry: areas, organisations and their roles, estates, buildings, units, devices.

Read from a YAML file (format in docs/contract.md, example in ``estate/data/demo-registry.yaml``),
validated once here, then loaded into the database in one transaction. Every problem in
a file is reported at once, each with its place in the file (``estates[2].buildings[0]``)
and its line, so a person can fix the file in one go.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from estate.db import Conn

Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
# estate/v1/orgs/… carries notifications (ingest.contract.ORGS): no estate may be called so
ORGS = "orgs"
# the device kinds of the contract (ingest.contract.KINDS; a test keeps the two equal)
Kind = Literal["elevator", "fire", "drainage", "water_supply"]
Role = Literal[
    "property_firm",
    "elevator_maintenance",
    "fire_maintenance",
    "fire_brigade",
    "market_supervision",
    "street_office",
    "housing_authority",
]

SUBTYPES: dict[str, tuple[str, ...]] = {
    "elevator": ("passenger", "freight", "escalator"),
    "fire": (
        "fire_panel",
        "smoke_detector",
        "manual_call_point",
        "hydrant_pressure",
        "sprinkler_pressure",
        "water_tank",
        "fire_pump",
        "fire_door",
        "electrical",
    ),
    "drainage": ("sump_pit", "manhole", "immersion", "backflow_valve"),
    "water_supply": ("booster_pump", "tank", "water_quality"),
}
# Which role a device's maintenance unit must hold; drainage and secondary water supply
# are kept by the property firm itself or a contractor (in many cities the water company
# takes the pump rooms over), so any organisation may be named there.
MAINTAINER_ROLE: dict[str, str | None] = {
    "elevator": "elevator_maintenance",
    "fire": "fire_maintenance",
    "drainage": None,
    "water_supply": None,
}
_LEVELS = {"city": 0, "district": 1, "street": 2}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Area(_Model):
    code: Code
    name: str = Field(min_length=1)
    level: Literal["city", "district", "street"]
    parent: Code | None = None


class Organisation(_Model):
    code: Code
    name: str = Field(min_length=1)
    roles: list[Role] = Field(min_length=1)
    area: Code | None = None
    phone: str | None = None


class Unit(_Model):
    code: str = Field(min_length=1, max_length=32)
    floor: int
    area_m2: Decimal = Field(gt=0, max_digits=10, decimal_places=2)


class UnitLayout(_Model):
    """Shorthand for a building's units: the same flats on every floor from ``first_floor``.

    Unit codes are floor then position, e.g. floor 12, second flat → ``1202``.
    """

    per_floor_m2: list[Annotated[Decimal, Field(gt=0, max_digits=10, decimal_places=2)]] = Field(
        min_length=1
    )
    first_floor: int = 1

    def expand(self, floors: int) -> list[Unit]:
        return [
            Unit(code=f"{floor}{i + 1:02d}", floor=floor, area_m2=area)
            for floor in range(self.first_floor, floors + 1)
            for i, area in enumerate(self.per_floor_m2)
        ]


class Device(_Model):
    code: Code
    kind: Kind
    subtype: str
    location: str | None = None
    floor: int | None = None
    maintenance: Code | None = None
    install_date: dt.date | None = None
    last_maintenance: dt.date | None = None
    inspection_due: dt.date | None = None
    # a lift's 96333 emergency rescue code (应急救援识别码, posted in the car) and its
    # registration certificate number (使用登记证编号)
    emergency_code: str | None = Field(default=None, pattern=r"^[0-9]{5,8}$")
    registration_no: str | None = Field(
        default=None, pattern=r"^[0-9A-Za-z\u4e00-\u9fff()（）-]{4,40}$"
    )
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _subtype_of_kind(self) -> Device:
        if self.subtype not in SUBTYPES[self.kind]:
            raise ValueError(
                f"subtype {self.subtype!r} is not a subtype of kind {self.kind!r}; "
                f"use one of: {', '.join(SUBTYPES[self.kind])}"
            )
        if self.kind != "elevator" and (self.emergency_code or self.registration_no):
            raise ValueError("emergency_code and registration_no are for lifts")
        return self


class Building(_Model):
    code: Code
    name: str = Field(min_length=1)
    floors: int = Field(gt=0, le=200)
    basement_floors: int = Field(default=0, ge=0, le=20)
    units: list[Unit] = Field(default_factory=list)
    unit_layout: UnitLayout | None = None
    devices: list[Device] = Field(default_factory=list)

    def all_units(self) -> list[Unit]:
        layout = self.unit_layout.expand(self.floors) if self.unit_layout else []
        return [*self.units, *layout]


class Estate(_Model):
    code: Code
    name: str = Field(min_length=1)
    area: Code
    address: str | None = None
    property_firm: Code | None = None  # None: no property firm (community-managed)
    owners_committee: bool = False
    buildings: list[Building] = Field(default_factory=list)
    devices: list[Device] = Field(default_factory=list)  # estate-wide: pumps, sump pits

    @field_validator("code")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v == ORGS:
            raise ValueError(f"estate code {v!r} is reserved: estate/v1/{v}/ carries notifications")
        return v


class Registry(_Model):
    version: Literal[1]
    areas: list[Area] = Field(default_factory=list)
    organisations: list[Organisation] = Field(default_factory=list)
    estates: list[Estate] = Field(default_factory=list)

    def devices(self) -> Iterator[tuple[Estate, Building | None, Device]]:
        for e in self.estates:
            for d in e.devices:
                yield e, None, d
            for b in e.buildings:
                for d in b.devices:
                    yield e, b, d


# --------------------------------------------------------------------------- validation

Loc = tuple[int | str, ...]


@dataclass(frozen=True)
class Problem:
    loc: Loc
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = _loc_str(self.loc) or "(top level)"
        at = f" (line {self.line})" if self.line else ""
        return f"{where}{at}: {self.message}"


class RegistryError(ValueError):
    """A registry file is unreadable or invalid; ``problems`` lists every finding."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.problems = problems
        shown = "\n  ".join(str(p) for p in problems[:50])
        more = f"\n  … and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{source}: {len(problems)} problem(s):\n  {shown}{more}")


def _loc_str(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Checker:
    """Cross-reference checks pydantic cannot do field by field; collects every problem."""

    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        self.areas = {a.code: a for a in reg.areas}
        self.orgs = {o.code: o for o in reg.organisations}
        self.problems: list[Problem] = []

    def add(self, loc: Loc, message: str) -> None:
        self.problems.append(Problem(loc, message))

    def dupes(self, loc: Loc, codes: Iterable[str], what: str) -> None:
        for code, n in Counter(codes).items():
            if n > 1:
                self.add(loc, f"{what} code {code!r} is used {n} times")

    def area(self, loc: Loc, code: str | None) -> None:
        if code is not None and code not in self.areas:
            self.add(loc, f"unknown area {code!r}")

    def org_with_role(self, loc: Loc, code: str | None, role: str | None) -> None:
        if code is None:
            return
        if code not in self.orgs:
            self.add(loc, f"unknown organisation {code!r}")
        elif role is not None and role not in self.orgs[code].roles:
            self.add(loc, f"organisation {code!r} does not have the role {role!r}")

    def run(self) -> list[Problem]:
        reg = self.reg
        self.dupes(("areas",), (a.code for a in reg.areas), "area")
        self.dupes(("organisations",), (o.code for o in reg.organisations), "organisation")
        self.dupes(("estates",), (e.code for e in reg.estates), "estate")
        for i, a in enumerate(reg.areas):
            self.area_parent(("areas", i, "parent"), a)
        for i, o in enumerate(reg.organisations):
            self.area(("organisations", i, "area"), o.area)
        for i, e in enumerate(reg.estates):
            self.estate(("estates", i), e)
        # 96333 codes are unique across the registry: the rescue line finds a lift by it
        self.dupes(
            ("estates",),
            (d.emergency_code for _, _, d in reg.devices() if d.emergency_code),
            "emergency",
        )
        return self.problems

    def area_parent(self, loc: Loc, a: Area) -> None:
        if a.parent is None:
            if a.level != "city":
                self.add(loc, f"a {a.level} needs a parent area")
            return
        parent = self.areas.get(a.parent)
        if parent is None:
            self.add(loc, f"unknown area {a.parent!r}")
        elif _LEVELS[parent.level] >= _LEVELS[a.level]:
            self.add(loc, f"a {a.level} cannot sit under a {parent.level} ({a.parent!r})")

    def estate(self, loc: Loc, e: Estate) -> None:
        self.area((*loc, "area"), e.area)
        self.org_with_role((*loc, "property_firm"), e.property_firm, "property_firm")
        self.dupes((*loc, "buildings"), (b.code for b in e.buildings), "building")
        codes = [d.code for d in e.devices] + [d.code for b in e.buildings for d in b.devices]
        self.dupes(loc, codes, "device")
        for k, d in enumerate(e.devices):
            self.device((*loc, "devices", k), d)
        for j, b in enumerate(e.buildings):
            bloc = (*loc, "buildings", j)
            self.dupes(bloc, (u.code for u in b.all_units()), "unit")
            for k, u in enumerate(b.units):
                if not -b.basement_floors <= u.floor <= b.floors:
                    self.add(
                        (*bloc, "units", k, "floor"), f"floor {u.floor} is outside the building"
                    )
            for k, d in enumerate(b.devices):
                self.device((*bloc, "devices", k), d)

    def device(self, loc: Loc, d: Device) -> None:
        self.org_with_role((*loc, "maintenance"), d.maintenance, MAINTAINER_ROLE[d.kind])


def _yaml_load(text: str) -> Any:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)  # noqa: S506  (a safe loader)


def _line_of(root: yaml.Node | None, loc: Loc) -> int | None:
    """The 1-based line of ``loc`` in the composed YAML tree, as deep as it can be found."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        nxt: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if getattr(k, "value", None) == part:
                    nxt = v if not isinstance(v, yaml.ScalarNode) else k
                    break
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            nxt = node.value[part]
        if nxt is None:
            break
        node = nxt
        line = node.start_mark.line + 1
    return line


def parse(text: str, *, source: str = "<registry>") -> Registry:
    """Validate a registry document; raise RegistryError listing every problem."""
    try:
        raw = _yaml_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise RegistryError(source, [Problem((), f"not valid YAML: {err}", line)]) from err
    if not isinstance(raw, dict):
        raise RegistryError(
            source,
            [Problem((), "expected a mapping with version, areas, organisations and estates")],
        )
    # Top-level keys starting with "x-" hold YAML anchors and notes (as in OpenAPI and
    # Compose files); they are not part of the registry.
    raw = {k: v for k, v in raw.items() if not str(k).startswith("x-")}
    try:
        reg = Registry.model_validate(raw)
        problems = _Checker(reg).run()
    except ValidationError as err:
        problems = [Problem(tuple(e["loc"]), e["msg"]) for e in err.errors()]
    if not problems:
        return reg
    # Only a failing file pays for composing the node tree that carries line numbers.
    root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    located = [Problem(p.loc, p.message, _line_of(root, p.loc)) for p in problems]
    raise RegistryError(source, located)


def read(path: Path) -> Registry:
    """Read and validate a registry file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise RegistryError(str(path), [Problem((), f"cannot read the file: {err}")]) from err
    return parse(text, source=str(path))


def demo_path() -> Path:
    return Path(__file__).with_name("data") / "demo-registry.yaml"


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class LoadReport:
    """Rows inserted and updated per table by one load."""

    counts: dict[str, tuple[int, int]]

    def __str__(self) -> str:
        return ", ".join(f"{t}: {i} new, {u} updated" for t, (i, u) in self.counts.items())


_UPSERT_COUNT = "SELECT count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins) FROM up"


def _count(conn: Conn, query: str, params: Any = None) -> tuple[int, int]:
    row = conn.execute(
        f"WITH up AS ({query} RETURNING (xmax = 0) AS ins) {_UPSERT_COUNT}",
        params,
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _copy(conn: Conn, table: str, columns: str, rows: Iterable[tuple[Any, ...]]) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as cp:
        for r in rows:
            cp.write_row(r)


def load(conn: Conn, reg: Registry) -> LoadReport:
    """Insert or update everything in ``reg`` in one transaction (nothing is deleted)."""
    counts: dict[str, tuple[int, int]] = {}
    with conn.transaction():
        conn.execute(
            "CREATE TEMP TABLE _areas (code text, name text, level text, parent text, rank int)"
            " ON COMMIT DROP"
        )
        _copy(
            conn,
            "_areas",
            "code, name, level, parent, rank",
            ((a.code, a.name, a.level, a.parent, _LEVELS[a.level]) for a in reg.areas),
        )
        counts["areas"] = _count(
            conn,
            "INSERT INTO areas (code, name, level, parent_code) SELECT code, name, level, parent"
            " FROM _areas ORDER BY rank ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name,"
            " level = EXCLUDED.level, parent_code = EXCLUDED.parent_code",
        )
        conn.execute(
            "CREATE TEMP TABLE _orgs (code text, name text, area text, phone text, roles text[])"
            " ON COMMIT DROP"
        )
        _copy(
            conn,
            "_orgs",
            "code, name, area, phone, roles",
            ((o.code, o.name, o.area, o.phone, list(o.roles)) for o in reg.organisations),
        )
        counts["organisations"] = _count(
            conn,
            "INSERT INTO organisations (code, name, area_code, phone) SELECT code, name, area,"
            " phone FROM _orgs ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name,"
            " area_code = EXCLUDED.area_code, phone = EXCLUDED.phone, updated_at = now()",
        )
        conn.execute("DELETE FROM organisation_roles r USING _orgs o WHERE r.org_code = o.code")
        conn.execute("INSERT INTO organisation_roles SELECT code, unnest(roles) FROM _orgs")

        conn.execute(
            "CREATE TEMP TABLE _estates (code text, name text, area text, address text,"
            " firm text, committee bool) ON COMMIT DROP"
        )
        _copy(
            conn,
            "_estates",
            "code, name, area, address, firm, committee",
            (
                (e.code, e.name, e.area, e.address, e.property_firm, e.owners_committee)
                for e in reg.estates
            ),
        )
        counts["estates"] = _count(
            conn,
            "INSERT INTO estates (code, name, area_code, address, property_firm_code,"
            " owners_committee) SELECT * FROM _estates ON CONFLICT (code) DO UPDATE SET"
            " name = EXCLUDED.name, area_code = EXCLUDED.area_code, address = EXCLUDED.address,"
            " property_firm_code = EXCLUDED.property_firm_code,"
            " owners_committee = EXCLUDED.owners_committee, updated_at = now()",
        )
        conn.execute(
            "CREATE TEMP TABLE _buildings (estate text, code text, name text, floors int,"
            " basement int) ON COMMIT DROP"
        )
        _copy(
            conn,
            "_buildings",
            "estate, code, name, floors, basement",
            (
                (e.code, b.code, b.name, b.floors, b.basement_floors)
                for e in reg.estates
                for b in e.buildings
            ),
        )
        counts["buildings"] = _count(
            conn,
            "INSERT INTO buildings (estate_code, code, name, floors, basement_floors)"
            " SELECT * FROM _buildings ON CONFLICT (estate_code, code) DO UPDATE SET"
            " name = EXCLUDED.name, floors = EXCLUDED.floors,"
            " basement_floors = EXCLUDED.basement_floors, updated_at = now()",
        )
        conn.execute(
            "CREATE TEMP TABLE _units (estate text, building text, code text, floor int,"
            " area numeric) ON COMMIT DROP"
        )
        _copy(
            conn,
            "_units",
            "estate, building, code, floor, area",
            (
                (e.code, b.code, u.code, u.floor, u.area_m2)
                for e in reg.estates
                for b in e.buildings
                for u in b.all_units()
            ),
        )
        counts["units"] = _count(
            conn,
            "INSERT INTO units (building_id, code, floor, area_m2) SELECT b.id, u.code, u.floor,"
            " u.area FROM _units u JOIN buildings b ON b.estate_code = u.estate AND"
            " b.code = u.building ON CONFLICT (building_id, code) DO UPDATE SET"
            " floor = EXCLUDED.floor, area_m2 = EXCLUDED.area_m2",
        )
        conn.execute(
            "CREATE TEMP TABLE _devices (estate text, building text, code text, kind text,"
            " subtype text, location text, floor int, maintenance text, install_date date,"
            " last_maintenance date, inspection_due date, emergency_code text,"
            " registration_no text, params jsonb) ON COMMIT DROP"
        )
        from psycopg.types.json import Jsonb  # noqa: PLC0415

        _copy(
            conn,
            "_devices",
            "estate, building, code, kind, subtype, location, floor, maintenance, install_date,"
            " last_maintenance, inspection_due, emergency_code, registration_no, params",
            (
                (
                    e.code,
                    b.code if b else None,
                    d.code,
                    d.kind,
                    d.subtype,
                    d.location,
                    d.floor,
                    d.maintenance,
                    d.install_date,
                    d.last_maintenance,
                    d.inspection_due,
                    d.emergency_code,
                    d.registration_no,
                    Jsonb(d.params),
                )
                for e, b, d in reg.devices()
            ),
        )
        counts["devices"] = _count(
            conn,
            "INSERT INTO devices (estate_code, code, kind, subtype, building_id, location, floor,"
            " maintenance_code, install_date, last_maintenance, inspection_due, emergency_code,"
            " registration_no, params)"
            " SELECT d.estate, d.code, d.kind, d.subtype, b.id, d.location, d.floor,"
            " d.maintenance, d.install_date, d.last_maintenance, d.inspection_due,"
            " d.emergency_code, d.registration_no, d.params"
            " FROM _devices d LEFT JOIN buildings b ON b.estate_code = d.estate AND"
            " b.code = d.building ON CONFLICT (estate_code, code) DO UPDATE SET"
            " kind = EXCLUDED.kind, subtype = EXCLUDED.subtype,"
            " building_id = EXCLUDED.building_id, location = EXCLUDED.location,"
            " floor = EXCLUDED.floor, maintenance_code = EXCLUDED.maintenance_code,"
            " install_date = EXCLUDED.install_date, last_maintenance = EXCLUDED.last_maintenance,"
            " inspection_due = EXCLUDED.inspection_due, emergency_code = EXCLUDED.emergency_code,"
            " registration_no = EXCLUDED.registration_no, params = EXCLUDED.params,"
            " active = true, updated_at = now()",
        )
    return LoadReport(counts)


def active_devices(conn: Conn) -> list[tuple[str, str, str]]:
    """(estate, kind, device) of every active device: what the broker's credentials cover."""
    rows = conn.execute(
        "SELECT estate_code, kind, code FROM devices WHERE active ORDER BY estate_code, code"
    ).fetchall()
    return [(str(e), str(k), str(c)) for e, k, c in rows]
