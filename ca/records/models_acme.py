"""Models of the ACME protocol (RFC 8555) and of authority tokens (RFC 9447/9448): accounts and
their external account keys, orders, authorizations, challenges, spent nonces and the nonces'
key, the tokens minted here and every token ``jti`` ever used.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ca.records.models_authority import Certificate
from ca.records.models_base import Base, UTCDateTime, random_id, utcnow


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
    """An RFC 8555 §7.3.4 MAC key handed to a delegate out of band; binds an account to it.

    ``ca.records.external_accounts`` makes, lists and revokes them; the account a key binds acts
    for ``delegate`` only (its tokens and orders stay inside that delegate's delegations).
    """

    __tablename__ = "external_account_keys"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True, default=random_id)
    # The HMAC key. It is a shared secret by design of RFC 8555 §7.3.4: the server must hold it
    # to verify the binding's MAC, so it is stored as is (a digest could not verify anything).
    hmac_key: Mapped[bytes] = mapped_column(LargeBinary)
    # The delegate the key (and the account it binds) acts for. A key made for one delegation
    # (``tnca eab create --delegation ID``) also names it; None on rows made before delegates
    # were recorded, whose delegate is their delegation's.
    delegate: Mapped[Optional[str]] = mapped_column(String(255), index=True)
    delegation_id: Mapped[Optional[str]] = mapped_column(ForeignKey("delegations.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[Optional[str]] = mapped_column(String(255))
    # An unused key stops working at expires_at (None: never) or when revoked.
    expires_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    revoked_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    bound_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)


class RateLimitCounter(Base):
    """How many times one key did one rate-limited thing in one fixed window
    (``ca.records.rate_limits``): one row per (limit, key, window), incremented by an upsert so
    every process and host shares the count; rows of past windows are pruned."""

    __tablename__ = "rate_limit_counters"

    limit_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # An account id, a delegate name, a client address, a login name (at most 255 characters;
    # longer keys are hashed by ca.records.rate_limits).
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    window_start: Mapped[dt.datetime] = mapped_column(UTCDateTime, primary_key=True)
    window_end: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    # Whether reaching the limit in this window is in the audit trail (once per window).
    audited: Mapped[bool] = mapped_column(Boolean, default=False)


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
    # The finalize holding this order "processing" (ca/orders/recovery.py): host, process and a
    # random part, and when it claimed it. A finalize commits "valid" only while its claim still
    # stands; a claim whose process died is reconciled (valid if its certificate exists, else ready).
    processing_claim: Mapped[Optional[str]] = mapped_column(String(160))
    processing_since: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
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


class SpentNonce(Base):
    """An RFC 8555 §6.5 nonce that a request has used, kept until it would have expired: the
    nonces themselves are issued without a row (``acme_server/nonces.py``), and this table is what
    every server process checks a presented one against."""

    __tablename__ = "spent_nonces"

    value: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class ServerSecret(Base):
    """A secret every server process on this database shares, made by the first that needs it
    (the nonces' MAC key, ``acme_server/nonces.py``)."""

    __tablename__ = "server_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


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
