"""Who is calling: API keys now, password logins with issue 8; roles and their scopes.

A key is ``se_<id>_<secret>``, sent as ``Authorization: Bearer <key>`` or ``X-API-Key``.
Only SHA-256 of the secret is stored (it is 256 random bits, so a slow hash adds nothing),
compared in constant time. A ``Principal`` carries the role and the organisation or area
that bound what it sees; routes turn that into SQL conditions (``estate_scope``), so a
scope is enforced in the query, not only at the door.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg
from psycopg import sql

Conn = psycopg.Connection[tuple[Any, ...]]
_KEY = re.compile(r"^se_(\d{1,18})_([A-Za-z0-9_-]{20,128})$")


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"  # a property firm's control room: its estates
    MANAGER = "manager"  # a property firm's manager: its estates
    MAINTENANCE = "maintenance"  # a maintenance company: orders dispatched to it
    FIRE_INSPECTOR = "fire_inspector"  # fire domain in a jurisdiction
    MARKET_INSPECTOR = "market_inspector"  # elevators in a jurisdiction
    HOUSING_AUTHORITY = "housing_authority"
    STREET_OFFICE = "street_office"
    OWNER = "owner"


# Roles bound to an organisation, and the organisation role it must hold.
ORG_ROLES = {
    Role.OPERATOR: "property_firm",
    Role.MANAGER: "property_firm",
    Role.MAINTENANCE: None,  # elevator or fire maintenance
}
AREA_ROLES = {Role.FIRE_INSPECTOR, Role.MARKET_INSPECTOR, Role.STREET_OFFICE}


@dataclass(frozen=True)
class Principal:
    key_id: int
    name: str
    role: Role
    org_code: str | None
    area_code: str | None

    def estate_scope(self, column: str) -> sql.Composed:
        """SQL condition limiting ``column`` (an estate code) to what this caller may see."""
        col = sql.Identifier(column)
        if self.role is Role.ADMIN or self.role is Role.HOUSING_AUTHORITY:
            return sql.SQL("true").format()
        if self.role in (Role.OPERATOR, Role.MANAGER):
            return sql.SQL("{} IN (SELECT code FROM estates WHERE property_firm_code = {})").format(
                col, sql.Literal(self.org_code)
            )
        if self.role in AREA_ROLES:
            # the area and everything under it (city > district > street)
            return sql.SQL(
                "{} IN (SELECT code FROM estates WHERE area_code IN ("
                " WITH RECURSIVE a(code) AS (SELECT {}::text UNION"
                " SELECT c.code FROM areas c JOIN a ON c.parent_code = a.code)"
                " SELECT code FROM a))"
            ).format(col, sql.Literal(self.area_code))
        return sql.SQL("false").format()

    def alert_scope(self) -> sql.Composed:
        """SQL condition over ``alerts`` (or ``incidents`` via their alerts' columns
        ``estate_code``, ``kind``, ``device_id``) for what this caller may see."""
        estates = self.estate_scope("estate_code")
        kind = {Role.FIRE_INSPECTOR: "fire", Role.MARKET_INSPECTOR: "elevator"}.get(self.role)
        if kind is not None:
            return sql.SQL("({} AND kind = {})").format(estates, sql.Literal(kind))
        if self.role is Role.MAINTENANCE:
            return sql.SQL(
                "device_id IN (SELECT id FROM devices WHERE maintenance_code = {})"
            ).format(sql.Literal(self.org_code))
        return estates


class ApiKeyError(ValueError):
    """A key could not be created; the message says why."""


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def create_key(
    conn: Conn,
    name: str,
    role: Role,
    *,
    org_code: str | None = None,
    area_code: str | None = None,
) -> str:
    """Store a new key and return it (the only time it is shown)."""
    if role in ORG_ROLES and org_code is None:
        raise ApiKeyError(f"role {role} needs --org (the organisation it works for)")
    if role in AREA_ROLES and area_code is None:
        raise ApiKeyError(f"role {role} needs --area (its jurisdiction)")
    wanted = ORG_ROLES.get(role)
    if org_code is not None:
        roles = {
            str(r)
            for (r,) in conn.execute(
                "SELECT role FROM organisation_roles WHERE org_code = %s", (org_code,)
            )
        }
        if not roles:
            raise ApiKeyError(f"organisation {org_code!r} is not in the registry")
        if wanted is not None and wanted not in roles:
            raise ApiKeyError(f"organisation {org_code!r} is not a {wanted}")
    if area_code is not None:
        found = conn.execute("SELECT 1 FROM areas WHERE code = %s", (area_code,)).fetchone()
        if found is None:
            raise ApiKeyError(f"area {area_code!r} is not in the registry")
    secret = secrets.token_urlsafe(32)
    try:
        row = conn.execute(
            "INSERT INTO api_keys (name, role, org_code, area_code, secret_hash)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (name, role.value, org_code, area_code, _hash(secret)),
        ).fetchone()
    except psycopg.errors.UniqueViolation:
        raise ApiKeyError(f"a key named {name!r} exists already") from None
    assert row is not None
    return f"se_{row[0]}_{secret}"


def revoke_key(conn: Conn, name: str) -> bool:
    cur = conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL", (name,)
    )
    return cur.rowcount == 1


def authenticate(conn: Conn, key: str) -> Principal | None:
    """The principal a key stands for, or None (malformed, unknown, revoked, wrong)."""
    m = _KEY.match(key)
    if m is None:
        return None
    row = conn.execute(
        "SELECT id, name, role, org_code, area_code, secret_hash FROM api_keys"
        " WHERE id = %s AND revoked_at IS NULL",
        (int(m.group(1)),),
    ).fetchone()
    if row is None or not hmac.compare_digest(bytes(row[5]), _hash(m.group(2))):
        return None
    conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = %s", (row[0],))
    return Principal(int(row[0]), str(row[1]), Role(row[2]), row[3], row[4])
