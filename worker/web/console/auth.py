"""Login and logout: the password form, a throttle on failed attempts, fresh sessions.

A successful login always starts a new session (a new id: a session id planted before login
is worth nothing after it). After `MAX_FAILURES` failed attempts from one address within
`WINDOW`, that address is refused (429) until the window has passed.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from datetime import datetime, timedelta

MAX_FAILURES = 5
WINDOW = timedelta(minutes=5)
MAX_NAME_LENGTH = 64


class LoginThrottle:
    def __init__(self, *, max_failures: int = MAX_FAILURES, window: timedelta = WINDOW) -> None:
        self._max = max_failures
        self._window = window
        self._failures: dict[str, deque[datetime]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, client: str, now: datetime) -> deque[datetime]:
        failures = self._failures[client]
        while failures and failures[0] <= now - self._window:
            failures.popleft()
        return failures

    def locked_until(self, client: str, now: datetime) -> datetime | None:
        with self._lock:
            failures = self._recent(client, now)
            if len(failures) < self._max:
                return None
            return failures[0] + self._window

    def failed(self, client: str, now: datetime) -> None:
        with self._lock:
            self._recent(client, now).append(now)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


def operator_name(raw: str) -> str | None:
    """The name typed at login (recorded as who acted), or None when unusable."""
    name = " ".join(raw.split())[:MAX_NAME_LENGTH]
    if not name or not name.isprintable():
        return None
    return name
