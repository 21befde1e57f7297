"""The fund ledger: double-entry, append-only, hash-chained, in integer fen.

``post`` writes one journal entry and its legs in the caller's transaction. Entries are
numbered 1, 2, 3, … and each one's hash covers its content and the previous hash, so
changing, removing or inserting a row anywhere breaks the chain from there on
(``verify``). Posting takes a transaction-level advisory lock: entries are chained one at
a time. The database refuses an overdraft (a CHECK on the account balance, updated by a
trigger under the account's row lock) and an entry whose legs do not sum to zero.

Every request that moves money carries an idempotency key: posting the same key again
with the same request returns the first entry; with a different request it is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from estate.db import Conn

GENESIS = "0" * 64
_CHAIN_LOCK = 0x5E_F0_4D  # pg_advisory_xact_lock key for the chain


class LedgerError(ValueError):
    """The movement was refused; the message says why."""


class KeyReused(LedgerError):
    """An idempotency key sent again with another request: refused, never the first answer."""


@dataclass(frozen=True)
class Leg:
    account: str  # 'fund:<id>' or 'external:<party>'
    amount_fen: int


def fund(account_id: int) -> str:
    return f"fund:{account_id}"


def _digest(prev: str, entry: dict[str, Any]) -> str:
    body = json.dumps(entry, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((prev + body).encode()).hexdigest()


def _entry(
    jid: int, at: dt.datetime, *, kind: str, case_id: int | None, key: str, memo: str,
    actor: str, legs: Sequence[Leg],
) -> dict[str, Any]:  # fmt: skip
    return {
        "id": jid,
        "at": at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "kind": kind,
        "case": case_id,
        "key": key,
        "memo": memo,
        "actor": actor,
        "legs": sorted([leg.account, leg.amount_fen] for leg in legs),
    }


def request_hash(kind: str, legs: Sequence[Leg], case_id: int | None) -> str:
    return _digest("", {"kind": kind, "case": case_id,
                        "legs": sorted([g.account, g.amount_fen] for g in legs)})  # fmt: skip


def post(
    conn: Conn,
    *,
    kind: str,
    legs: Sequence[Leg],
    key: str,
    actor: str,
    now: dt.datetime,
    memo: str = "",
    case_id: int | None = None,
) -> tuple[int, bool]:
    """Post one entry in the caller's transaction; returns (journal id, created now).
    Raises ``LedgerError`` for an unbalanced entry, a reused key with another request,
    or an overdraft."""
    if not key or len(key) > 200:
        raise LedgerError("an idempotency key (1-200 characters) is required to move money")
    if len(legs) < 2 or sum(g.amount_fen for g in legs) != 0:
        raise LedgerError("an entry needs two or more legs that sum to zero")
    if any(g.amount_fen == 0 for g in legs):
        raise LedgerError("a leg of zero fen moves nothing")
    wanted = request_hash(kind, legs, case_id)
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CHAIN_LOCK,))
    seen = conn.execute(
        "SELECT id, request_hash FROM fund_journal WHERE idempotency_key = %s", (key,)
    ).fetchone()
    if seen is not None:
        if seen[1] != wanted:
            raise KeyReused(f"idempotency key {key!r} was used for another request")
        return int(seen[0]), False
    last = conn.execute("SELECT id, hash FROM fund_journal ORDER BY id DESC LIMIT 1").fetchone()
    jid, prev = (int(last[0]) + 1, str(last[1])) if last else (1, GENESIS)
    digest = _digest(prev, _entry(jid, now, kind=kind, case_id=case_id, key=key, memo=memo,
                                  actor=actor, legs=legs))  # fmt: skip
    conn.execute(
        "INSERT INTO fund_journal (id, at, kind, case_id, idempotency_key, request_hash, memo,"
        " actor, prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (jid, now, kind, case_id, key, wanted, memo, actor, prev, digest),
    )
    try:
        with conn.transaction():  # a savepoint: the overdraft error names the account
            for g in legs:
                conn.execute(
                    "INSERT INTO fund_legs (journal_id, account, amount_fen) VALUES (%s, %s, %s)",
                    (jid, g.account, g.amount_fen),
                )
    except psycopg.errors.CheckViolation:
        short = [g.account for g in legs if g.amount_fen < 0 and g.account.startswith("fund:")]
        raise LedgerError(
            f"refused: {', '.join(short)} would go below zero (the balance cannot cover it)"
        ) from None
    return jid, True


def account_lines(
    conn: Conn,
    account_id: int,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    before: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The entries that moved ``account_id``, newest first (ids below ``before``), each
    with the account's balance after it and the other side of the entry."""
    rows = conn.execute(
        "WITH mine AS (SELECT l.journal_id, l.amount_fen,"
        "   sum(l.amount_fen) OVER (ORDER BY l.journal_id) AS balance_fen"
        "   FROM fund_legs l WHERE l.account = %(acct)s)"
        " SELECT m.journal_id, j.at, j.kind, j.case_id, m.amount_fen, m.balance_fen,"
        " (SELECT string_agg(o.account, ', ' ORDER BY o.account) FROM fund_legs o"
        "   WHERE o.journal_id = m.journal_id AND o.account <> %(acct)s) AS counterparty,"
        " j.memo, j.actor, j.hash"
        " FROM mine m JOIN fund_journal j ON j.id = m.journal_id"
        " WHERE (%(before)s::bigint IS NULL OR m.journal_id < %(before)s)"
        " AND (%(since)s::timestamptz IS NULL OR j.at >= %(since)s)"
        " AND (%(until)s::timestamptz IS NULL OR j.at < %(until)s)"
        " ORDER BY m.journal_id DESC LIMIT %(limit)s",
        {"acct": fund(account_id), "before": before, "since": since, "until": until,
         "limit": limit},
    ).fetchall()  # fmt: skip
    keys = ("journal_id", "at", "kind", "case_id", "amount_fen", "balance_fen",
            "counterparty", "memo", "actor", "hash")  # fmt: skip
    return [dict(zip(keys, r, strict=True)) for r in rows]


@dataclass(frozen=True)
class Verified:
    entries: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(conn: Conn) -> Verified:
    """Recompute the chain and every balance; list each place they disagree."""
    problems: list[str] = []
    prev = GENESIS
    legs: dict[int, list[Leg]] = {}
    for jid, account, amount in conn.execute(
        "SELECT journal_id, account, amount_fen FROM fund_legs ORDER BY journal_id"
    ):
        legs.setdefault(int(jid), []).append(Leg(str(account), int(amount)))
    n = 0
    expected_id = 1
    for jid, at, kind, case_id, key, memo, actor, prev_hash, digest in conn.execute(
        "SELECT id, at, kind, case_id, idempotency_key, memo, actor, prev_hash, hash"
        " FROM fund_journal ORDER BY id"
    ):
        n += 1
        if jid != expected_id:
            problems.append(f"entry {expected_id} is missing (next is {jid})")
        expected_id = int(jid) + 1
        mine = legs.get(int(jid), [])
        if sum(g.amount_fen for g in mine) != 0 or len(mine) < 2:
            problems.append(f"entry {jid}: its legs do not balance")
        if prev_hash != prev:
            problems.append(f"entry {jid}: does not follow the entry before it")
        entry = _entry(int(jid), at, kind=kind, case_id=case_id, key=key, memo=memo,
                       actor=actor, legs=mine)  # fmt: skip
        recomputed = _digest(str(prev_hash), entry)
        if recomputed != digest:
            problems.append(f"entry {jid}: its content does not match its hash (changed?)")
        prev = str(digest)
    balances: dict[str, int] = {}
    for mine in legs.values():
        for g in mine:
            balances[g.account] = balances.get(g.account, 0) + g.amount_fen
    for aid, balance in conn.execute("SELECT id, balance_fen FROM fund_accounts ORDER BY id"):
        want = balances.get(fund(int(aid)), 0)
        if int(balance) != want:
            problems.append(f"account {aid}: balance {balance} fen, the ledger says {want} fen")
    return Verified(n, problems)
