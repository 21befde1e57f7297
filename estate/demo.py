"""What `estate demo` adds to a stack for showing it: a login per role, and the demo tempo.

Logins: one user per role, bound to the demo county's organisations and areas, with a
random password made once and kept in ``var/demo-logins.json`` (0600) — no password is
written in the repository. The demo prints them.

Tempo: the shipped responsibility list with every deadline divided by ``TEMPO`` is stored
as a version authored "demo", so a trapped passenger's order is breached and escalated
within the first minute instead of after five. It is data like any other version
(``estate responsibility history`` shows it); outside the demo nothing stores it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from alerts import responsibility
from api.auth import Role, create_user

Conn = psycopg.Connection[tuple[Any, ...]]
TEMPO = 10
DEMO_AUTHOR = "demo"


@dataclass(frozen=True)
class DemoLogin:
    name: str
    role: Role
    org_code: str | None
    area_code: str | None
    what: str  # what this login sees, for the banner


DEMO_LOGINS = (
    DemoLogin("admin", Role.ADMIN, None, None, "everything"),
    DemoLogin("pf-hx-duty", Role.OPERATOR, "PF-HX", None, "华祥苑 + 滨水雅苑 control room"),
    DemoLogin("pf-hx-manager", Role.MANAGER, "PF-HX", None, "the property firm's manager"),
    DemoLogin("em-ts", Role.MAINTENANCE, "EM-TS", None, "lift company: its orders"),
    DemoLogin("fire-inspector", Role.FIRE_INSPECTOR, None, "SFX", "fire systems, the county"),
    DemoLogin("market-inspector", Role.MARKET_INSPECTOR, None, "SFX", "lifts, the county"),
    DemoLogin("housing", Role.HOUSING_AUTHORITY, None, None, "fund decisions, reads all"),
    DemoLogin("cgjd-office", Role.STREET_OFFICE, None, "SFX-CG-CGJD", "城关街道"),
)


def logins(conn: Conn, var_dir: Path) -> list[tuple[DemoLogin, str]]:
    """Every demo login with its password; users missing from the database are created
    (with the password kept from an earlier run, or a new one)."""
    path = var_dir / "demo-logins.json"
    saved: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    out = []
    for login in DEMO_LOGINS:
        password = saved.get(login.name) or secrets.token_urlsafe(9)
        saved[login.name] = password
        exists = conn.execute("SELECT 1 FROM users WHERE name = %s", (login.name,)).fetchone()
        if exists is None:
            create_user(
                conn, login.name, login.role, password,
                org_code=login.org_code, area_code=login.area_code, display_name=login.what,
            )  # fmt: skip
        out.append((login, password))
    path.write_text(json.dumps(saved, indent=1))
    os.chmod(path, 0o600)
    return out


def tempo(
    rows: responsibility.ResponsibilityList, factor: int
) -> responsibility.ResponsibilityList:
    """``rows`` with every deadline (not the look-back window's length) divided by
    ``factor``."""
    data = rows.model_dump(mode="json")
    for row in data["rows"]:
        d = row.get("deadlines")
        if d:
            for k in ("acknowledge_s", "arrive_s", "resolve_s"):
                if d.get(k) is not None:
                    d[k] = d[k] / factor
            d["verify_s"] = d["verify_s"] / factor
    return responsibility.ResponsibilityList.model_validate(data)


def use_tempo(conn: Conn, now: dt.datetime) -> int | None:
    """Store the demo-tempo list as the newest version unless it is already in force;
    returns the new version, or None when nothing was stored."""
    wanted = tempo(responsibility.load(), TEMPO)
    have = responsibility.current(conn)
    if have.rows == wanted:
        return None
    return responsibility.save(
        conn, wanted, author=DEMO_AUTHOR, based_on=None, now=now,
        comment=f"demo tempo: the shipped list with every deadline ÷ {TEMPO}",
    )  # fmt: skip
