"""The console in a real browser with a city's worth of trouble on the board.

    python -m bench.console [--alerts 2000] [--rounds 5]

In a scratch database with a generated county, ``--alerts`` lifts raise a trapped alert
in the same second (a life-safety alert is an incident of its own: 2,000 rows).
The API runs under uvicorn with the built console (api/web/dist); Debian's chromium,
headless, logs in as the control room. Printed, as medians over ``--rounds`` loads of the
board (nothing is asserted: the figures go to docs/benchmarks.md):

- ``first paint``: the browser's first contentful paint of /console/ (the login page);
- ``board``: from navigating to the board to its first rows on screen (the API's
  answers included: every open alert, the rules, the live work orders), and ``every
  row`` to all of them (drawn 300 a frame after the first 200);
- ``filter``: a keystroke in the search box to the filtered rows on screen;
- ``longest task``: whether the page's main thread stays free while the whole board
  counts down (the longest task in a 3 s window, from the browser's Long Tasks API).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time

import psycopg
from playwright.sync_api import sync_playwright

from alerts import store
from alerts.judge import Op
from alerts.rules import Severity
from api.app import WEB_DIR, create_app
from api.auth import Role, create_user
from bench import county_with_lifts, fresh_database
from estate import registry
from estate.services import PrivateServices
from estate.settings import load_settings
from tests.support.web import serving

DB = "bench_console"
PASSWORD = "bench-console-password"  # noqa: S105 - a scratch database's login
LONG_TASKS = """
window.__long = 0;
new PerformanceObserver(l => {
  for (const e of l.getEntries()) window.__long = Math.max(window.__long, e.duration);
}).observe({ type: "longtask", buffered: true });
"""


def prepare(admin_url: str, n: int) -> tuple[str, int]:
    """The county, ``n`` trapped alerts raised now, an admin login; (url, incidents)."""
    url = fresh_database(admin_url, DB)
    with psycopg.connect(url, autocommit=True) as conn:
        registry.load(conn, county_with_lifts(n))
        create_user(conn, "bench-admin", Role.ADMIN, PASSWORD)
        lifts = [d for d in store.devices(conn) if d.kind == "elevator"][:n]
        t = dt.datetime.now(dt.UTC).timestamp()
        ops = [
            Op("raise", (d.id, "elevator.trapped"), "elevator.trapped", Severity.CRITICAL, t,
               {"event": {"code": "trapped"}}, rule="elevator.trapped_event", life_safety=True)
            for d in lifts
        ]  # fmt: skip
        store.apply(conn, ops, {d.id: d for d in lifts})
        row = conn.execute("SELECT count(*) FROM incidents").fetchone()
        assert row is not None
    return url, int(row[0])


def measure(base: str, rounds: int, incidents: int) -> dict[str, list[float]]:
    """The figures of ``rounds`` fresh browser contexts, in ms (rows: the board's rows)."""
    names = ("paint", "board", "every", "typed", "long", "rows")
    got: dict[str, list[float]] = {k: [] for k in names}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        for _ in range(rounds):
            ctx = browser.new_context(viewport={"width": 1600, "height": 1000}, locale="zh-CN")
            ctx.add_init_script(LONG_TASKS)
            page = ctx.new_page()
            page.goto(f"{base}/console/")
            page.wait_for_selector("#login-form")
            fcp = "performance.getEntriesByName('first-contentful-paint')[0].startTime"
            got["paint"].append(page.evaluate(fcp))
            page.fill("input[name=username]", "bench-admin")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("#who:has-text('bench-admin')")
            page.goto(f"{base}/console/#/orders")
            page.wait_for_selector("#order-filter")
            t = time.perf_counter()
            page.goto(f"{base}/console/#/board")
            page.wait_for_selector("#alert-table tbody tr", timeout=60_000)
            got["board"].append((time.perf_counter() - t) * 1000)
            page.locator("#alert-table tbody tr").nth(incidents - 1).wait_for(timeout=60_000)
            got["every"].append((time.perf_counter() - t) * 1000)
            got["rows"].append(page.locator("#alert-table tbody tr").count())
            t = time.perf_counter()
            page.fill("#board-filter input[name=text]", "no such place")
            page.wait_for_selector("#no-alerts")
            got["typed"].append((time.perf_counter() - t) * 1000)
            page.fill("#board-filter input[name=text]", "")
            page.locator("#alert-table tbody tr").nth(incidents - 1).wait_for(timeout=60_000)
            page.evaluate("window.__long = 0")
            page.wait_for_timeout(3000)
            got["long"].append(page.evaluate("window.__long"))
            ctx.close()
        browser.close()
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if not (WEB_DIR / "index.html").is_file():
        raise SystemExit(f"the console is not built ({WEB_DIR}): run make setup")
    settings = load_settings()
    with PrivateServices(settings).running() as ep:
        url, incidents = prepare(ep.database_url, args.alerts)
        print(f"{args.alerts} open trapped alerts in {incidents} incidents (rows on the board)")
        with serving(create_app(url)) as base:
            got = measure(base, args.rounds, incidents)
    med = {k: statistics.median(v) for k, v in got.items()}
    print(f"rows on the board  {med['rows']:8.0f}")
    print(f"first paint        {med['paint']:8.0f} ms  (login page)")
    print(f"board              {med['board']:8.0f} ms  (navigate → the first rows on screen)")
    print(f"every row          {med['every']:8.0f} ms  (navigate → all of them)")
    print(f"filter             {med['typed']:8.0f} ms  (a keystroke → filtered rows)")
    print(f"longest task / 3 s {med['long']:8.0f} ms  (0: no task over 50 ms)")


if __name__ == "__main__":
    main()
