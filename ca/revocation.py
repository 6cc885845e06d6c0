"""Revoking certificates: one function every front end calls (ACME revokeCert, operator, cascades).

:func:`revoke_certificate` writes the ``revocations`` row and its audit event in the caller's
transaction; the caller commits. The unique constraint on ``revocations.certificate_id`` is what
makes a certificate revocable once, also between processes racing on it; the check here only
gives the common case a precise error before the insert.

CRL generation builds on the rows written here (``reason_code`` None means "no reasonCode entry":
RFC 5280 §5.3.1 says the reason code SHOULD be absent rather than unspecified(0)).
"""

from __future__ import annotations

import enum

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ca import audit
from ca.clock import Clock
from ca.errors import RevocationError
from ca.store import Certificate, Revocation


class CRLReason(enum.IntEnum):
    """RFC 5280 §5.3.1 CRLReason (value 7 is not used)."""

    UNSPECIFIED = 0
    KEY_COMPROMISE = 1
    CA_COMPROMISE = 2
    AFFILIATION_CHANGED = 3
    SUPERSEDED = 4
    CESSATION_OF_OPERATION = 5
    CERTIFICATE_HOLD = 6
    REMOVE_FROM_CRL = 8
    PRIVILEGE_WITHDRAWN = 9
    AA_COMPROMISE = 10


AUDIT_ACTION_REVOKE = "certificate.revoke"


def revoke_certificate(
    session: Session,
    certificate: Certificate,
    reason: CRLReason | None,
    *,
    actor: str,
    source: str,
    clock: Clock,
    comment: str | None = None,
) -> Revocation:
    """Record the revocation of ``certificate``; returns the flushed ``revocations`` row.

    ``reason`` None or UNSPECIFIED is stored as None (no reasonCode in the CRL, RFC 5280
    §5.3.1). ``source`` says how it happened ("acme", "operator", "delegation", "number").
    Raises RevocationError when the certificate is not an issued one or is already revoked;
    nothing is written then.
    """
    if certificate.stage != "issued":
        raise RevocationError(
            f"certificate {certificate.serial} is a {certificate.stage}, not an issued certificate", field="certificate"
        )
    already = session.scalars(select(Revocation).where(Revocation.certificate_id == certificate.id)).one_or_none()
    if already is not None:
        raise RevocationError(
            f"certificate {certificate.serial} was already revoked at {already.revoked_at.isoformat()}",
            field="certificate",
        )
    now = clock.now()
    reason_code = None if reason in (None, CRLReason.UNSPECIFIED) else int(reason)
    revocation = Revocation(
        certificate_id=certificate.id,
        reason_code=reason_code,
        revoked_at=now,
        actor=actor,
        source=source,
        comment=comment,
    )
    try:
        with session.begin_nested():
            session.add(revocation)
            session.flush()
    except IntegrityError as exc:
        raise RevocationError(f"certificate {certificate.serial} was already revoked", field="certificate") from exc
    audit.append(
        session,
        actor=actor,
        action=AUDIT_ACTION_REVOKE,
        subject_type="certificate",
        subject_id=certificate.serial,
        details={
            "reason_code": reason_code,
            "reason": CRLReason(reason_code).name.lower() if reason_code is not None else None,
            "source": source,
            "comment": comment,
            "revoked_at": now.isoformat(),
        },
        clock=clock,
    )
    return revocation
