"""The API under a real uvicorn server."""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import uvicorn

from tests.support.pipeline import wait_for


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` under a real uvicorn server on a free port; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1):  # noqa: S310
                return True
        except OSError:
            return False

    wait_for(up, 20, "the API server")
    try:
        yield base
    finally:
        srv.should_exit = True
        t.join(10)
