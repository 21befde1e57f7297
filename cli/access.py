"""``estate apikey`` and ``estate users``: who may use the API (keys for machines, passwords
for people)."""

from __future__ import annotations

import argparse
import datetime as dt

from api.auth import (
    ApiKeyError,
    Role,
    create_key,
    create_user,
    disable_user,
    list_keys,
    list_users,
    revoke_key,
)
from cli import common
from estate.settings import Settings, SettingsError


def cmd_apikey(args: argparse.Namespace, settings: Settings) -> int:
    if args.action != "list" and not args.name:
        raise SettingsError(f"estate apikey {args.action} needs a NAME")
    with common.database(settings, upgrade=True, autocommit=True) as conn:
        if args.action == "add":
            try:
                key = create_key(
                    conn, args.name, Role(args.role), org_code=args.org, area_code=args.area,
                    estate_code=args.estate,
                )  # fmt: skip
            except ApiKeyError as err:
                raise SettingsError(str(err)) from None
            common.echo(key)
            common.echo_err("this key is shown once: store it now")
        elif args.action == "revoke":
            if not revoke_key(conn, args.name):
                raise SettingsError(f"no active key named {args.name!r}")
            common.echo(f"revoked {args.name}")
        else:
            for k in list_keys(conn):
                state = (
                    f"revoked {common.local(k.revoked_at, date_only=True)}"
                    if k.revoked_at
                    else "active"
                )
                created = common.local(k.created_at, date_only=True)
                used = common.local(k.last_used_at, seconds=False)
                common.echo(
                    f"{k.name:24} {k.role:18} {k.bound:12} created {created}"
                    f"  last used {used}  {state}"
                )
    return 0


def cmd_users(args: argparse.Namespace, settings: Settings) -> int:
    """People who log in with a password (argon2id) for short-lived tokens."""
    if args.action != "list" and not args.name:
        raise SettingsError(f"estate users {args.action} needs a NAME")
    with common.database(settings, upgrade=True, autocommit=True) as conn:
        if args.action == "add":
            password = common.read_password(args)
            try:
                create_user(
                    conn, args.name, Role(args.role), password, org_code=args.org,
                    area_code=args.area, display_name=args.display_name or "", home=args.home,
                    estate_code=args.estate,
                )  # fmt: skip
            except ApiKeyError as err:
                raise SettingsError(str(err)) from None
            common.echo(f"user {args.name} ({args.role}) added; log in at POST /api/v1/auth/token")
        elif args.action == "disable":
            if not disable_user(conn, args.name, dt.datetime.now(dt.UTC)):
                raise SettingsError(f"no active user named {args.name!r}")
            common.echo(f"disabled {args.name}: their tokens no longer work")
        else:
            for u in list_users(conn):
                state = "disabled" if u.disabled_at else "active"
                failed = f", {u.failed_logins} failed since" if u.failed_logins else ""
                seen = common.local(u.last_login_at, seconds=False) if u.last_login_at else "never"
                common.echo(
                    f"{u.name:24} {u.role:18} {u.bound:12} last login {seen}{failed}  {state}"
                )
    return 0


def register(sub: common.SubParsers) -> None:
    """Add this module's commands to the ``estate`` parser."""
    s = sub.add_parser("apikey", help="add, list or revoke API keys")
    s.add_argument("action", choices=["add", "list", "revoke"])
    s.add_argument("name", nargs="?", help="the key's name (add, revoke)")
    s.add_argument("--role", choices=[r.value for r in Role], default="admin")
    s.add_argument("--org", help="organisation code (operator, manager, maintenance)")
    s.add_argument("--area", help="area code (inspectors, street office)")
    s.add_argument("--estate", help="estate code (an owners' committee)")
    s.set_defaults(func=cmd_apikey)
    s = sub.add_parser("users", help="add, list or disable people who log in with a password")
    s.add_argument("action", choices=["add", "list", "disable"])
    s.add_argument("name", nargs="?", help="the login name (add, disable)")
    s.add_argument("--role", choices=[r.value for r in Role], default="operator")
    s.add_argument("--org", help="organisation code (operator, manager, maintenance)")
    s.add_argument("--area", help="area code (inspectors, street office)")
    s.add_argument("--estate", help="estate code (an owners' committee)")
    s.add_argument("--display-name")
    s.add_argument("--home", help="an owner's home: ESTATE/BUILDING/UNIT (its fund account)")
    s.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    s.set_defaults(func=cmd_users)
