"""A synthetic city of any size, in the registry's YAML format.

The proportions follow the seeds and common practice: about five estates per property firm
(seed 003: 461 firms for 2,318 estates), a street office per 25 estates, a fire brigade and
a market-supervision bureau per district, one housing authority; estate sizes from a
handful of walk-ups without elevators to high-rise estates of thirty towers; every tower
with elevators, a hydrant pressure point at its least favourable point, smoke detectors, a
fire door and an electrical-fire monitor; each estate with a fire panel, pumps, a tank and
basement drainage; high-rise estates with a secondary water supply (booster set, tank).
The same seed gives the same city.
"""

from __future__ import annotations

import datetime as dt
import random
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import yaml

Progress = Callable[[int, int], None]

_SURNAMES = "华安恒泰瑞康和顺锦绣金城阳光翠苑东方明珠长青福星盛世嘉禾碧水兰庭"
_SUFFIXES = ("花园", "小区", "家园", "苑", "府", "城", "新村", "公寓")


class ProgressBar:
    """A one-line progress bar on a terminal; occasional plain lines when not a terminal."""

    def __init__(self, label: str, stream: TextIO = sys.stderr) -> None:
        self.label = label
        self.stream = stream
        self.tty = stream.isatty()
        self._last_pct = -1

    def __call__(self, done: int, total: int) -> None:
        pct = 100 * done // max(total, 1)
        if pct == self._last_pct:
            return
        self._last_pct = pct
        if self.tty:
            bar = "#" * (pct // 4) + "." * (25 - pct // 4)
            end = "\n" if done >= total else ""
            self.stream.write(f"\r{self.label} [{bar}] {done}/{total} {pct:3d}%{end}")
            self.stream.flush()
        elif pct % 10 == 0:
            self.stream.write(f"{self.label}: {done}/{total} ({pct}%)\n")


def _name(rng: random.Random) -> str:
    return "".join(rng.sample(_SURNAMES, 2)) + rng.choice(_SUFFIXES)


def generate(
    estates: int,
    *,
    seed: int = 1,
    progress: Progress | None = None,
    today: dt.date = dt.date(2026, 11, 1),
) -> dict[str, Any]:
    """A registry document (plain data, ready for YAML) for a city of ``estates`` estates."""
    if estates < 1:
        raise ValueError("a city needs at least one estate")
    rng = random.Random(seed)  # noqa: S311  (synthetic data, reproducible by seed)
    n_districts = max(1, estates // 300)
    n_streets = max(1, estates // 25)
    areas: list[dict[str, Any]] = [{"code": "C", "name": "合成市", "level": "city"}]
    areas += [
        {"code": f"D{d:02d}", "name": f"第{d + 1}区", "level": "district", "parent": "C"}
        for d in range(n_districts)
    ]
    streets = [f"S{s:03d}" for s in range(n_streets)]
    areas += [
        {
            "code": s,
            "name": f"第{i + 1}街道",
            "level": "street",
            "parent": f"D{i % n_districts:02d}",
        }
        for i, s in enumerate(streets)
    ]

    orgs: list[dict[str, Any]] = [
        {
            "code": "HA",
            "name": "合成市住房和城乡建设局",
            "roles": ["housing_authority"],
            "area": "C",
        }
    ]
    for d in range(n_districts):
        orgs.append(
            {
                "code": f"FB{d:02d}",
                "name": f"第{d + 1}区消防救援大队",
                "roles": ["fire_brigade"],
                "area": f"D{d:02d}",
            }
        )
        orgs.append(
            {
                "code": f"MS{d:02d}",
                "name": f"第{d + 1}区市场监督管理局",
                "roles": ["market_supervision"],
                "area": f"D{d:02d}",
            }
        )
    orgs += [
        {"code": f"SO{s}", "name": f"第{i + 1}街道办事处", "roles": ["street_office"], "area": s}
        for i, s in enumerate(streets)
    ]
    firms = [f"PF{i:03d}" for i in range(max(1, estates // 5))]
    orgs += [
        {"code": f, "name": f"{_name(rng)[:2]}物业服务有限公司{i}", "roles": ["property_firm"]}
        for i, f in enumerate(firms)
    ]
    lifts = [f"EM{i:02d}" for i in range(max(1, estates // 40))]
    orgs += [
        {
            "code": c,
            "name": f"{_name(rng)[:2]}电梯工程有限公司{i}",
            "roles": ["elevator_maintenance"],
        }
        for i, c in enumerate(lifts)
    ]
    fires = [f"FM{i:02d}" for i in range(max(1, estates // 40))]
    orgs += [
        {
            "code": c,
            "name": f"{_name(rng)[:2]}消防技术服务有限公司{i}",
            "roles": ["fire_maintenance"],
        }
        for i, c in enumerate(fires)
    ]

    out_estates = []
    for i in range(estates):
        out_estates.append(
            _estate(rng, i, streets=streets, firms=firms, lifts=lifts, fires=fires, today=today)
        )
        if progress is not None:
            progress(i + 1, estates)
    return {"version": 1, "areas": areas, "organisations": orgs, "estates": out_estates}


def _estate(
    rng: random.Random,
    i: int,
    *,
    streets: list[str],
    firms: list[str],
    lifts: list[str],
    fires: list[str],
    today: dt.date,
) -> dict[str, Any]:
    code = f"E{i:05d}"
    high_rise = rng.random() < 0.6
    n_buildings = max(1, min(40, int(rng.lognormvariate(1.7, 0.6))))
    floors = rng.choice((11, 18, 26, 33)) if high_rise else rng.choice((5, 6, 7))
    lift_co = rng.choice(lifts)
    fire_co = rng.choice(fires)
    buildings = []
    for b in range(n_buildings):
        bcode = f"B{b + 1:02d}"
        devices: list[dict[str, Any]] = []
        if high_rise:
            for k in range(2 if floors < 26 else 3):
                installed = today - dt.timedelta(days=rng.randint(200, 6000))
                devices.append(
                    {
                        "code": f"{bcode}-L{k + 1}",
                        "kind": "elevator",
                        "subtype": "passenger",
                        "maintenance": lift_co,
                        "install_date": installed,
                        "last_maintenance": today - dt.timedelta(days=rng.randint(0, 20)),
                        "inspection_due": today + dt.timedelta(days=rng.randint(-30, 365)),
                        "params": {"floors": floors, "basement_floors": 1},
                    }
                )
            devices.append(
                {
                    "code": f"{bcode}-HP",
                    "kind": "fire",
                    "subtype": "hydrant_pressure",
                    "location": "顶层最不利点",
                    "floor": floors,
                    "maintenance": fire_co,
                }
            )
            devices.append(
                {
                    "code": f"{bcode}-FD",
                    "kind": "fire",
                    "subtype": "fire_door",
                    "location": "地下室防火门",
                    "floor": -1,
                    "maintenance": fire_co,
                }
            )
        devices += [
            {
                "code": f"{bcode}-SD{k + 1}",
                "kind": "fire",
                "subtype": "smoke_detector",
                "floor": f,
                "maintenance": fire_co,
            }
            for k, f in enumerate(sorted(rng.sample(range(1, floors + 1), min(3, floors))))
        ]
        devices.append(
            {
                "code": f"{bcode}-EF",
                "kind": "fire",
                "subtype": "electrical",
                "location": "配电间",
                "floor": 1,
                "maintenance": fire_co,
            }
        )
        areas = [round(rng.uniform(60, 140), 2) for _ in range(rng.choice((2, 4)))]
        buildings.append(
            {
                "code": bcode,
                "name": f"{b + 1}号楼",
                "floors": floors,
                "basement_floors": 1 if high_rise else 0,
                "unit_layout": {"per_floor_m2": areas},
                "devices": devices,
            }
        )
    estate_devices: list[dict[str, Any]] = [
        {
            "code": "FP",
            "kind": "fire",
            "subtype": "fire_panel",
            "location": "消防控制室",
            "maintenance": fire_co,
        },
        {
            "code": "WT",
            "kind": "fire",
            "subtype": "water_tank",
            "location": "消防水池",
            "maintenance": fire_co,
            "params": {"min_level_m": 2.5, "max_level_m": 4.0},
        },
        {"code": "PUMP1", "kind": "fire", "subtype": "fire_pump", "maintenance": fire_co},
    ]
    if high_rise:
        estate_devices.append(
            {
                "code": "SP",
                "kind": "fire",
                "subtype": "sprinkler_pressure",
                "location": "地下车库",
                "maintenance": fire_co,
            }
        )
    for k in range(rng.randint(1, 3) if high_rise else 1):
        estate_devices.append(
            {
                "code": f"SUMP{k + 1}",
                "kind": "drainage",
                "subtype": "sump_pit",
                "location": "地下车库集水坑",
                "params": {"high_m": 1.2, "high_high_m": 1.6, "depth_m": 2.0},
            }
        )
    estate_devices.append(
        {"code": "IMM1", "kind": "drainage", "subtype": "immersion", "location": "地下车库入口"}
    )
    estate_devices.append(
        {"code": "BFV1", "kind": "drainage", "subtype": "backflow_valve", "location": "雨水排口"}
    )
    if high_rise:
        # towers above the mains' reach are fed by a booster set from a break tank
        estate_devices += [
            {"code": "WP1", "kind": "water_supply", "subtype": "booster_pump",
             "location": "二次供水泵房"},
            {"code": "WT1", "kind": "water_supply", "subtype": "tank",
             "location": "二次供水水箱"},
        ]  # fmt: skip
    return {
        "code": code,
        "name": _name(rng),
        "area": streets[i % len(streets)],
        "property_firm": rng.choice(firms) if rng.random() < 0.95 else None,
        "owners_committee": rng.random() < 0.7,
        "buildings": buildings,
        "devices": estate_devices,
    }


def _chunks(doc: dict[str, Any]) -> Iterator[str]:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    head = {k: v for k, v in doc.items() if k != "estates"}
    yield yaml.dump(head, Dumper=dumper, allow_unicode=True, sort_keys=False)
    yield "estates:\n"
    for e in doc["estates"]:
        yield yaml.dump([e], Dumper=dumper, allow_unicode=True, sort_keys=False)


def write_yaml(doc: dict[str, Any], out: TextIO, *, progress: Progress | None = None) -> None:
    """Write ``doc`` as YAML, one estate at a time (memory stays flat for big cities)."""
    total = len(doc["estates"]) + 2
    for i, chunk in enumerate(_chunks(doc)):
        out.write(chunk)
        if progress is not None:
            progress(i + 1, total)
