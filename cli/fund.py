"""``estate fund``: accounts, deposits and interest, the chain check, the yearly report."""

from __future__ import annotations

import argparse
import datetime as dt

from cli import common
from estate.settings import Settings, SettingsError
from fund import cases as fund_cases
from fund import ledger as fund_ledger


def cmd_fund(args: argparse.Namespace, settings: Settings) -> int:
    """The maintenance fund: open accounts, deposits and interest, verify, yearly report."""
    now = dt.datetime.now(dt.UTC)
    with common.database(settings, upgrade=True, autocommit=True) as conn:
        if args.action == "verify":
            result = fund_ledger.verify(conn)
            if result.ok:
                common.echo(f"fund ledger: {result.entries} entries, chain intact, balances agree")
                return 0
            common.echo(
                f"fund ledger: {len(result.problems)} problem(s) in {result.entries} entries"
            )
            for problem in result.problems:
                common.echo(f"  {problem}")
            return 3
        if args.action == "open":
            common.echo(f"{fund_cases.open_accounts(conn, now)} fund accounts opened")
            return 0
        if args.action == "report":
            if not args.estate:
                raise SettingsError("estate fund report needs --estate")
            for r in fund_cases.yearly_report(conn, args.estate, args.year or now.year):
                common.echo(
                    f"{r['name']}: opening {r['opening_fen'] / 100:,.2f}, deposits"
                    f" {r['deposits_fen'] / 100:,.2f}, interest {r['interest_fen'] / 100:,.2f},"
                    f" repairs {r['repairs_fen'] / 100:,.2f}, closing"
                    f" {r['closing_fen'] / 100:,.2f} yuan"
                )
            return 0
        if not (args.estate and args.amount_fen and args.key):
            raise SettingsError(f"estate fund {args.action} needs --estate, --amount-fen, --key")
        try:
            account = fund_cases.account_of(conn, args.estate, args.building)
            jid = fund_cases.deposit(
                conn, account, args.amount_fen, kind=args.action, key=args.key,
                actor=common.actor(args), now=now, memo=args.memo or "",
            )  # fmt: skip
        except (fund_cases.CaseError, fund_ledger.LedgerError) as err:
            raise SettingsError(str(err)) from None
        common.echo(f"journal entry {jid}: {args.amount_fen} fen into account {account}")
    return 0


def register(sub: common.SubParsers) -> None:
    """Add this module's commands to the ``estate`` parser."""
    s = sub.add_parser("fund", help="the maintenance fund: open, deposit, interest, verify, report")
    s.add_argument("action", choices=["open", "deposit", "interest", "verify", "report"])
    s.add_argument("--estate")
    s.add_argument("--building", help="the building's account (default: the estate's)")
    s.add_argument("--amount-fen", type=int, help="amount in fen (1 yuan = 100 fen)")
    s.add_argument("--key", help="idempotency key: the same key twice moves money once")
    s.add_argument("--memo")
    s.add_argument("--year", type=int, help="report: the year (default: this one)")
    s.add_argument("--actor", help="who (default: $USER)")
    s.set_defaults(func=cmd_fund)
