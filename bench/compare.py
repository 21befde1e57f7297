"""One benchmark, side by side: a base revision and this checkout, alternating, in one run.

    python -m bench.compare --base REV [--rounds 2] alerts [-- --probes 100 ...]

The base revision is checked out as a git worktree under ``var/bench-base/`` (reused);
each side runs ``python -m bench.<name>`` from its own tree with private servers of its
own (``var/bench-<side>/``, their own ports), so neither sees the other's code or data.
Runs alternate (base, head, base, head, ...) so that a machine getting busier or quieter
is shared fairly. Every ``key=value`` line a benchmark ends with (``alert_p99_ms=132``,
``ingest_msgs_per_s=22507``) is collected; the table gives each run, the medians and the
ratio head / base.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURE = re.compile(r"^([a-z0-9_]+)=([0-9.]+)$")
PORTS = {"base": (56432, 12883, 12884), "head": (57432, 13883, 13884)}


def worktree(rev: str) -> Path:
    """The base revision checked out (detached) under var/bench-base/."""
    path = ROOT / "var" / "bench-base"
    sha = subprocess.run(
        ["git", "rev-parse", rev], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    if path.exists():
        subprocess.run(["git", "checkout", "--detach", "-q", sha], cwd=path, check=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(path), sha], cwd=ROOT, check=True
        )
    return path


def run(side: str, tree: Path, name: str, args: list[str]) -> dict[str, float]:
    pg, mqtt, device = PORTS[side]
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "MQTT_URL"}}
    env |= {
        "PYTHONPATH": str(tree),
        "ESTATE_VAR_DIR": str(ROOT / "var" / f"bench-{side}"),
        "ESTATE_PG_PORT": str(pg),
        "ESTATE_MQTT_PORT": str(mqtt),
        "ESTATE_MQTT_DEVICE_PORT": str(device),
    }
    print(f"--- {side} ({tree}): bench.{name} {' '.join(args)}", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    print(done.stdout[-3000:], end="", flush=True)
    if done.returncode != 0:
        raise SystemExit(f"bench.{name} failed on {side}:\n{done.stderr[-3000:]}")
    figures = {}
    for line in done.stdout.splitlines():
        m = FIGURE.match(line.strip())
        if m:
            figures[m.group(1)] = float(m.group(2))
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--base", required=True, help="the revision to compare with")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("name", help="the benchmark: alerts, ingest, dispatch, ...")
    ap.add_argument("args", nargs="*", help="passed to it (after --)")
    a = ap.parse_args()
    base = worktree(a.base)
    runs: dict[str, list[dict[str, float]]] = {"base": [], "head": []}
    for _ in range(a.rounds):
        for side, tree in (("base", base), ("head", ROOT)):
            runs[side].append(run(side, tree, a.name, a.args))
    keys = sorted({k for side in runs.values() for r in side for k in r})
    print(f"\nbench.{a.name}: base {a.base} vs this checkout, {a.rounds} rounds alternating")
    print(
        f"{'figure':24} {'base runs':>22} {'head runs':>22} {'base med':>9} {'head med':>9} ratio"
    )
    for k in keys:
        b = [r[k] for r in runs["base"] if k in r]
        h = [r[k] for r in runs["head"] if k in r]
        if not b or not h:
            continue
        bm, hm = statistics.median(b), statistics.median(h)
        print(
            f"{k:24} {' '.join(f'{x:.0f}' for x in b):>22} {' '.join(f'{x:.0f}' for x in h):>22}"
            f" {bm:9.0f} {hm:9.0f} {hm / bm if bm else float('nan'):5.2f}"
        )


if __name__ == "__main__":
    main()
