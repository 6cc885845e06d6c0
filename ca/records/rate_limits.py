"""Rate limits (policy ``[rate_limits]``): how often one key may do one thing, shared by every
process and host through the database.

Each limit counts attempts per key in fixed windows (aligned to the Unix epoch: a 3 h window
starts at 00:00, 03:00, … UTC). One ``rate_limit_counters`` row per (limit, key, window) holds
the count, incremented by an upsert (``INSERT … ON CONFLICT DO UPDATE … RETURNING``), so two
processes counting at once cannot both see room for one more. Rows of ended windows are deleted
at most once per :data:`PRUNE_INTERVAL_SECONDS` per process, so the table holds the current
windows only.

Counting happens in the caller's transaction, so an attempt counts only when the work it
guards commits (a newOrder refused for its scope counts nothing, and changes nothing). A refusal
rolls that transaction back and then, in the same session, records the refusal: the first
refusal of a key in a window appends one ``rate_limit.reached`` audit event (a conditional
update of the row's ``audited`` flag decides which process writes it); later refusals in that
window append nothing, so a client hammering a limit cannot flood the audit trail.

On PostgreSQL the upsert locks the counter row until the caller commits: requests counted under
one key (one account, one address) take turns for that short transaction, which is what makes
the count exact across hosts.

Callers: ``acme_server/acme/rate_limiting.py`` (newOrder, newAccount, the challenge answer) and
the STI-PA login endpoint, each through :func:`check` (count one attempt, refuse over the limit)
or :func:`refuse_if_reached` + :func:`record` (refuse once ``count`` failures are recorded),
with the request's session: ``rate_limits.check(session, policy.rate_limits,
ca.policy.STI_PA_LOGINS, "user:" + name, clock=clock)`` before checking a password, and again
with ``"addr:" + address_key(address)``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import math
import threading
import time
from typing import NoReturn

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ca.clock import Clock
from ca.errors import RateLimitedError
from ca.policy import RateLimit, RateLimits, format_duration
from ca.records import audit
from ca.records.models_acme import RateLimitCounter

# Ended windows are swept this often (seconds, per process), at most this many rows at a time.
PRUNE_INTERVAL_SECONDS = 60.0
PRUNE_BATCH = 10_000
# The longest key stored as is; longer keys (a delegate name is up to 255 characters, the column
# is 255) are stored as their SHA-256.
MAX_KEY_CHARS = 255
# IPv6 clients are counted per /64: one subscriber line usually holds a whole /64.
IPV6_PREFIX = 64
AUDIT_ACTOR = "rate-limit"
AUDIT_ACTION = "rate_limit.reached"

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_COUNTERS = RateLimitCounter.__table__
_prune_lock = threading.Lock()
_next_prune = 0.0


def address_key(address: str) -> str:
    """The key a client address counts under: the IPv4 address, or the IPv6 /64 it is in."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:MAX_KEY_CHARS]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/{IPV6_PREFIX}", strict=False))
    return str(ip)


def window_of(now: dt.datetime, window: dt.timedelta) -> tuple[dt.datetime, dt.datetime]:
    """The fixed window [start, end) holding ``now``."""
    seconds = int(window.total_seconds())
    elapsed = int((now - _EPOCH).total_seconds())
    start = _EPOCH + dt.timedelta(seconds=elapsed - elapsed % seconds)
    return start, start + dt.timedelta(seconds=seconds)


def check(session: Session, limits: RateLimits, name: str, key: str, *, clock: Clock) -> None:
    """Count one attempt at ``name`` by ``key`` in the caller's transaction (the caller commits it
    with the work it counts, so a request refused later for another reason counts nothing).

    Over the limit (more than ``count`` in the window, this one included) the caller's
    transaction is rolled back, the refusal audited (once per window) and committed, and
    :class:`RateLimitedError` raised: call it before the work it guards. A limit whose ``count``
    is 0 counts nothing.
    """
    limit = limits[name]
    if not limit.count:
        return
    now = clock.now()
    start, end = window_of(now, limit.window)
    if _increment(session, name, _stored_key(key), start, end) > limit.count:
        _refuse(session, name, key, limit, now, start, end, clock)
    _prune_if_due(session, now)


def record(session: Session, limits: RateLimits, name: str, key: str, *, clock: Clock) -> None:
    """Count one event (a failed validation) in the caller's transaction without refusing
    anything: :func:`refuse_if_reached` refuses the next attempt once ``count`` are recorded."""
    limit = limits[name]
    if not limit.count:
        return
    now = clock.now()
    start, end = window_of(now, limit.window)
    _increment(session, name, _stored_key(key), start, end)
    _prune_if_due(session, now)


def refuse_if_reached(session: Session, limits: RateLimits, name: str, key: str, *, clock: Clock) -> None:
    """Raise :class:`RateLimitedError` (as :func:`check` does: rolled back, audited once per
    window) when ``count`` events are recorded for ``key`` in the current window; count nothing."""
    limit = limits[name]
    if not limit.count:
        return
    now = clock.now()
    start, end = window_of(now, limit.window)
    count = session.scalar(select(RateLimitCounter.count).where(*_row(name, _stored_key(key), start)))
    if count is not None and count >= limit.count:
        _refuse(session, name, key, limit, now, start, end, clock)


def _refuse(session: Session, name: str, key: str, limit: RateLimit, now: dt.datetime, start: dt.datetime,
            end: dt.datetime, clock: Clock) -> NoReturn:
    """Roll back what the caller's transaction holds (this attempt's count included), audit the
    first refusal of the window, commit that, and raise."""
    session.rollback()
    _audit_once(session, name, key, _stored_key(key), limit, start, end, clock)
    session.commit()
    retry_after = max(1, math.ceil((end - now).total_seconds()))
    raise RateLimitedError(
        f"rate limit {name} reached: at most {limit.count} per {format_duration(limit.window)} for "
        f"{key[:80]!r}; retry after {retry_after} seconds",
        limit=name, retry_after=retry_after,
    )


def _row(name: str, stored_key: str, start: dt.datetime) -> tuple:
    return (RateLimitCounter.limit_name == name, RateLimitCounter.key == stored_key,
            RateLimitCounter.window_start == start)


def _stored_key(key: str) -> str:
    if len(key) <= MAX_KEY_CHARS:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _increment(session: Session, name: str, stored_key: str, start: dt.datetime, end: dt.datetime) -> int:
    """Add one to the window's count (creating its row) and return the new count, atomically."""
    insert = {"postgresql": postgresql_insert, "sqlite": sqlite_insert}[session.get_bind().dialect.name]
    statement = (
        insert(RateLimitCounter)
        .values(limit_name=name, key=stored_key, window_start=start, window_end=end, count=1, audited=False)
        .on_conflict_do_update(index_elements=["limit_name", "key", "window_start"],
                               set_={"count": _COUNTERS.c.count + 1})
        .returning(_COUNTERS.c.count)
    )
    return int(session.execute(statement).scalar_one())


def _audit_once(session: Session, name: str, key: str, stored_key: str, limit: RateLimit,
                start: dt.datetime, end: dt.datetime, clock: Clock) -> None:
    """The first refusal in a window is audited; whoever flips ``audited`` writes the event."""
    flipped = session.execute(
        update(RateLimitCounter)
        .where(*_row(name, stored_key, start), RateLimitCounter.audited.is_(False))
        .values(audited=True)
        .execution_options(synchronize_session=False)
    )
    if flipped.rowcount != 1:
        return
    audit.append(
        session, actor=AUDIT_ACTOR, action=AUDIT_ACTION, subject_type="rate_limit", subject_id=name,
        details={"limit": name, "key": key[:MAX_KEY_CHARS], "count": limit.count,
                 "window": format_duration(limit.window), "window_start": start.isoformat(),
                 "window_end": end.isoformat()},
        clock=clock,
    )


def _prune_if_due(session: Session, now: dt.datetime) -> None:
    """Delete up to PRUNE_BATCH rows of ended windows, in the caller's transaction. On PostgreSQL
    rows another transaction holds are skipped (SKIP LOCKED), so pruning never waits on, or
    deadlocks with, a request still counting in a window that just ended."""
    global _next_prune
    with _prune_lock:
        if time.monotonic() < _next_prune:
            return
        _next_prune = time.monotonic() + PRUNE_INTERVAL_SECONDS
    ended = (
        select(_COUNTERS.c.limit_name, _COUNTERS.c.key, _COUNTERS.c.window_start)
        .where(_COUNTERS.c.window_end <= now)
        .limit(PRUNE_BATCH)
    )
    if session.get_bind().dialect.name == "postgresql":
        ended = ended.with_for_update(skip_locked=True)
    session.execute(
        delete(RateLimitCounter).where(
            tuple_(_COUNTERS.c.limit_name, _COUNTERS.c.key, _COUNTERS.c.window_start).in_(ended)
        )
    )
