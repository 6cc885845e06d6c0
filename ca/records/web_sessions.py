"""Sessions of the operator and auditor pages: a cookie token per login, with idle and total limits.

A session starts after :func:`ca.records.users.authenticate` accepted a name and password; its
token is 256 random bits of which only the SHA-256 is stored (``user_sessions``), so a copy of the
database signs nobody in. A session ends :data:`SESSION_IDLE_TIMEOUT` after its last request and
:data:`SESSION_LIFETIME` after login, whichever comes first, or at logout; disabling a person ends
all of theirs (:mod:`ca.records.users`). It stands apart from the people because the web layer
resolves a session on every request and needs nothing else of them.
"""

from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from ca.clock import Clock
from ca.errors import AuthenticationError
from ca.records import audit
from ca.records.models_people import User, UserSession
from ca.records.users import Principal, sha256_hex

# A session ends SESSION_IDLE_TIMEOUT after its last request, and SESSION_LIFETIME after login
# whatever happens. last_seen_at is written at most once per SESSION_TOUCH_INTERVAL.
SESSION_LIFETIME = dt.timedelta(hours=12)
SESSION_IDLE_TIMEOUT = dt.timedelta(minutes=30)
SESSION_TOUCH_INTERVAL = dt.timedelta(minutes=1)
SESSION_TOKEN_BYTES = 32


def start_session(session: Session, user: User, *, remote_addr: str | None, clock: Clock,
                  lifetime: dt.timedelta = SESSION_LIFETIME) -> str:
    """A new session for ``user`` (after :func:`authenticate`); returns the token for the cookie."""
    token = secrets.token_urlsafe(SESSION_TOKEN_BYTES)
    now = clock.now()
    session.add(UserSession(token_sha256=sha256_hex(token), user_id=user.id, created_at=now, last_seen_at=now,
                            expires_at=now + lifetime, remote_addr=(remote_addr or None) and remote_addr[:64]))
    session.flush()
    return token


def resolve_session(session: Session, token: object, *, clock: Clock,
                    idle_timeout: dt.timedelta = SESSION_IDLE_TIMEOUT) -> Principal:
    """The person a session token belongs to; AuthenticationError when it is unknown, expired,
    idle too long, or its person is disabled. May update ``last_seen_at`` (the caller commits)."""
    if not isinstance(token, str) or not token or len(token) > 256:
        raise AuthenticationError("not signed in", field="session")
    row = session.scalars(select(UserSession).where(UserSession.token_sha256 == sha256_hex(token))).one_or_none()
    now = clock.now()
    if row is None:
        raise AuthenticationError("not signed in", field="session")
    if row.expires_at <= now or row.last_seen_at + idle_timeout <= now:
        session.delete(row)
        session.flush()
        raise AuthenticationError("the session has expired; sign in again", field="session")
    user = session.get(User, row.user_id)
    if user is None or user.disabled_at is not None:
        raise AuthenticationError("not signed in", field="session")
    if now - row.last_seen_at >= SESSION_TOUCH_INTERVAL:
        row.last_seen_at = now
        session.flush()
    return Principal(user_id=user.id, name=user.name, role=user.role, via="session")


def end_session(session: Session, token: object, *, clock: Clock) -> str | None:
    """Log out: delete the session; appends ``user.logout``. Returns the person's name, or None
    when the token named no session (nothing is written then)."""
    if not isinstance(token, str) or not token:
        return None
    row = session.scalars(select(UserSession).where(UserSession.token_sha256 == sha256_hex(token))).one_or_none()
    if row is None:
        return None
    user = session.get(User, row.user_id)
    session.delete(row)
    session.flush()
    name = user.name if user is not None else str(row.user_id)
    audit.append(session, actor=f"user:{name}", action="user.logout", subject_type="user", subject_id=name,
                 details={}, clock=clock)
    return name
