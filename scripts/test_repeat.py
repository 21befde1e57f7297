"""Run the test suite N times and print a table of every test that ever failed.

Use it before a change to anything timing-sensitive (the worker, the stream, the console):
a test that fails one run in ten throws away a whole submission at random in CI.

    make test-repeat N=10 LOADED=3

runs pytest ten times; the last three with a CPU-bound process beside it (a busy loop per
LOADED run, started and stopped by this script), since most races show only when the
machine is slow. Each run's JUnit XML is kept in ``var/test-repeat/``. The exit status is
0 only when every run passed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "var" / "test-repeat"
HOG = "while True: pass"


@dataclass(frozen=True)
class Run:
    index: int
    loaded: bool
    rc: int
    seconds: float
    tests: int
    failed: dict[str, str]  # test id -> first line of its failure


def failures(report: Path) -> tuple[int, dict[str, str]]:
    """(tests run, failed test id -> first line of the failure) from a JUnit XML report."""
    if not report.exists():
        return 0, {"(no report)": "pytest wrote no report: it did not start or was killed"}
    tests, failed = 0, {}
    # pytest wrote this file a moment ago on this machine: not untrusted input
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314
        tests += 1
        for tag in ("failure", "error"):
            bad = case.find(tag)
            if bad is not None:
                name = f"{case.get('classname', '')}::{case.get('name', '')}"
                message = (bad.get("message") or bad.text or tag).strip().splitlines()
                failed[name] = (message[0] if message else tag)[:160]
    return tests, failed


def run_once(index: int, *, loaded: bool, pytest_args: list[str]) -> Run:
    report = OUT / f"run-{index:02d}.xml"
    report.unlink(missing_ok=True)
    hog = subprocess.Popen([sys.executable, "-c", HOG]) if loaded else None
    t0 = time.monotonic()
    try:
        rc = subprocess.call(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             f"--junitxml={report}", *pytest_args],
            cwd=ROOT,
        )  # fmt: skip
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    tests, failed = failures(report)
    return Run(index, loaded, rc, time.monotonic() - t0, tests, failed)


def table(runs: list[Run]) -> str:
    lines = ["", "run  load  rc  tests  failed  seconds"]
    lines += [
        f"{r.index:>3}  {'cpu' if r.loaded else '-':>4}  {r.rc:>2}  {r.tests:>5}  "
        f"{len(r.failed):>6}  {r.seconds:>7.0f}"
        for r in runs
    ]
    ever: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for r in runs:
        for name, why in r.failed.items():
            ever[name].append((r.index, why))
    lines.append("")
    if not ever:
        lines.append(f"no test failed in {len(runs)} runs")
        return "\n".join(lines)
    lines.append("tests that failed at least once (failed/runs, runs, first failure):")
    for name, hits in sorted(ever.items(), key=lambda kv: -len(kv[1])):
        which = ",".join(str(i) for i, _ in hits)
        lines.append(f"  {len(hits)}/{len(runs)}  [{which}]  {name}\n        {hits[0][1]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--loaded", type=int, default=3, help="how many of the last runs get a CPU hog")
    p.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    a = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    runs = []
    for i in range(1, a.runs + 1):
        loaded = i > a.runs - a.loaded
        print(f"== run {i}/{a.runs}{' with a CPU-bound process beside it' if loaded else ''}")
        runs.append(run_once(i, loaded=loaded, pytest_args=a.pytest_args))
        print(table(runs[-1:]), flush=True)
    text = table(runs)
    (OUT / "table.txt").write_text(text + "\n")
    print(text)
    return 0 if all(r.rc == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
