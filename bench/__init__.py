"""Benchmarks that print figures (docs/benchmarks.md), never assertions. Imports any
product package but ``cli`` (it runs the CLI as a subprocess). Shared set-up below."""

from __future__ import annotations

import json
import statistics

import psycopg

from estate import db, registry
from estate.generate import generate


def fresh_database(admin_url: str, name: str) -> str:
    """Drop and recreate database ``name`` next to ``admin_url``'s, migrated; its URL."""
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    db.upgrade(url)
    return url


def county_with_lifts(n: int) -> registry.Registry:
    """A generated county (seed 5) with at least ``n`` elevators."""
    estates = 10
    while True:
        reg = registry.parse(json.dumps(generate(estates, seed=5), default=str))
        if sum(d.kind == "elevator" for _, _, d in reg.devices()) >= n:
            return reg
        estates *= 2


def pct(xs: list[float], q: float) -> float:
    """The ``q``-th percentile (1–99) of ``xs``, as the benchmarks print them."""
    return statistics.quantiles(xs, n=100)[int(q) - 1] if len(xs) > 1 else xs[0]
