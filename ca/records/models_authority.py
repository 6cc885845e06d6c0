"""Models of the authority itself: its issuers, the delegations it grants, the certificates it
signs (with their TN scopes flattened for indexed containment queries), revocations and CRLs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    and_,
    or_,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.sql import ColumnElement

from ca.records.statuses import CertificateStage, DelegationStatus
from ca.records.models_base import Base, UTCDateTime, random_id, utcnow


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
    # The certificate profile its certificates follow (ca/issuing/subjects.py): "delegate" (the
    # subject from the delegate name and any vetting record) or "vesper" (vetting and right-to-use
    # records required, docs/identity.md).
    profile: Mapped[str] = mapped_column(String(16), default="delegate", server_default="delegate")
    not_before: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    not_after: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default=DelegationStatus.ACTIVE)
    revoked_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    revocation_reason: Mapped[Optional[str]] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(255), default="system")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    scope_entries: Mapped[list["DelegationScopeEntry"]] = relationship(
        back_populates="delegation", cascade="all, delete-orphan"
    )
    vetting: Mapped[Optional["DelegationVetting"]] = relationship(back_populates="delegation", uselist=False)
    right_to_use: Mapped[list["RightToUseEvidence"]] = relationship(
        back_populates="delegation", order_by="RightToUseEvidence.id"
    )


class DelegationVetting(Base):
    """Who vetted a delegate, when, how well, against what (docs/identity.md, ca/records/vetting.py).

    Evidence is referenced, never stored: ``evidence`` is ``[{"uri": ..., "sha256": hex}, ...]``.
    One row per delegation; a new vetting replaces it, and the audit trail keeps every version.
    """

    __tablename__ = "delegation_vettings"

    id: Mapped[int] = mapped_column(primary_key=True)
    delegation_id: Mapped[str] = mapped_column(ForeignKey("delegations.id"), unique=True)
    legal_name: Mapped[str] = mapped_column(String(255))
    country: Mapped[Optional[str]] = mapped_column(String(2))  # ISO 3166-1 alpha-2
    lei: Mapped[Optional[str]] = mapped_column(String(20), index=True)  # ISO 17442 Legal Entity Identifier
    assurance: Mapped[str] = mapped_column(String(16))  # "low" | "substantial" | "high"
    vetted_by: Mapped[str] = mapped_column(String(255))
    vetted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    recorded_by: Mapped[str] = mapped_column(String(255))
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    delegation: Mapped[Delegation] = relationship(back_populates="vetting")


class RightToUseEvidence(Base):
    """Evidence that the delegate has the right to use some of the delegated numbers (VESPER
    right-to-use, docs/identity.md): which numbers, from what source, checked by whom, when."""

    __tablename__ = "right_to_use_evidence"

    id: Mapped[int] = mapped_column(primary_key=True)
    delegation_id: Mapped[str] = mapped_column(ForeignKey("delegations.id"), index=True)
    scope_der: Mapped[bytes] = mapped_column(LargeBinary)  # DER TNAuthorizationList, inside the delegation's
    source: Mapped[str] = mapped_column(String(128))  # e.g. "number assignment record", "letter of authorization"
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    verified_by: Mapped[str] = mapped_column(String(255))
    verified_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    recorded_by: Mapped[str] = mapped_column(String(255))
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    delegation: Mapped[Delegation] = relationship(back_populates="right_to_use")


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
    stage: Mapped[str] = mapped_column(String(16), default=CertificateStage.ISSUED)
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
