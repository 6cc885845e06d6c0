"""The declarative base every model shares: one metadata, its naming convention, UTC times, ids.

Conventions:

- Times are stored as naive UTC and always returned as aware UTC (:class:`UTCDateTime`).
- Uniqueness that matters for security (serials, nonces, token ``jti``s, account keys) is a
  database constraint, never a check in Python.
- Identifiers that appear in ACME URLs are random (RFC 8555 §10.5: URLs "SHOULD contain
  unpredictable components"); internal rows use integer keys.

The models are grouped by what they record: ``models_authority`` (issuers, delegations,
certificates, revocations, CRLs), ``models_acme`` (RFC 8555 objects and authority tokens),
``models_audit`` (the hash chain and its checkpoints) and ``models_people`` (people, sessions, API
tokens). :mod:`ca.records.store` imports them all and makes engines and sessions.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from typing import Any, Optional

from sqlalchemy import DateTime, MetaData
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

# Constraint names are the same on SQLite and PostgreSQL so migrations can drop them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# RFC 8555 §10.5: 96 random bits make an ACME resource URL unguessable.
RANDOM_ID_BYTES = 12


def random_id() -> str:
    """A random identifier for resources that appear in URLs and on command lines.

    Lowercase base32 rather than base64url: an identifier that began with ``-`` would be read
    as an option by ``tnca delegation revoke <id>``, and one without ``-``/``_`` is selected
    whole by a double click when an operator copies it out of a terminal.
    """
    return base64.b32encode(secrets.token_bytes(RANDOM_ID_BYTES)).decode("ascii").rstrip("=").lower()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, returns aware UTC; refuses naive datetimes on the way in."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Optional[dt.datetime], dialect: Any) -> Optional[dt.datetime]:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; pass an aware UTC datetime")
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: Optional[dt.datetime], dialect: Any) -> Optional[dt.datetime]:
        if value is None:
            return None
        return value.replace(tzinfo=dt.timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
