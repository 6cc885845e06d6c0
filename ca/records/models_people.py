"""Models of the people: operator and auditor accounts, their sessions and API tokens, and the
login attempts that throttle guessing (``ca/records/users.py``, ``web_sessions.py``, ``api_tokens.py``).
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

from sqlalchemy import Boolean, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ca.records.models_base import Base, UTCDateTime, random_id, utcnow


class User(Base):
    """A person who signs in to the operator and auditor pages or calls the audit API."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # admin | operator | auditor
    # An argon2id PHC string ("$argon2id$v=19$m=…,t=…,p=…$salt$hash"): parameters travel with it.
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    password_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)


class UserSession(Base):
    """A signed-in browser. The cookie carries a random token; only its SHA-256 is stored here,
    so logging out, disabling a person or changing a password ends sessions at once."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    remote_addr: Mapped[Optional[str]] = mapped_column(String(64))


class APIToken(Base):
    """A bearer token for the audit API, acting as its person with the lower of the token's role
    and the person's current role.

    The token is ``tnca_<id>_<secret>``; only SHA-256 of the secret is stored. The secret has
    256 random bits, so a fast hash suffices (a memory-hard hash protects low-entropy passwords).
    """

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=random_id)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(128))
    # At most this role (least privilege for scripts); the person's own role is the ceiling.
    role: Mapped[str] = mapped_column(String(16))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    last_used_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    revoked_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)


class LoginAttempt(Base):
    """One password check, kept in SQL so login throttling holds across server processes."""

    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_username", "username", "attempted_at"),
        Index("ix_login_attempts_remote_addr", "remote_addr", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))  # as typed (normalized, cut to 64)
    remote_addr: Mapped[str] = mapped_column(String(64))
    attempted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    succeeded: Mapped[bool] = mapped_column(Boolean)


class StipaCredential(Base):
    """A login of the STI-PA-compatible token API (``ca/tokens/stipa.py``): one per delegation.

    The delegate logs in with ``user_id`` and a generated password (only its argon2id hash is
    kept, as for people) and may then request authority tokens inside this delegation's scope.
    ``sp_id`` is the account id the API's token URL names (the delegation's SPC when it has one).
    """

    __tablename__ = "stipa_credentials"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    delegation_id: Mapped[str] = mapped_column(ForeignKey("delegations.id"), index=True)
    sp_id: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    revoked_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)


class StipaAccessToken(Base):
    """An access token the STI-PA API's login handed out; only SHA-256 of it is stored (256
    random bits need no slow hash)."""

    __tablename__ = "stipa_access_tokens"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("stipa_credentials.user_id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
