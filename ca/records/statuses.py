"""The states of what the authority records, as ``enum.StrEnum``\\ s equal to the strings stored,
so a status compares, serializes and is stored as the plain word it names.

Orders, authorizations and challenges follow RFC 8555 §7.1.6 (their transitions are
``ca/orders/status.py``); an order may also be ``canceled`` (RFC 8739 §3.1.2). A delegation is
active or revoked; a certificate row goes through its issuance stages (``ca/issuing/issuance.py``).
"""

from __future__ import annotations

import enum


class OrderStatus(enum.StrEnum):
    """RFC 8555 §7.1.6, plus RFC 8739 §3.1.2 "canceled"."""

    PENDING = "pending"
    READY = "ready"
    PROCESSING = "processing"
    VALID = "valid"
    INVALID = "invalid"
    CANCELED = "canceled"


class AuthorizationStatus(enum.StrEnum):
    PENDING = "pending"
    VALID = "valid"
    INVALID = "invalid"
    DEACTIVATED = "deactivated"
    EXPIRED = "expired"
    REVOKED = "revoked"


class ChallengeStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"  # never used by tkauth-01 (ca/orders/status.py)
    VALID = "valid"
    INVALID = "invalid"


class DelegationStatus(enum.StrEnum):
    """Whether a delegation grants anything; an ended one (past ``not_after``) stays ``active``."""

    ACTIVE = "active"
    REVOKED = "revoked"


class CertificateStage(enum.StrEnum):
    """A certificate row: the serial and precertificate recorded before any log sees them, then
    issued, or failed (the logs did not answer, a lint refused the final certificate)."""

    PRECERTIFICATE = "precertificate"
    ISSUED = "issued"
    FAILED = "failed"
