"""Who is calling: API keys for machines, password logins for people; roles and scopes.

A key is ``se_<id>_<secret>``, sent as ``Authorization: Bearer <key>`` or ``X-API-Key``.
Only SHA-256 of the secret is stored (it is 256 random bits, so a slow hash adds nothing),
compared in constant time. A person logs in with a name and password (argon2id hashes;
ten failures in a row lock the account for 15 minutes) and gets a token
``st_<id>_<secret>``, valid for ``ttl_s`` (15 minutes by default), revocable by logging
out; tokens are stored like keys. A ``Principal`` carries the role and the organisation or area
that bound what it sees; routes turn that into SQL conditions (``estate_scope``), so a
scope is enforced in the query, not only at the door.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from psycopg import sql
from psycopg.rows import class_row

from api import passwords
from estate.db import Conn

_KEY = re.compile(r"^se_(\d{1,18})_([A-Za-z0-9_-]{20,128})$")
_TOKEN = re.compile(r"^st_(\d{1,18})_([A-Za-z0-9_-]{20,128})$")
_hasher = PasswordHasher()  # argon2id with the library's (RFC 9106) defaults
WRONG = "wrong name or password"


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
    # an estate's owners' committee (业委会): applies for the fund, organises the owners'
    # votes, accepts repairs; bound to its estate
    OWNERS_COMMITTEE = "owners_committee"


# Roles bound to an organisation, and the organisation role it must hold.
ORG_ROLES = {
    Role.OPERATOR: "property_firm",
    Role.MANAGER: "property_firm",
    Role.MAINTENANCE: None,  # elevator or fire maintenance
}
AREA_ROLES = {Role.FIRE_INSPECTOR, Role.MARKET_INSPECTOR, Role.STREET_OFFICE}
ESTATE_ROLES = {Role.OWNERS_COMMITTEE}
# what each inspector supervises: fire facilities (the fire brigade), lifts (market
# supervision, special equipment); both see only that, in every list and view
DOMAIN = {Role.FIRE_INSPECTOR: "fire", Role.MARKET_INSPECTOR: "elevator"}


@dataclass(frozen=True)
class Principal:
    key_id: int  # the API key's id, or the user's
    name: str
    role: Role
    org_code: str | None
    area_code: str | None
    kind: str = "key"  # "key" or "user"
    home_unit: int | None = None  # an owner's home (units.id)
    estate_code: str | None = None  # an owners' committee's estate

    @property
    def actor(self) -> str:
        """How audit trails name this caller."""
        return f"{self.kind}:{self.name}"

    def estate_scope(self, column: str) -> sql.Composed:
        """SQL condition limiting ``column`` (an estate code, ``alias.name`` allowed) to what
        this caller may see."""
        col = sql.Identifier(*column.split("."))
        if self.role is Role.ADMIN or self.role is Role.HOUSING_AUTHORITY:
            return sql.SQL("true").format()
        if self.role in (Role.OPERATOR, Role.MANAGER):
            return sql.SQL("{} IN (SELECT code FROM estates WHERE property_firm_code = {})").format(
                col, sql.Literal(self.org_code)
            )
        if self.role in ESTATE_ROLES:
            return sql.SQL("{} = {}").format(col, sql.Literal(self.estate_code))
        if self.role in AREA_ROLES:
            # the area and everything under it (city > district > street)
            return sql.SQL(
                "{} IN (SELECT code FROM estates WHERE area_code IN ("
                " WITH RECURSIVE a(code) AS (SELECT {}::text UNION"
                " SELECT c.code FROM areas c JOIN a ON c.parent_code = a.code)"
                " SELECT code FROM a))"
            ).format(col, sql.Literal(self.area_code))
        return sql.SQL("false").format()

    @property
    def domain(self) -> str | None:
        """The device kind an inspector supervises (fire, elevator); None for others."""
        return DOMAIN.get(self.role)

    def alert_scope(self) -> sql.Composed:
        """SQL condition over ``alerts`` (or ``incidents`` via their alerts' columns
        ``estate_code``, ``kind``, ``device_id``) for what this caller may see."""
        estates = self.estate_scope("estate_code")
        kind = self.domain
        if kind is not None:
            return sql.SQL("({} AND kind = {})").format(estates, sql.Literal(kind))
        if self.role in ESTATE_ROLES:
            # a committee follows its estate's fund, not the control room's alarms
            return sql.SQL("false").format()
        if self.role is Role.MAINTENANCE:
            return sql.SQL(
                "device_id IN (SELECT id FROM devices WHERE maintenance_code = {})"
            ).format(sql.Literal(self.org_code))
        return estates


class ApiKeyError(ValueError):
    """A key (or user) could not be created; the message says why."""


def _check_binding(
    conn: Conn, role: Role, org_code: str | None, area_code: str | None, estate_code: str | None
) -> None:
    if (role in ESTATE_ROLES) != (estate_code is not None):
        raise ApiKeyError(
            f"role {role} needs --estate (the estate whose committee it is)"
            if role in ESTATE_ROLES
            else "only an owners' committee is bound to an estate (--estate)"
        )
    if estate_code is not None:
        row = conn.execute(
            "SELECT owners_committee FROM estates WHERE code = %s", (estate_code,)
        ).fetchone()
        if row is None:
            raise ApiKeyError(f"estate {estate_code!r} is not in the registry")
        if not row[0]:
            raise ApiKeyError(
                f"{estate_code} has no owners' committee on record (owners_committee in the"
                " registry): the street office acts for its owners"
            )
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


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def create_key(
    conn: Conn,
    name: str,
    role: Role,
    *,
    org_code: str | None = None,
    area_code: str | None = None,
    estate_code: str | None = None,
) -> str:
    """Store a new key and return it (the only time it is shown)."""
    _check_binding(conn, role, org_code, area_code, estate_code)
    secret = secrets.token_urlsafe(32)
    try:
        row = conn.execute(
            "INSERT INTO api_keys (name, role, org_code, area_code, estate_code, secret_hash)"
            " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (name, role.value, org_code, area_code, estate_code, _hash(secret)),
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
        "SELECT id, name, role, org_code, area_code, secret_hash, estate_code FROM api_keys"
        " WHERE id = %s AND revoked_at IS NULL",
        (int(m.group(1)),),
    ).fetchone()
    if row is None or not hmac.compare_digest(bytes(row[5]), _hash(m.group(2))):
        return None
    conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = %s", (row[0],))
    return Principal(int(row[0]), str(row[1]), Role(row[2]), row[3], row[4], estate_code=row[6])


# ---------------------------------------------------------------------- people


def create_user(
    conn: Conn,
    name: str,
    role: Role,
    password: str,
    *,
    org_code: str | None = None,
    area_code: str | None = None,
    display_name: str = "",
    home: str | None = None,
    estate_code: str | None = None,
) -> int:
    """Store a user with an argon2id hash of ``password``; returns the id. An owner may
    name their home, ``ESTATE/BUILDING/UNIT``: they then see its fund account."""
    weak = passwords.problem(password, context=(name, display_name, org_code, area_code))
    if weak is not None:
        raise ApiKeyError(weak)
    _check_binding(conn, role, org_code, area_code, estate_code)
    unit_id = _home(conn, role, home)
    try:
        row = conn.execute(
            "INSERT INTO users (name, display_name, role, org_code, area_code, password_hash,"
            " home_unit_id, estate_code) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (name, display_name, role.value, org_code, area_code, _hasher.hash(password),
             unit_id, estate_code),
        ).fetchone()  # fmt: skip
    except psycopg.errors.UniqueViolation:
        raise ApiKeyError(f"a user named {name!r} exists already") from None
    except psycopg.errors.CheckViolation:
        raise ApiKeyError(f"{name!r} is not a valid user name ([A-Za-z0-9_.@-])") from None
    assert row is not None
    return int(row[0])


def _home(conn: Conn, role: Role, home: str | None) -> int | None:
    if home is None:
        return None
    if role is not Role.OWNER:
        raise ApiKeyError("only an owner names a home (--home)")
    parts = home.split("/")
    if len(parts) != 3:
        raise ApiKeyError(f"home {home!r} is ESTATE/BUILDING/UNIT, e.g. HXY/B1/101")
    row = conn.execute(
        "SELECT u.id FROM units u JOIN buildings b ON b.id = u.building_id"
        " WHERE b.estate_code = %s AND b.code = %s AND u.code = %s",
        tuple(parts),
    ).fetchone()
    if row is None:
        raise ApiKeyError(f"no home {home} in the registry")
    return int(row[0])


class LoginError(ValueError):
    """Wrong name or password, or a disabled account: one answer for all of them."""


def login(conn: Conn, name: str, password: str, *, now: dt.datetime, ttl_s: float) -> str:
    """Check the password and issue a token valid for ``ttl_s`` seconds.

    Unknown names, wrong passwords and disabled accounts get the same answer after the
    same work (one argon2 computation each), so neither the message nor the time tells
    them apart. Nothing here locks an account: repeated failures are slowed down per
    source by ``api.throttle`` before this is called; ``failed_logins`` is kept for the
    record."""
    with conn.transaction():
        row = conn.execute(
            "SELECT id, password_hash, disabled_at FROM users WHERE name = %s FOR UPDATE",
            (name,),
        ).fetchone()
        if row is None:
            _hasher.hash(password)  # the same work as a real check: no timing oracle
            raise LoginError(WRONG)
        uid, stored, disabled = row
        try:
            _hasher.verify(stored, password)
            ok = disabled is None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if not ok:
            conn.execute("UPDATE users SET failed_logins = failed_logins + 1 WHERE id = %s", (uid,))
    if not ok:  # raised after the commit: the count must stick
        raise LoginError(WRONG)
    with conn.transaction():
        if _hasher.check_needs_rehash(stored):
            conn.execute(
                "UPDATE users SET password_hash = %s WHERE id = %s", (_hasher.hash(password), uid)
            )
        secret = secrets.token_urlsafe(32)
        got = conn.execute(
            "INSERT INTO user_tokens (user_id, secret_hash, issued_at, expires_at)"
            " VALUES (%s, %s, %s, %s) RETURNING id",
            (uid, _hash(secret), now, now + dt.timedelta(seconds=ttl_s)),
        ).fetchone()
        conn.execute(
            "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = %s"
            " WHERE id = %s",
            (now, uid),
        )
    assert got is not None
    return f"st_{got[0]}_{secret}"


def _token_row(conn: Conn, token: str, now: dt.datetime) -> tuple[int, Principal] | None:
    m = _TOKEN.match(token)
    if m is None:
        return None
    row = conn.execute(
        "SELECT t.id, t.secret_hash, u.id, u.name, u.role, u.org_code, u.area_code,"
        " u.home_unit_id, u.estate_code FROM user_tokens t JOIN users u ON u.id = t.user_id"
        " WHERE t.id = %s"
        " AND t.revoked_at IS NULL AND t.expires_at > %s AND u.disabled_at IS NULL",
        (int(m.group(1)), now),
    ).fetchone()
    if row is None or not hmac.compare_digest(bytes(row[1]), _hash(m.group(2))):
        return None
    return int(row[0]), Principal(
        int(row[2]),
        str(row[3]),
        Role(row[4]),
        row[5],
        row[6],
        "user",
        home_unit=row[7],
        estate_code=row[8],
    )


def authenticate_token(conn: Conn, token: str, now: dt.datetime) -> Principal | None:
    """The user a live token stands for, or None (malformed, unknown, expired, revoked)."""
    found = _token_row(conn, token, now)
    return None if found is None else found[1]


def refresh(
    conn: Conn, token: str, now: dt.datetime, *, ttl_s: float, max_s: float
) -> dt.datetime | None:
    """Keep a live login token alive for ``ttl_s`` more seconds, but never past ``max_s``
    after its password login; the new expiry, or None for a dead token. The token stays
    the same (a stream opened with it stays open; it is re-checked as before)."""
    found = _token_row(conn, token, now)
    if found is None:
        return None
    row = conn.execute(
        "UPDATE user_tokens SET expires_at = greatest(expires_at,"
        " least(%s, issued_at + %s)) WHERE id = %s RETURNING expires_at",
        (now + dt.timedelta(seconds=ttl_s), dt.timedelta(seconds=max_s), found[0]),
    ).fetchone()
    return None if row is None else row[0]


def logout(conn: Conn, token: str, now: dt.datetime) -> bool:
    found = _token_row(conn, token, now)
    if found is None:
        return False
    conn.execute("UPDATE user_tokens SET revoked_at = %s WHERE id = %s", (now, found[0]))
    return True


def disable_user(conn: Conn, name: str, now: dt.datetime) -> bool:
    """Disable the user; their tokens stop working at once."""
    cur = conn.execute(
        "UPDATE users SET disabled_at = %s WHERE name = %s AND disabled_at IS NULL", (now, name)
    )
    return cur.rowcount == 1


@dataclass(frozen=True)
class KeyLine:
    """An API key as listed (never its secret)."""

    name: str
    role: str
    bound: str  # the organisation or area it is bound to, or ''
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


def list_keys(conn: Conn) -> list[KeyLine]:
    """Every API key by name, revoked ones too."""
    with conn.cursor(row_factory=class_row(KeyLine)) as cur:
        return cur.execute(
            "SELECT name, role, coalesce(org_code, area_code, estate_code, '') AS bound,"
            " created_at, last_used_at, revoked_at FROM api_keys ORDER BY name"
        ).fetchall()


@dataclass(frozen=True)
class UserLine:
    """A login as listed (never its password hash)."""

    name: str
    role: str
    bound: str
    last_login_at: dt.datetime | None
    disabled_at: dt.datetime | None
    failed_logins: int  # wrong passwords since the last login (nothing locks on them)


def list_users(conn: Conn) -> list[UserLine]:
    """Every login by name, disabled ones too."""
    with conn.cursor(row_factory=class_row(UserLine)) as cur:
        return cur.execute(
            "SELECT name, role, coalesce(org_code, area_code, estate_code, '') AS bound,"
            " last_login_at,"
            " disabled_at, failed_logins FROM users ORDER BY name"
        ).fetchall()


def user_exists(conn: Conn, name: str) -> bool:
    """Whether a login of that name exists (disabled or not)."""
    return conn.execute("SELECT 1 FROM users WHERE name = %s", (name,)).fetchone() is not None
