"""Node-RED doing the same MQTT-to-PostgreSQL job: the peer the ingest benchmark beats.

Installed from the npm registry on first use into ``bench/.node/`` (ignored by git, never
committed): Node-RED itself and ``pg``, the usual PostgreSQL client for Node.js. The flow
is what a Node-RED user would build: an ``mqtt in`` node at QoS 1 on the telemetry topics,
JSON-parsed, into a function node that runs one parameterised INSERT per message through a
``pg`` connection pool. Note that Node-RED acknowledges each message to the broker on
receipt, before the row is written: it would lose messages in a crash, which `estate
ingest` does not; the comparison flatters Node-RED.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent / ".node"
PACKAGES = ("node-red@4.1.8", "pg@8.16.3")  # Node-RED 5 needs Node.js 22; Debian has 20

_INSERT = """
const pool = global.get('pool');
const ids = global.get('ids');
const t = msg.topic.split('/');
const id = ids[t[2] + '/' + t[4]];
const b = msg.payload;
const v = b.values || {};
if (id === undefined) { node.warn('unknown device ' + msg.topic); return null; }
pool.query(
  'INSERT INTO telemetry (ts, device_id, seq, floor, speed_mps, direction, door_open,' +
  ' in_door_zone, occupied, load_pct, mode, running)' +
  ' VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) ON CONFLICT DO NOTHING',
  [b.ts, id, b.seq, v.floor, v.speed_mps, v.direction, v.door_open, v.in_door_zone,
   v.occupied, v.load_pct, v.mode, v.running]
).then(() => node.done()).catch((e) => node.error(e, msg));
return null;
"""

_SETTINGS = """
const { Pool } = require('pg');
module.exports = {
  uiHost: '127.0.0.1',
  uiPort: %(ui_port)d,
  httpAdminRoot: false,
  httpNodeRoot: false,
  credentialSecret: false,
  flowFile: 'flows.json',
  logging: { console: { level: 'info', metrics: false, audit: false } },
  functionGlobalContext: {
    pool: new Pool({ connectionString: %(pg_url)s, max: 4 }),
    ids: require('./ids.json'),
  },
};
"""


def install() -> Path:
    """Install Node-RED and pg into bench/.node once; return the red.js to run."""
    red = ROOT / "node_modules" / "node-red" / "red.js"
    if red.is_file():
        return red
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed: run `make setup` (it installs nodejs and npm)")
    ROOT.mkdir(parents=True, exist_ok=True)
    (ROOT / "package.json").write_text('{"private": true}\n')
    print(f"installing {', '.join(PACKAGES)} from the npm registry into {ROOT} ...", flush=True)
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", *PACKAGES],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return red


@contextmanager
def running(
    mqtt_url: str, pg_url: str, ids: dict[str, int], ui_port: int, topic: str
) -> Iterator[None]:
    """Node-RED with the flow above, subscribed and ready, stopped on exit."""
    red = install()
    user = ROOT / "user"
    shutil.rmtree(user, ignore_errors=True)
    user.mkdir()
    u = urlsplit(mqtt_url)
    flows = [
        {"id": "tab", "type": "tab", "label": "estate bench"},
        {
            "id": "broker",
            "type": "mqtt-broker",
            "name": "estate",
            "broker": u.hostname or "127.0.0.1",
            "port": str(u.port or 1883),
            "clientid": "bench-nodered",
            "autoConnect": True,
            "usetls": False,
            "protocolVersion": "4",
            "keepalive": "60",
            "cleansession": True,
        },
        {
            "id": "in",
            "type": "mqtt in",
            "z": "tab",
            "x": 100,  # flow nodes have a position; without one Node-RED takes a config node
            "y": 100,
            "topic": topic,
            "qos": "1",
            "datatype": "json",
            "broker": "broker",
            "nl": False,
            "rap": True,
            "rh": 0,
            "inputs": 0,
            "wires": [["insert"]],
        },
        {
            "id": "insert",
            "type": "function",
            "z": "tab",
            "x": 300,
            "y": 100,
            "name": "insert",
            "func": _INSERT,
            "outputs": 0,
            "wires": [],
        },
    ]
    (user / "flows.json").write_text(json.dumps(flows))
    creds = {"broker": {"user": unquote(u.username or ""), "password": unquote(u.password or "")}}
    (user / "flows_cred.json").write_text(json.dumps(creds))
    (user / "ids.json").write_text(json.dumps(ids))
    (user / "settings.js").write_text(
        _SETTINGS % {"ui_port": ui_port, "pg_url": json.dumps(pg_url)}
    )
    proc = subprocess.Popen(
        ["node", str(red), "--userDir", str(user), "--settings", str(user / "settings.js")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("Error") or "[error]" in line:
                raise RuntimeError("Node-RED failed to start the flow:\n" + "".join(seen[-20:]))
            if "Connected to broker" in line:
                break
            if time.monotonic() > deadline:
                break
        else:
            raise RuntimeError("Node-RED exited:\n" + "".join(seen[-20:]))
        if "Connected to broker" not in seen[-1]:
            raise RuntimeError("Node-RED did not connect within 60 s:\n" + "".join(seen[-20:]))
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep it drained
        time.sleep(1.0)  # the subscription follows the connection
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
