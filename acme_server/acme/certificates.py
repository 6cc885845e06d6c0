"""Certificate download (RFC 8555 §7.4.2) and revokeCert (RFC 8555 §7.6)."""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import Response, g
from sqlalchemy import bindparam, select

from acme_server.acme import problems
from acme_server.acme.chains import PEM_CHAIN_CONTENT_TYPE, pem_chain_of
from ca.encoding import EncodingError, b64url_decode
from acme_server.acme.keys import AccountKey
from acme_server.acme.owned import actor
from acme_server.state import current_state, db_session
from ca.lifecycle import revocation
from ca.errors import RevocationError
from ca.lifecycle.certificate_revocation import authorizations_cover
from ca.lifecycle.reasons import CRLReason
from ca.records.models_acme import Account, Order
from ca.records.models_authority import Certificate
from ca.numbers.tnauthlist import TNScope
from ca.x509util import MALFORMED_X509_ERRORS, with_names_decoded
from ca.records.statuses import CertificateStage

# RFC 8555 §7.6: the server decides which reasons a subscriber may give. These are the ones that
# describe the subscriber's own situation; cACompromise and aACompromise are the authority's to
# declare, certificateHold/removeFromCRL (suspension) are not supported, and privilegeWithdrawn
# is what revoking a delegation records.
ALLOWED_REASONS = (
    CRLReason.UNSPECIFIED,
    CRLReason.KEY_COMPROMISE,
    CRLReason.AFFILIATION_CHANGED,
    CRLReason.SUPERSEDED,
    CRLReason.CESSATION_OF_OPERATION,
)


# Built once, so a download only binds the serial (a statement built per call is keyed per call).
_ISSUED_BY_SERIAL = select(Certificate).where(Certificate.serial == bindparam("serial"),
                                              Certificate.stage == CertificateStage.ISSUED)


def certificate(serial: str) -> Response:
    """POST-as-GET: the PEM chain, end-entity first, no blank lines (RFC 8555 §7.4.2, erratum 5983)."""
    session = db_session()
    record = session.scalars(_ISSUED_BY_SERIAL, {"serial": serial}).one_or_none()
    if record is None:
        raise problems.malformed(f"no certificate with serial {serial[:64]!r}", status=404)
    if record.account_id != g.account.id:
        raise problems.unauthorized(f"certificate {record.serial} was issued to another account")
    chain = pem_chain_of(session, record, issuing=current_state().issuing_ca())
    return Response(chain, status=200, content_type=PEM_CHAIN_CONTENT_TYPE)


def revoke_cert() -> Response:
    """RFC 8555 §7.6, guard clauses in order: payload → certificate known → authorized → not revoked."""
    state, session = current_state(), db_session()
    payload: dict[str, Any] = g.payload
    try:
        der = b64url_decode(payload.get("certificate"), field="certificate")
        presented = with_names_decoded(x509.load_der_x509_certificate(der))
    except EncodingError as exc:
        raise problems.malformed(str(exc)) from exc
    except MALFORMED_X509_ERRORS as exc:
        raise problems.malformed(f"'certificate' is not a DER X.509 certificate ({exc})") from exc
    reason = _reason(payload.get("reason"))
    record = session.scalars(
        select(Certificate).where(Certificate.fingerprint_sha256 == hashlib.sha256(der).hexdigest())
    ).one_or_none()
    if record is None:
        raise problems.malformed(
            f"certificate with serial {presented.serial_number:x} was not issued by this authority", status=404
        )
    account: Account | None = g.account
    if account is None:
        _authorize_by_certificate_key(record, presented, g.account_key)
        who = "acme:certificate-key"
    else:
        _authorize_by_account(record, account)
        who = actor(account)
    star_order = session.get(Order, record.order_id) if record.order_id is not None else None
    if star_order is not None and star_order.auto_renewal:
        # RFC 8739 §3.1.2: "A server receiving a revocation request for a STAR certificate MUST
        # return an error response with status code 403 (Forbidden)"; cancellation replaces it.
        raise problems.auto_renewal_revocation_not_supported(
            f"certificate {record.serial} belongs to STAR order {star_order.id}; revokeCert is not supported for STAR "
            f'certificates (RFC 8739 §3.1.2): cancel the order instead (POST {{"status": "canceled"}} to '
            f"{current_state().urls.order(star_order.id)}), and the current certificate expires at "
            f"{record.not_after.isoformat()}"
        )
    try:
        # RFC 8555 §7.6: an already revoked certificate is 400 alreadyRevoked (ca.lifecycle.revocation's
        # check, backed by the unique constraint on revocations.certificate_id). The operator's
        # path: one audited transaction, then the issuer's CRL is signed again at once.
        plan = revocation.plan_revoke_certificate(session, record.serial, reason=reason, clock=state.clock)
        revocation.execute(session, plan, actor=who, clock=state.clock, home=state.home, via="acme")
    except RevocationError as exc:
        raise problems.already_revoked(exc.detail) from exc
    return Response(status=200)


def _reason(value: Any) -> CRLReason | None:
    if value is None:
        return None
    # JSON true is not a reason code, although Python counts bool as int.
    if isinstance(value, bool) or not isinstance(value, int):
        raise problems.malformed("'reason' must be an integer CRLReason code (RFC 5280 §5.3.1)")
    allowed = ", ".join(f"{int(r)} ({r.name.lower()})" for r in ALLOWED_REASONS)
    if value not in {int(r) for r in ALLOWED_REASONS}:
        raise problems.bad_revocation_reason(f"revocation reason {value} is not accepted; allowed: {allowed}")
    return CRLReason(value)


def _authorize_by_certificate_key(record: Certificate, presented: x509.Certificate, key: AccountKey) -> None:
    # RFC 8555 §7.6: a request signed by the certificate's own key (jwk = its public key).
    spki = presented.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.spki_der() != spki:
        raise problems.unauthorized("the JWS 'jwk' is not the certificate's public key; sign with that key or with an account ('kid')")


def _authorize_by_account(record: Certificate, account: Account) -> None:
    """RFC 8555 §7.6: the account that obtained it, or one holding authorizations for all of it
    that the authority still honours (``ca.lifecycle.certificate_revocation.authorizations_cover``)."""
    if record.account_id == account.id:
        return
    scope = TNScope.from_der(record.scope_der, strict=False)
    if authorizations_cover(db_session(), account.id, scope, now=current_state().clock.now()):
        return
    raise problems.unauthorized(
        f"account {account.id} neither obtained certificate {record.serial} nor holds valid authorizations for "
        f"{scope.describe()}"
    )
