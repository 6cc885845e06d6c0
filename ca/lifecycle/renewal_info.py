"""ACME Renewal Information (RFC 9773): when a delegate should renew a certificate.

Delegate certificates live hours, so the window matters more than for web certificates: a
client that renews too late has no certificate, one that renews too early doubles the load.

**The window** (RFC 9773 §4.2) of a certificate valid for L from notBefore:

- normally ``[notBefore + 2L/3, notBefore + 5L/6]``: renewal in the last third, leaving the last
  sixth (four hours of a 24-hour certificate) for retries before it expires;
- ``[now - 1 min, now]``, entirely in the past, when the certificate must be replaced at once:
  it was revoked, its delegation was revoked, or its delegation now ends before the certificate
  does (an operator shortened it). RFC 9773 §4.2 step 3: a client whose chosen time is in the
  past "attempt[s] renewal immediately". (Renewal under a revoked delegation then fails, which
  is how the delegate learns.)

``Retry-After`` (RFC 9773 §4.3) is a 24th of the validity, between one minute and six hours:
one hour for a 24-hour certificate, so a revoked delegation reaches polling clients within the
hour. §4.3.2 has clients treat values under a minute as a minute.

The certificate is identified as RFC 9773 §4.1 says: its Authority Key Identifier's
keyIdentifier and its serial number; both must match a certificate this authority issued.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from ca.clock import Clock
from ca.errors import NotFoundError
from ca.records.models_authority import Certificate, Delegation, Revocation
from ca.x509util import serial_hex
from ca.records.statuses import CertificateStage, DelegationStatus

# Renew immediately: the window [now - IMMEDIATE_SPAN, now] is in the past (RFC 9773 §4.2).
IMMEDIATE_SPAN = dt.timedelta(minutes=1)
# RFC 9773 §4.3.2: clients treat values under a minute as a minute and over a day as a day.
MIN_RETRY_AFTER = dt.timedelta(minutes=1)
MAX_RETRY_AFTER = dt.timedelta(hours=6)
RETRY_FRACTION = 24  # Retry-After = validity / 24 (clamped)


@dataclasses.dataclass(frozen=True)
class RenewalWindow:
    """An RFC 9773 §4.2 RenewalInfo object plus its Retry-After, and why (for people and logs)."""

    start: dt.datetime
    end: dt.datetime
    retry_after: dt.timedelta
    serial: str
    reason: str  # "normal" | "certificate revoked" | "delegation … revoked" | "delegation … ends …"


def window_for(
    certificate: Certificate,
    *,
    now: dt.datetime,
    revoked: bool,
    delegation: Delegation | None,
) -> RenewalWindow:
    """The window of one certificate row (see the module docstring)."""
    validity = certificate.not_after - certificate.not_before
    retry_after = min(max(validity / RETRY_FRACTION, MIN_RETRY_AFTER), MAX_RETRY_AFTER)
    retry_after = dt.timedelta(seconds=int(retry_after.total_seconds()))
    reason = "normal"
    if revoked:
        reason = "certificate revoked"
    elif delegation is not None and delegation.status != DelegationStatus.ACTIVE:
        reason = f"delegation {delegation.id} {delegation.status}"
    elif delegation is not None and delegation.not_after is not None and delegation.not_after < certificate.not_after:
        reason = f"delegation {delegation.id} ends at {delegation.not_after.isoformat()}, before the certificate"
    if reason != "normal":
        end = now.replace(microsecond=0)
        return RenewalWindow(end - IMMEDIATE_SPAN, end, retry_after, certificate.serial, reason)
    start = certificate.not_before + validity * 2 / 3
    end = certificate.not_before + validity * 5 / 6
    # RFC 9773 §4.2: "end" must follow "start"; whole seconds, as RFC 3339 shows them.
    start, end = start.replace(microsecond=0), end.replace(microsecond=0)
    if end <= start:
        end = start + dt.timedelta(seconds=1)
    return RenewalWindow(start, end, retry_after, certificate.serial, reason)


def renewal_info(session: Session, key_identifier: bytes, serial: int, *, clock: Clock) -> RenewalWindow:
    """The window of the certificate with this AKI keyIdentifier and serial (RFC 9773 §4.1).

    Raises NotFoundError (field "certID") when this authority issued no such certificate.
    """
    record = issued_certificate(session, key_identifier, serial)
    revoked = session.scalar(select(Revocation.id).where(Revocation.certificate_id == record.id)) is not None
    delegation = session.get(Delegation, record.delegation_id) if record.delegation_id is not None else None
    return window_for(record, now=clock.now(), revoked=revoked, delegation=delegation)


def issued_certificate(session: Session, key_identifier: bytes, serial: int) -> Certificate:
    """The certificate an RFC 9773 §4.1 identifier names (renewalInfo, and newOrder's "replaces").

    Raises NotFoundError (field "certID") when this authority issued no such certificate: an
    unknown serial, a precertificate, or a serial of another issuing key.
    """
    if serial <= 0:
        raise NotFoundError("no certificate has a serial number below 1", field="certID")
    record = session.scalars(
        select(Certificate).where(Certificate.serial == serial_hex(serial), Certificate.stage == CertificateStage.ISSUED)
    ).one_or_none()
    if record is None or _authority_key_id(record) != key_identifier:
        raise NotFoundError(
            f"this authority issued no certificate with serial {serial_hex(serial)} under key identifier "
            f"{key_identifier.hex()}",
            field="certID",
        )
    return record


def _authority_key_id(record: Certificate) -> bytes | None:
    certificate = x509.load_der_x509_certificate(record.der)
    try:
        return certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return None
