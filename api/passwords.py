"""The password policy: length, then nothing guessable.

A password must have at least ``MIN_LENGTH`` characters, at least ``MIN_DISTINCT``
different ones, not only digits; it must not be a common password (``common_passwords.txt``,
compared whole after lower-casing and dropping the digits and symbols around it), nor
made of common words and digits, nor a keyboard or alphabet run, nor contain what an
attacker knows of the account: its login name, display name, organisation or area code,
or the product's own name.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

MIN_LENGTH = 12
MIN_DISTINCT = 5
_RUNS = (
    "abcdefghijklmnopqrstuvwxyz",
    "0123456789",
    "qwertyuiopasdfghjklzxcvbnm",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
)
_EDGES = re.compile(r"^[\W\d_]+|[\W\d_]+$")
_PRODUCT = ("smartestate", "smart-estate", "estate")


@functools.cache
def common() -> frozenset[str]:
    """The common passwords shipped with the package."""
    text = resources.files("api").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and line[0] != "#"
    )


def _is_run(s: str) -> bool:
    """Only a stretch of the alphabet, the digits or the keyboard, forwards or back."""
    if len(s) < 4:
        return False
    return any(s in run or s in run[::-1] for run in (*_RUNS, *(r * 3 for r in _RUNS)))


def _residue(core: str) -> str:
    """The letters left once the common words are taken out."""
    for word in sorted(common(), key=len, reverse=True):
        if len(word) >= 4:
            core = core.replace(word, "")
    return re.sub(r"[\W\d_]", "", core)


def problem(password: str, *, context: tuple[str | None, ...] = ()) -> str | None:
    """Why ``password`` is refused (a sentence for the person), or None if it is fine.
    ``context`` is what is known of the account (name, display name, organisation)."""
    lowered = password.lower()
    core = _EDGES.sub("", lowered)
    known = next(
        (w for w in (*context, *_PRODUCT) if w and len(w) >= 3 and w.lower() in lowered), None
    )
    checks = (
        (len(password) < MIN_LENGTH, f"a password needs at least {MIN_LENGTH} characters"),
        (
            len(set(password)) < MIN_DISTINCT,
            f"a password needs at least {MIN_DISTINCT} different characters",
        ),
        (
            lowered.isdigit(),
            "a password of digits only is a date or a number someone knows: add letters",
        ),
        (
            lowered in common() or core in common() or _is_run(lowered) or _is_run(core),
            "that password is among the first an attacker tries: choose another",
        ),
        (
            len(_residue(core)) < 4,
            "that password is made of common words and digits: choose another",
        ),
        (
            known is not None,
            f"a password must not contain {known!r} (the account's own name or unit)",
        ),
    )
    return next((why for failed, why in checks if failed), None)
