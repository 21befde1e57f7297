"""Running the ``estate`` command as a person does: a subprocess with its environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ESTATE_CMD = [sys.executable, "-m", "cli"]


def estate_env(
    var_dir: Path, pg_port: int, mqtt_port: int, mqtt_device_port: int
) -> dict[str, str]:
    """The environment for running `estate` against these private servers."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "MQTT_URL"}}
    env.update(
        ESTATE_VAR_DIR=str(var_dir),
        ESTATE_PG_PORT=str(pg_port),
        ESTATE_MQTT_PORT=str(mqtt_port),
        ESTATE_MQTT_DEVICE_PORT=str(mqtt_device_port),
    )
    return env


def run_estate(
    args: list[str], env: dict[str, str], *, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ESTATE_CMD, *args],
        env=env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
