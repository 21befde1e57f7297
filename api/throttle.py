"""Login throttling, decided before any password is hashed.

A flood of logins must cost the server nothing and must not lock an account out for its
owner. So attempts are counted in the API process, by time passed in:

- **per source address**: a token bucket of ``SOURCE_BURST`` attempts refilled at
  ``SOURCE_PER_MINUTE`` a minute; beyond it, 429 with ``Retry-After``;
- **per account and source**: after ``FREE_FAILURES`` failures in a row from one source,
  each further attempt from it waits 1, 2, 4 … seconds (at most ``MAX_DELAY_S``):
  progressive delay, not a lock, and only for that source; a success resets it;
- **per account from everywhere**: more than ``ACCOUNT_FAILURES`` failures within
  ``ACCOUNT_WINDOW_S`` (guessing spread over many addresses) delays every source that
  has itself failed on the account, never one that has not (its owner on another device);
- **password checks at once**: at most ``HASHERS`` argon2 verifications run together; one
  more is told to retry in a second instead of taking a worker thread every other request
  needs.

The state lives in the process (a deployment with several API processes behind a proxy
divides the limits by their number); addresses are the TCP peer's.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from api.problems import Problem

SOURCE_BURST = 20
SOURCE_PER_MINUTE = 10.0
FREE_FAILURES = 3
MAX_DELAY_S = 300.0
ACCOUNT_FAILURES = 50
ACCOUNT_WINDOW_S = 3600.0
HASHERS = 2
_FORGET_S = 3600.0  # a source idle this long is forgotten (bounded memory under floods)


class Throttled(Exception):
    """Too many attempts: try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: float, why: str) -> None:
        super().__init__(why)
        self.retry_after = max(1, int(retry_after + 0.999))
        self.why = why

    def problem(self, kind: str) -> Problem:
        """The 429 problem document, with ``Retry-After``."""
        return Problem(
            429, kind, "Too many requests", f"{self.why}: try again in {self.retry_after} s",
            headers={"Retry-After": str(self.retry_after)},
        )  # fmt: skip


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class _Streak:
    failures: int = 0
    last: float = 0.0


@dataclass
class LoginThrottle:
    """One per API process; ``now`` is monotonic seconds (the caller's clock)."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sources: dict[str, _Bucket] = field(default_factory=dict)
    _streaks: dict[tuple[str, str], _Streak] = field(default_factory=dict)
    _account_failures: dict[str, deque[float]] = field(default_factory=dict)
    _hashing: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(HASHERS)
    )

    def admit(self, source: str, account: str, now: float) -> None:
        """Raise ``Throttled`` when this attempt must not be checked now."""
        with self._lock:
            self._forget(now)
            b = self._sources.get(source)
            if b is None:
                b = self._sources[source] = _Bucket(float(SOURCE_BURST), now)
            b.tokens = min(SOURCE_BURST, b.tokens + (now - b.at) * SOURCE_PER_MINUTE / 60)
            b.at = now
            if b.tokens < 1:
                raise Throttled((1 - b.tokens) * 60 / SOURCE_PER_MINUTE, "too many logins")
            streak = self._streaks.get((account, source))
            if streak is not None and streak.failures >= FREE_FAILURES:
                delay = min(MAX_DELAY_S, 2.0 ** (streak.failures - FREE_FAILURES))
                if now - streak.last < delay:
                    raise Throttled(delay - (now - streak.last), "too many failed logins")
            recent = self._account_failures.get(account)
            if recent is not None and streak is not None and streak.failures:
                while recent and now - recent[0] > ACCOUNT_WINDOW_S:
                    recent.popleft()
                if len(recent) > ACCOUNT_FAILURES:
                    raise Throttled(ACCOUNT_WINDOW_S - (now - recent[0]), "too many failed logins")
            b.tokens -= 1

    @contextmanager
    def checking(self) -> Iterator[None]:
        """Hold one of the ``HASHERS`` places while a password is verified."""
        if not self._hashing.acquire(blocking=False):
            raise Throttled(1, "the server is busy checking passwords")
        try:
            yield
        finally:
            self._hashing.release()

    def failed(self, source: str, account: str, now: float) -> None:
        """A wrong name or password from ``source``."""
        with self._lock:
            streak = self._streaks.setdefault((account, source), _Streak())
            streak.failures += 1
            streak.last = now
            self._account_failures.setdefault(account, deque()).append(now)

    def succeeded(self, source: str, account: str) -> None:
        """A login: that source's streak on that account is over."""
        with self._lock:
            self._streaks.pop((account, source), None)

    def _forget(self, now: float) -> None:
        if len(self._sources) < 10_000 and len(self._streaks) < 10_000:
            return
        self._sources = {s: b for s, b in self._sources.items() if now - b.at < _FORGET_S}
        self._streaks = {k: s for k, s in self._streaks.items() if now - s.last < _FORGET_S}
        self._account_failures = {
            a: q for a, q in self._account_failures.items() if q and now - q[-1] < _FORGET_S
        }


@dataclass
class SourceLimit:
    """A token bucket per source address: ``burst`` requests, refilled at ``per_minute``
    (the public pages: looking estates up one code after another is slow)."""

    burst: int
    per_minute: float
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sources: dict[str, _Bucket] = field(default_factory=dict)

    def admit(self, source: str, now: float) -> None:
        """Raise ``Throttled`` when ``source`` has used its requests up."""
        with self._lock:
            if len(self._sources) > 10_000:
                self._sources = {s: b for s, b in self._sources.items() if now - b.at < _FORGET_S}
            b = self._sources.get(source)
            if b is None:
                b = self._sources[source] = _Bucket(float(self.burst), now)
            b.tokens = min(self.burst, b.tokens + (now - b.at) * self.per_minute / 60)
            b.at = now
            if b.tokens < 1:
                raise Throttled((1 - b.tokens) * 60 / self.per_minute, "too many requests")
            b.tokens -= 1
