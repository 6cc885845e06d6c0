"""Revoking one certificate: who may (RFC 8555 §7.6), which serial, and the ``revocations`` row.

:func:`revoke_certificate` writes the ``revocations`` row and its ``certificate.revoke`` audit
event in the caller's transaction; the caller commits. The unique constraint on
``revocations.certificate_id`` is what makes a certificate revocable once, also between
processes racing on it; the check here only gives the common case a precise error before the
insert.

Every front end reaches it through a plan (:mod:`ca.lifecycle.revocation`: preview, then execute
that same plan), so it stands apart as the one step each plan repeats per certificate, together
with what identifies that certificate (:func:`normalize_serial`) and who besides its account may
ask (:func:`authorizations_cover`).
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ca.clock import Clock
from ca.errors import RevocationError
from ca.lifecycle.reasons import CRLReason
from ca.numbers.tnauthlist import TNScope
from ca.records import audit, delegations, store
from ca.records.models_acme import Authorization
from ca.records.models_authority import Certificate, Delegation, Revocation

AUDIT_ACTION_REVOKE = "certificate.revoke"
# RFC 5280 §4.1.2.2: a serial number is at most 20 octets.
_SERIAL = re.compile(r"[0-9a-f]{1,40}")


def normalize_serial(text: str) -> str:
    """A serial as stored (lowercase hex, no leading zeros) from ``0A:1B…``, ``0a1b…`` or ``A1B``."""
    value = text.strip().lower().replace(":", "")
    if value.startswith("0x"):
        value = value[2:]
    if not _SERIAL.fullmatch(value) or int(value, 16) == 0:
        raise RevocationError(
            f"serial {text[:64]!r} is not a positive hexadecimal serial number of at most 20 octets", field="serial"
        )
    return format(int(value, 16), "x")


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
        with store.savepoint(session):
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


def authorizations_cover(session: Session, account_id: str, scope: TNScope, *, now: dt.datetime) -> bool:
    """Whether ``account_id`` holds a valid authorization for all of ``scope`` that the authority
    still honours: unexpired, and validated under a delegation that is active now (RFC 8555 §7.6,
    revocation by an account other than the certificate's).

    An authorization outlives neither its delegation's revocation (which revokes it,
    :func:`ca.records.delegations.execute_revoke`) nor its delegation's end: the numbers may belong to
    another delegate by then, whose certificates the former one must not revoke.
    """
    authorized = session.scalars(
        select(Authorization.scope_der)
        .join(Delegation, Delegation.id == Authorization.delegation_id)
        .where(
            Authorization.account_id == account_id,
            Authorization.status == "valid",
            Authorization.expires > now,
            Delegation.status == delegations.ACTIVE,
            Delegation.not_before <= now,
            or_(Delegation.not_after.is_(None), Delegation.not_after > now),
        )
    )
    return any(TNScope.from_der(der, strict=False).contains(scope) for der in authorized)

