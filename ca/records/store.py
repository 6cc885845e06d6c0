"""SQLAlchemy models and session handling: one metadata for the whole project.

The schema covers the whole domain from the start (delegations, certificates, revocations,
audit events, ACME accounts, orders, authorizations, challenges, nonces, authority tokens and
their used ``jti``s) so that later work extends it rather than reshaping it. Alembic
(``migrations/``) is the only way the schema changes; ``tests/unit/test_migrations.py`` fails when
these models and the migrations drift.

Conventions:

- Times are stored as naive UTC and always returned as aware UTC (:class:`UTCDateTime`).
- Uniqueness that matters for security (serials, nonces, token ``jti``s, account keys) is a
  database constraint, never a check in Python.
- Identifiers that appear in ACME URLs are random (RFC 8555 §10.5: URLs "SHOULD contain
  unpredictable components"); internal rows use integer keys.
- Functions that manipulate data take a ``Session``; the caller (a request, a CLI command, a
  worker) owns begin and commit.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    and_,
    create_engine,
    event,
    or_,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker
from sqlalchemy.sql import ColumnElement
from sqlalchemy.types import TypeDecorator

from ca.errors import PolicyError

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


# --------------------------------------------------------------------------------------------
# The authority: issuers, delegations, certificates, revocations, audit
# --------------------------------------------------------------------------------------------


class Issuer(Base):
    """A CA certificate this authority signs with (root, issuing CA) and its CRL state."""

    __tablename__ = "issuers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)  # "root", "issuing"
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    # Where the private key lives, e.g. "file:keys/issuing.key" or "pkcs11:token=tnca;object=issuing".
    signer_uri: Mapped[str] = mapped_column(String(512))
    # DER TNAuthorizationList of the issuer (None for a root without a TNAuthList).
    scope_der: Mapped[Optional[bytes]] = mapped_column(LargeBinary)
    parent_id: Mapped[Optional[int]] = mapped_column(ForeignKey("issuers.id"))
    # RFC 5280 §5.2.3: CRL numbers increase monotonically per issuer.
    crl_number: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Delegation(Base):
    """A grant of a TN scope to a delegate (an enterprise), from which certificates are issued."""

    __tablename__ = "delegations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=random_id)
    delegate: Mapped[str] = mapped_column(String(255), index=True)
    scope_der: Mapped[bytes] = mapped_column(LargeBinary)  # DER TNAuthorizationList
    # May the delegate obtain a delegate CA certificate (RFC 9060 sub-delegation)?
    ca_allowed: Mapped[bool] = mapped_column(Boolean, default=False)
    max_lifetime_seconds: Mapped[int] = mapped_column(Integer)
    # DER of a JWTClaimConstraints or EnhancedJWTClaimConstraints value; kind says which.
    constraints_der: Mapped[Optional[bytes]] = mapped_column(LargeBinary)
    constraints_kind: Mapped[Optional[str]] = mapped_column(String(16))  # "jwt" | "enhanced"
    not_before: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    not_after: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | revoked
    revoked_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    revocation_reason: Mapped[Optional[str]] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(255), default="system")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    scope_entries: Mapped[list["DelegationScopeEntry"]] = relationship(
        back_populates="delegation", cascade="all, delete-orphan"
    )


class Certificate(Base):
    """Every certificate this authority signs, from precertificate to final certificate.

    A row is written with ``stage="precertificate"`` (serial and precertificate recorded) before
    any log sees the precertificate, so a crash leaves a record of what was planned.
    """

    __tablename__ = "certificates"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Hex of the positive serial number, lowercase, no leading zeros.
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    issuer_id: Mapped[int] = mapped_column(ForeignKey("issuers.id"), index=True)
    delegation_id: Mapped[Optional[str]] = mapped_column(ForeignKey("delegations.id"), index=True)
    account_id: Mapped[Optional[str]] = mapped_column(ForeignKey("accounts.id"), index=True)
    order_id: Mapped[Optional[str]] = mapped_column(ForeignKey("orders.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "end-entity" | "delegate-ca"
    stage: Mapped[str] = mapped_column(String(16), default="issued")  # precertificate | issued | failed
    scope_der: Mapped[bytes] = mapped_column(LargeBinary)
    subject: Mapped[str] = mapped_column(Text)  # RFC 4514 string, for people
    # SHA-256 of the DER SubjectPublicKeyInfo, hex: finds certificates by key (revocation, §11.1).
    spki_sha256: Mapped[str] = mapped_column(String(64), index=True)
    not_before: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    precertificate_der: Mapped[Optional[bytes]] = mapped_column(LargeBinary)
    der: Mapped[Optional[bytes]] = mapped_column(LargeBinary)
    # SHA-256 of the final certificate DER, hex.
    fingerprint_sha256: Mapped[Optional[str]] = mapped_column(String(64), unique=True)
    # SCTs embedded in the final certificate: [{"log_id": b64, "timestamp": ms, "log_url": ...}].
    scts: Mapped[Optional[list[dict[str, Any]]]] = mapped_column(JSON)
    error: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    issuer: Mapped[Issuer] = relationship()
    delegation: Mapped[Optional[Delegation]] = relationship()
    revocation: Mapped[Optional["Revocation"]] = relationship(back_populates="certificate", uselist=False)
    scope_entries: Mapped[list["CertificateScopeEntry"]] = relationship(
        back_populates="certificate", cascade="all, delete-orphan"
    )


def span_digits(lo: int, hi: int) -> int:
    """Decimal digits of ``hi - lo`` (0 when ``lo == hi``): the span class of an interval.

    Why: "which entries contain number n" is ``lo <= n <= hi``, and a B-tree on ``lo`` alone must
    scan every entry that starts below n. Within one span class d every interval is shorter than
    10^d, so a containing entry starts in ``(n - 10^d, n]``: one short index range per class on
    ``(width, span_digits, lo)`` finds them all, exactly, on SQLite and PostgreSQL alike
    (ca/records/queries.py; numbers have at most 15 digits, so there are at most 16 classes).
    """
    return len(str(hi - lo)) if hi > lo else 0


# E.164 §6: a number has at most 15 digits, so an interval spans at most 15 decimal digits.
MAX_SPAN_DIGITS = 15


def scope_entry_overlaps(entry: Any, width: int, lo: int, hi: int) -> ColumnElement[bool]:
    """Rows of a ``*_scope_entries`` model (``entry``) sharing a number with [lo, hi] of ``width``.

    ``entry.lo <= hi AND entry.hi >= lo``, split by span class so that each class is one bounded
    range of an index on ``(width, span_digits, lo)``: an entry of class d is shorter than 10^d,
    so it can only reach ``lo`` if it starts after ``lo - 10^d`` (see :func:`span_digits`).
    """
    classes = [
        and_(entry.span_digits == digits, entry.lo > lo - 10**digits, entry.lo <= hi, entry.hi >= lo)
        for digits in range(MAX_SPAN_DIGITS + 1)
    ]
    return and_(entry.width == width, or_(*classes))


def _span_digits_default(context: Any) -> Optional[int]:
    params = context.get_current_parameters()
    lo, hi = params.get("lo"), params.get("hi")
    return span_digits(lo, hi) if lo is not None and hi is not None else None


class _ScopeEntryColumns:
    """One TNAuthList entry flattened for indexed containment queries.

    A TN or range is stored as an interval [lo, hi] of integers of fixed digit width ``width``
    (leading zeros are significant: "0123" and "123" differ by width). An SPC is stored in
    ``spc`` with the interval columns NULL. TNs containing ``*`` or ``#`` keep their literal
    text in ``literal``.
    """

    width: Mapped[Optional[int]] = mapped_column(Integer)
    lo: Mapped[Optional[int]] = mapped_column(BigInteger)
    hi: Mapped[Optional[int]] = mapped_column(BigInteger)
    spc: Mapped[Optional[str]] = mapped_column(String(64))
    literal: Mapped[Optional[str]] = mapped_column(String(16))
    # Decimal digits of (hi - lo): 0 for one number, 2 for a 100-block, 4 for a 10000-block.
    # Filled in from lo/hi when a row is inserted; see span_digits() for why it exists.
    span_digits: Mapped[Optional[int]] = mapped_column(Integer, default=_span_digits_default)


class CertificateScopeEntry(_ScopeEntryColumns, Base):
    __tablename__ = "certificate_scope_entries"
    __table_args__ = (
        Index("ix_certificate_scope_entries_tn", "width", "lo", "hi"),
        Index("ix_certificate_scope_entries_spc", "spc"),
        # Containment and overlap queries by number (ca/records/queries.py); hi and certificate_id make
        # the index covering, so a probe never touches the table.
        Index("ix_certificate_scope_entries_span", "width", "span_digits", "lo", "hi", "certificate_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id", ondelete="CASCADE"), index=True)
    certificate: Mapped[Certificate] = relationship(back_populates="scope_entries")


class DelegationScopeEntry(_ScopeEntryColumns, Base):
    __tablename__ = "delegation_scope_entries"
    __table_args__ = (
        Index("ix_delegation_scope_entries_tn", "width", "lo", "hi"),
        Index("ix_delegation_scope_entries_spc", "spc"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    delegation_id: Mapped[str] = mapped_column(ForeignKey("delegations.id", ondelete="CASCADE"), index=True)
    delegation: Mapped[Delegation] = relationship(back_populates="scope_entries")


class Revocation(Base):
    """The revocation of one certificate; at most one per certificate (a constraint)."""

    __tablename__ = "revocations"

    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id"), unique=True)
    # RFC 5280 §5.3.1 CRLReason; None means "no reasonCode entry in the CRL".
    reason_code: Mapped[Optional[int]] = mapped_column(Integer)
    revoked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(255))
    # How it happened: "acme", "operator", "delegation", "number".
    source: Mapped[str] = mapped_column(String(32))
    comment: Mapped[Optional[str]] = mapped_column(Text)

    certificate: Mapped[Certificate] = relationship(back_populates="revocation")


class CRL(Base):
    """A CRL this authority signed (RFC 5280 §5): every one is kept, the newest per issuer is served.

    ``number`` is the cRLNumber (RFC 5280 §5.2.3), taken from ``issuers.crl_number`` under that
    row's lock, so numbers increase per issuer across processes and the unique constraint makes
    a duplicate impossible.
    """

    __tablename__ = "crls"
    __table_args__ = (UniqueConstraint("issuer_id", "number", name="uq_crls_issuer_id_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # The unique (issuer_id, number) index also finds the newest CRL of an issuer.
    issuer_id: Mapped[int] = mapped_column(ForeignKey("issuers.id"))
    number: Mapped[int] = mapped_column(BigInteger)
    # RFC 5280 §5.1.2.4/§5.1.2.5, whole seconds as in the CRL.
    this_update: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    next_update: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # When it was made, to the microsecond: a revocation recorded later is not in it.
    generated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    entries: Mapped[int] = mapped_column(Integer)  # revoked certificates listed
    der: Mapped[bytes] = mapped_column(LargeBinary)
    # Why it was made: "revocation", "schedule", "operator".
    trigger: Mapped[str] = mapped_column(String(32))

    issuer: Mapped[Issuer] = relationship()


class AuditEvent(Base):
    """An append-only, hash-chained record of a state change (see ``ca/records/audit.py``)."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64), index=True)  # e.g. "certificate.issue"
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)

    __table_args__ = (Index("ix_audit_events_subject", "subject_type", "subject_id"),)


class AuditHead(Base):
    """The single row holding the chain head; locking it serializes appends across processes."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)  # always 1
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A signed statement of the audit chain head (``ca/records/audit.py``): truncation below it is detectable.

    ``statement`` is the exact canonical JSON that was signed (``seq``, ``head_hash``,
    ``signed_at``, the authority); the other columns repeat its fields for queries. The signing
    certificate is kept with each checkpoint so that every row verifies on its own, also after
    the audit key is replaced.
    """

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, index=True)
    head_hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    statement: Mapped[str] = mapped_column(Text)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)


# --------------------------------------------------------------------------------------------
# People: operator/auditor accounts, their sessions and API tokens (ca/records/users.py)
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# ACME (RFC 8555) and authority tokens (RFC 9447/9448)
# --------------------------------------------------------------------------------------------


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=random_id)
    # The public JWK (JSON text) and its RFC 7638 SHA-256 thumbprint (base64url); one account per key.
    jwk: Mapped[str] = mapped_column(Text)
    jwk_thumbprint: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="valid")  # valid | deactivated | revoked
    contact: Mapped[list[str]] = mapped_column(JSON, default=list)
    terms_agreed: Mapped[bool] = mapped_column(Boolean, default=False)
    # RFC 8555 §7.3.4 external account binding: the key id that bound this account.
    eab_key_id: Mapped[Optional[str]] = mapped_column(ForeignKey("external_account_keys.key_id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ExternalAccountKey(Base):
    """An RFC 8555 §7.3.4 MAC key handed to a delegate out of band; binds an account to it."""

    __tablename__ = "external_account_keys"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True, default=random_id)
    # The HMAC key. It is a shared secret by design of RFC 8555 §7.3.4.
    hmac_key: Mapped[bytes] = mapped_column(LargeBinary)
    delegation_id: Mapped[Optional[str]] = mapped_column(ForeignKey("delegations.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    bound_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)


# Orders still able to issue: an RFC 9773 §5 replacement stays "claimed" while its order is one.
ORDER_STATUSES_CLAIMING_REPLACEMENT = ("pending", "ready", "processing", "valid")
_CLAIMING_REPLACEMENT = text(
    "status IN (" + ", ".join(f"'{status}'" for status in ORDER_STATUSES_CLAIMING_REPLACEMENT) + ")"
)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        # RFC 9773 §5: a certificate is replaced by at most one order that is not invalid; the
        # index decides between two newOrders racing to replace the same certificate.
        Index(
            "uq_orders_replaces_serial",
            "replaces_serial",
            unique=True,
            sqlite_where=_CLAIMING_REPLACEMENT,
            postgresql_where=_CLAIMING_REPLACEMENT,
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=random_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    # pending | ready | processing | valid | invalid | canceled (RFC 8739)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    expires: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    identifiers: Mapped[list[dict[str, str]]] = mapped_column(JSON)  # as the client sent them
    scope_der: Mapped[bytes] = mapped_column(LargeBinary)  # decoded TNAuthList of the identifier
    not_before: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    not_after: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    error: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    # RFC 8739 STAR: the "auto-renewal" object as accepted (None for ordinary orders). None is
    # stored as SQL NULL, not JSON null, so "auto_renewal IS NOT NULL" finds exactly STAR orders.
    auto_renewal: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON(none_as_null=True))
    # When the renewal worker (ca/lifecycle/renewal.py) next acts on a valid STAR order: the publication
    # time of the next certificate (its notBefore, RFC 8739 §3.5), or the end of a worker's claim
    # or retry delay. None when no certificate remains to be issued.
    next_renewal_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime, index=True)
    # The finalize CSR of a STAR order: RFC 8739 §2.2 renews "using the same CSR".
    csr_der: Mapped[Optional[bytes]] = mapped_column(LargeBinary)
    # The claim of the worker renewing this order right now (random; ca/lifecycle/renewal.py). A renewal is
    # committed only while its claim still stands, so a renewal happens once across workers.
    renewal_claim: Mapped[Optional[str]] = mapped_column(String(32))
    # RFC 9773 §5 "replaces": the serial of the certificate this order renews (no foreign key:
    # certificates already point at orders, and certificate rows are never deleted), and the
    # client's identifier for it, shown back in the order object.
    replaces_serial: Mapped[Optional[str]] = mapped_column(String(64))
    replaces: Mapped[Optional[str]] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    account: Mapped[Account] = relationship()
    authorizations: Mapped[list["Authorization"]] = relationship(back_populates="order", order_by="Authorization.created_at")
    # Certificates issued for this order, oldest first. An ordinary order has one; a STAR order
    # (RFC 8739) gains one per renewal and its current certificate is the newest issued one.
    certificates: Mapped[list[Certificate]] = relationship(
        primaryjoin="Order.id == Certificate.order_id", order_by="Certificate.id", viewonly=True
    )


class Authorization(Base):
    __tablename__ = "authorizations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=random_id)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    identifier_type: Mapped[str] = mapped_column(String(32))
    identifier_value: Mapped[str] = mapped_column(Text)
    scope_der: Mapped[bytes] = mapped_column(LargeBinary)
    # pending | valid | invalid | deactivated | expired | revoked
    status: Mapped[str] = mapped_column(String(16), default="pending")
    expires: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # What the validated authority token said (RFC 9448 §6): enforced at finalize.
    token_jti: Mapped[Optional[str]] = mapped_column(String(255))
    token_ca: Mapped[Optional[bool]] = mapped_column(Boolean)
    token_expires: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    delegation_id: Mapped[Optional[str]] = mapped_column(ForeignKey("delegations.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    order: Mapped[Order] = relationship(back_populates="authorizations")
    challenges: Mapped[list["Challenge"]] = relationship(back_populates="authorization", order_by="Challenge.id")


class Challenge(Base):
    __tablename__ = "challenges"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=random_id)
    authorization_id: Mapped[str] = mapped_column(ForeignKey("authorizations.id"), index=True)
    type: Mapped[str] = mapped_column(String(32))  # "tkauth-01"
    status: Mapped[str] = mapped_column(String(16), default="pending")
    token: Mapped[str] = mapped_column(String(64), default=random_id)
    validated: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    error: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)

    authorization: Mapped[Authorization] = relationship(back_populates="challenges")


class Nonce(Base):
    """RFC 8555 §6.5 anti-replay nonces, shared by every server process through the database."""

    __tablename__ = "nonces"

    value: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class AuthorityToken(Base):
    """An authority token this authority's token authority minted (RFC 9448 §5)."""

    __tablename__ = "authority_tokens"

    jti: Mapped[str] = mapped_column(String(255), primary_key=True)
    delegation_id: Mapped[str] = mapped_column(ForeignKey("delegations.id"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(128))  # "SHA256 AA:BB:…"
    scope_der: Mapped[bytes] = mapped_column(LargeBinary)
    ca: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(255), default="system")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class UsedTokenJTI(Base):
    """Every authority-token ``jti`` ever accepted: the constraint makes tokens single use."""

    __tablename__ = "used_token_jtis"
    __table_args__ = (UniqueConstraint("issuer", "jti", name="uq_used_token_jtis_issuer_jti"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # The token authority: SHA-256 hex of its certificate's SubjectPublicKeyInfo.
    issuer: Mapped[str] = mapped_column(String(64))
    jti: Mapped[str] = mapped_column(String(255))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    challenge_id: Mapped[str] = mapped_column(ForeignKey("challenges.id"))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


# --------------------------------------------------------------------------------------------
# Engine and sessions
# --------------------------------------------------------------------------------------------


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed while one writer commits; busy_timeout makes writers queue
    # instead of failing with "database is locked" when several processes share the file.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


SUPPORTED_DIALECTS = ("sqlite", "postgresql")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the settings this project relies on (SQLite pragmas).

    Only SQLite and PostgreSQL are supported: the migrations, the row locks and the audit head's
    upsert are written and tested for those two.
    """
    engine = create_engine(url, **kwargs)
    if engine.dialect.name not in SUPPORTED_DIALECTS:
        engine.dispose()
        raise PolicyError(f"database {engine.dialect.name} is not supported: use SQLite or PostgreSQL",
                          field="[database] url")
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(bind=engine, expire_on_commit=False)
