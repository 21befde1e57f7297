"""An in-process fan-out of alert events: the API's live stream subscribes here.

Each subscriber gets its own bounded queue; a subscriber that falls behind loses the
oldest events (and is told how many) rather than slowing the worker down.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from alerts.store import AlertEvent


class Subscription:
    def __init__(self, maxlen: int) -> None:
        self._items: collections.deque[AlertEvent] = collections.deque(maxlen=maxlen)
        self._ready = threading.Condition()
        self.dropped = 0

    def _put(self, e: AlertEvent) -> None:
        with self._ready:
            if len(self._items) == self._items.maxlen:
                self.dropped += 1
            self._items.append(e)
            self._ready.notify_all()

    def get(self, timeout: float | None = None) -> AlertEvent | None:
        """The next event, or None after ``timeout`` seconds without one."""
        with self._ready:
            if not self._items and not self._ready.wait_for(lambda: bool(self._items), timeout):
                return None
            return self._items.popleft()


class AlertStream:
    def __init__(self, maxlen: int = 10_000) -> None:
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()
        self.maxlen = maxlen

    @contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        s = Subscription(self.maxlen)
        with self._lock:
            self._subs.append(s)
        try:
            yield s
        finally:
            with self._lock:
                self._subs.remove(s)

    def publish(self, e: AlertEvent) -> None:
        with self._lock:
            subs = list(self._subs)
        for s in subs:
            s._put(e)
