"""Time, passed in explicitly so that validity windows, expiry and audit timestamps are testable.

Every ``ca`` function that needs "now" takes a :class:`Clock`; nothing in ``ca/`` calls
``datetime.now()`` on its own. All times are aware UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time as an aware UTC datetime."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)

    def __repr__(self) -> str:
        return "SystemClock()"


class FixedClock:
    """A clock that stands still until told to move: for tests of expiry and validity windows."""

    def __init__(self, at: dt.datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime (UTC)")
        self._now = at.astimezone(dt.timezone.utc)

    def now(self) -> dt.datetime:
        return self._now

    def advance(self, delta: dt.timedelta) -> None:
        self._now += delta

    def __repr__(self) -> str:
        return f"FixedClock({self._now.isoformat()})"
