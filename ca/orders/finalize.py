"""finalize (RFC 8555 §7.4) after the CSR is decoded, and the one function that issues for an order.

:func:`issue_for_order` builds the :class:`~ca.issuing.issuance.IssuanceRequest` of an order
(:func:`issuance_request`: scope from the order, kind from the CSR, delegation from the
authorization, the validity window the caller computed) and runs the issuance pipeline
(``ca.issuing.issuance.issue``). Both front ends that issue for orders call it: ACME finalize
(:func:`finalize`, the first certificate) and the STAR worker
(``ca/lifecycle/renewal_worker.py``, each renewal); both refuse a key revoked for keyCompromise
(:func:`check_key_not_compromised`). :func:`classify_failure` is the one place
that says what an issuance failure means for the order: the CSR is at fault, the authority
refuses for good, or the trouble is transient.

:func:`finalize` runs, in the order RFC 8555 §7.4 and RFC 9448 §6 give: the order is ``ready``;
the CSR's basicConstraints agree with the token's ``ca`` (§6 step 9); the order is claimed
(``processing``, one conditional UPDATE, so exactly one of two concurrent finalizes passes);
the certificate is issued; the order becomes ``valid``. A STAR order (RFC 8739) keeps its CSR
(§2.2: renewals reuse it) and is scheduled for the worker.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import time
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from ca.errors import (
    BadPublicKeyError,
    ClaimConstraintsError,
    CSRError,
    DelegationError,
    IssuanceError,
    OrderNotReadyError,
    PolicyError,
    ScopeError,
    TNCAError,
)
from ca import metrics
from ca.issuing.issuance import IssuanceRequest, IssuedCertificate, issue
from ca.issuing.profiles import DELEGATE_CA, END_ENTITY
from ca.lifecycle.reasons import CRLReason
from ca.lifecycle.star_schedule import auto_renewal_of, first_window, schedule_after
from ca.numbers.tnauthlist import TNScope
from ca.orders import recovery
from ca.orders.authority import Authority
from ca.orders.domains import order_domain, tn_authorization
from ca.orders.status import invalidate_order
from ca.records.statuses import CertificateStage, OrderStatus
from ca.records.models_acme import Order
from ca.records.models_authority import Certificate, Revocation
from ca.x509util import MALFORMED_X509_ERRORS, spki_der


class IssuanceFailure(enum.StrEnum):
    """What an issuance failure means for its order (:func:`classify_failure`)."""

    CSR = "csr"  # the CSR is at fault: ACME keeps the order "ready" for a better one (RFC 8555 §7.4)
    REFUSED = "refused"  # refused for good: the delegation, the scope or the policy says no
    TRANSIENT = "transient"  # the authority's own trouble (a log down, an HSM busy): try again later


def classify_failure(error: TNCAError) -> IssuanceFailure:
    """The one decision on an issuance failure, for ACME finalize and the STAR worker alike.

    The CSR's own faults are ``CSRError`` and the policy's or the scope's objections to a part of
    the CSR (field ``csr…``: its key type, its TNAuthList). A ``ClaimConstraintsError`` is the
    delegation's stored constraints: nothing a retry mends. Everything else that ``issue`` raises
    (``TransparencyError``, ``SignerError``, ``IssuanceError``) is the authority's own trouble.
    """
    field = error.field or ""
    if isinstance(error, CSRError) or (isinstance(error, (PolicyError, ScopeError)) and field.startswith("csr")):
        return IssuanceFailure.CSR
    if isinstance(error, (DelegationError, ScopeError, PolicyError, ClaimConstraintsError)):
        return IssuanceFailure.REFUSED
    return IssuanceFailure.TRANSIENT


def csr_requests_ca(csr: x509.CertificateSigningRequest) -> bool:
    """The cA boolean of the CSR's basicConstraints request; absent means False (RFC 5280 §4.2.1.9)."""
    try:
        extension = csr.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    except MALFORMED_X509_ERRORS as exc:
        raise CSRError(f"CSR extensions cannot be parsed: {exc}", field="csr.extensions") from exc
    return extension.value.ca


def issuance_request(order: Order, csr: x509.CertificateSigningRequest, *, not_before: dt.datetime | None,
                     not_after: dt.datetime | None, actor: str) -> IssuanceRequest:
    """The issuance request of one certificate of ``order`` for ``csr``, valid from ``not_before``
    to ``not_after`` (each capped by ``issue`` as for any certificate)."""
    authz = tn_authorization(order)
    return IssuanceRequest(
        csr=csr,
        scope=TNScope.from_der(order.scope_der),
        kind=DELEGATE_CA if csr_requests_ca(csr) else END_ENTITY,
        delegation_id=authz.delegation_id,
        constraints=None,  # the delegation's claim constraints (ca/issuing/issuance.py)
        # tn-domain-binding: the domain proven by http-01/dns-01 in this same order, if any.
        domain=order_domain(order),
        not_before=not_before,
        not_after=not_after,
        account_id=order.account_id,
        order_id=order.id,
        actor=actor,
    )


def issue_for_order(
    session: Session,
    authority: Authority,
    order: Order,
    csr: x509.CertificateSigningRequest,
    *,
    not_before: dt.datetime | None,
    not_after: dt.datetime | None,
    actor: str,
    precertificate_recorded: Callable[[], None],
) -> IssuedCertificate:
    """Issue one certificate of ``order`` through the issuance pipeline. ``precertificate_recorded``
    commits the precertificate row before any log sees it (RFC 6962 §3.1 via
    ``ca/issuing/issuance.py``). Raises what ``issue`` raises; :func:`classify_failure` says what
    that means for the order."""
    check_key_not_compromised(session, csr)
    request = issuance_request(order, csr, not_before=not_before, not_after=not_after, actor=actor)
    issued = issue(
        session,
        request,
        issuer=authority.issuing_ca(),
        policy=authority.policy,
        clock=authority.clock,
        transparency=authority.transparency(),
        precertificate_recorded=precertificate_recorded,
    )
    if order.not_after is not None and issued.certificate.not_valid_after_utc != order.not_after:
        # Checked at newOrder and at the challenge; reaching this is a bug, and issuing
        # something other than what was ordered is not an option (RFC 8555 §7.4).
        raise IssuanceError(
            f"issuance produced notAfter {issued.certificate.not_valid_after_utc.isoformat()} instead of the "
            f"ordered {order.not_after.isoformat()}"
        )
    return issued


def _csr_spki(csr: x509.CertificateSigningRequest) -> bytes | None:
    """The DER SubjectPublicKeyInfo of the CSR's key; None when it cannot be read (issue()
    reports that as a CSRError)."""
    try:
        return spki_der(csr.public_key())
    except Exception:  # noqa: BLE001 - unsupported algorithms and malformed keys raise several types
        return None


# The statements every finalize makes, built once: a statement object keeps its cache key, and
# the claim's updates go to the table, not through the ORM's bulk-update machinery. Each runs
# after a flush, so the session's pending changes are written first, as session.execute would.
_COMPROMISED_KEY = (
    select(Certificate.serial)
    .join(Revocation, Revocation.certificate_id == Certificate.id)
    .where(Certificate.spki_sha256 == bindparam("spki_sha256"), Revocation.reason_code == CRLReason.KEY_COMPROMISE)
    .limit(1)
)
_ORDERS = Order.__table__
_CLAIM = (update(_ORDERS)
          .where(_ORDERS.c.id == bindparam("order_id"), _ORDERS.c.status == OrderStatus.READY)
          .values(status=OrderStatus.PROCESSING, processing_claim=bindparam("claim"),
                  processing_since=bindparam("since")))
_RELEASE_CLAIM = (update(_ORDERS)
                  .where(_ORDERS.c.id == bindparam("order_id"), _ORDERS.c.status == OrderStatus.PROCESSING,
                         _ORDERS.c.processing_claim == bindparam("claim"))
                  .values(processing_claim=None, processing_since=None))


def check_key_not_compromised(session: Session, csr: x509.CertificateSigningRequest) -> None:
    """BadPublicKeyError if a certificate of the CSR's key was revoked for keyCompromise
    (RFC 5280 §5.3.1): that key is known to be in someone else's hands, whoever asks now."""
    spki = _csr_spki(csr)
    if spki is None:
        return
    digest = hashlib.sha256(spki).hexdigest()
    serial = session.scalar(_COMPROMISED_KEY, {"spki_sha256": digest})
    if serial is not None:
        raise BadPublicKeyError(
            f"the CSR's public key is that of certificate {serial}, revoked for keyCompromise (RFC 5280 §5.3.1); "
            "a compromised key is not certified again: generate a new key",
            field="csr.public_key",
        )


def check_ready(order: Order) -> None:
    """RFC 8555 §7.4: only a ``ready`` order can be finalized (OrderNotReadyError)."""
    if order.status != OrderStatus.READY:
        raise OrderNotReadyError(
            f"order {order.id} is {order.status}; only a 'ready' order (every authorization valid) can be finalized",
            field="status",
        )


def finalize(session: Session, authority: Authority, order: Order, csr: x509.CertificateSigningRequest, *,
             actor: str, account_key_spki: bytes, csr_key_may_equal_account_key: bool = False) -> IssuedCertificate:
    """Finalize a ready ``order`` with ``csr`` (module docstring). Owns its transactions: it
    commits the ``processing`` claim, the precertificate and the valid order with its
    certificate. On failure it raises a ``ca.errors`` error, any other exception after the claim
    turned into an IssuanceError, and nothing of the issuance is kept but a committed
    precertificate, marked ``failed`` with the reason for the caller to commit (the order stays
    ``ready`` when the error came before the claim,
    ``processing`` after it); the caller records the outcome with :func:`record_failure`, which
    never leaves it ``processing``, and commits. ``account_key_spki`` is the DER
    SubjectPublicKeyInfo of the account's key, which the CSR may not carry (RFC 8555 §11.1)
    unless ``csr_key_may_equal_account_key`` (``tnca.toml`` ``[compat]``).

    Its duration and outcome (issued, or :func:`classify_failure`'s answer) are the
    ``tnca_issuance_duration_seconds`` histogram; an order that is not ready is not an issuance."""
    check_ready(order)
    started = time.perf_counter()
    try:
        issued = _finalize_ready(session, authority, order, csr, actor=actor, account_key_spki=account_key_spki,
                                 csr_key_may_equal_account_key=csr_key_may_equal_account_key)
    except OrderNotReadyError:
        raise
    except TNCAError as error:
        metrics.observe_issuance(classify_failure(error), time.perf_counter() - started)
        raise
    metrics.observe_issuance(metrics.OUTCOME_ISSUED, time.perf_counter() - started)
    return issued


def _finalize_ready(session: Session, authority: Authority, order: Order, csr: x509.CertificateSigningRequest, *,
                    actor: str, account_key_spki: bytes, csr_key_may_equal_account_key: bool) -> IssuedCertificate:
    """:func:`finalize` once the order is ready: the CSR's checks, the claim, the issuance."""
    if not csr_key_may_equal_account_key and _csr_spki(csr) == account_key_spki:
        raise CSRError(
            "the CSR's public key is the account key; RFC 8555 §11.1 requires a different key for the certificate "
            "(an operator whose clients need it can set [compat] csr_key_may_equal_account_key = true in tnca.toml)",
            field="csr.public_key",
        )
    authz = tn_authorization(order)
    csr_ca = csr_requests_ca(csr)
    if csr_ca != bool(authz.token_ca):
        # RFC 9448 §6 step 9: the token's "ca" must match the CSR's basicConstraints cA.
        raise CSRError(
            "CSR asks for a delegate CA certificate (basicConstraints cA=TRUE) but the authority token's 'ca' is false"
            if csr_ca
            else "the authority token's 'ca' is true, so the CSR must ask for a CA certificate (basicConstraints cA=TRUE)",
            field="csr.basicConstraints",
        )
    claim = recovery.new_claim()
    try:
        _claim_processing(session, order, claim, now=authority.clock.now())
        order_id = order.id  # read before a rollback expires the object
        try:
            return _issue_claimed(session, authority, order, csr, actor=actor, claim=claim)
        except OrderNotReadyError:
            session.rollback()  # the claim was lost: the order, and its precertificates, are another finalize's
            raise
        except TNCAError as error:
            session.rollback()
            _fail_unfinished_precertificates(session, order_id, error.detail)
            raise
        except (OperationalError, InterfaceError):
            # The database went away: nothing can be recorded now. The claim is released below,
            # so the next request of this process, or recovery, reconciles the order.
            session.rollback()
            raise
        except Exception as exc:
            # RFC 8555 §7.1.6: "processing" lasts while the certificate is made, never longer. An
            # unexpected exception (a bug, date arithmetic overflowing) becomes an IssuanceError, so
            # the caller's record_failure makes the order "invalid" instead of leaving it claimed.
            session.rollback()
            failure = IssuanceError(f"finalize of order {order_id} failed unexpectedly: {type(exc).__name__}: {exc}")
            _fail_unfinished_precertificates(session, order_id, failure.detail)
            raise failure from exc
    finally:
        recovery.release(claim)


def _issue_claimed(session: Session, authority: Authority, order: Order, csr: x509.CertificateSigningRequest, *,
                   actor: str, claim: str) -> IssuedCertificate:
    """The part of :func:`finalize` after the claim: issue, then the order is ``valid``, committed
    only while ``claim`` still stands (``ca/orders/recovery.py``)."""
    authz = tn_authorization(order)
    # RFC 9447 §7: never later than the token. A requested notAfter was checked against the
    # token at the challenge; without one, the token's exp is the cap.
    not_before = order.not_before
    not_after = order.not_after if order.not_after is not None else authz.token_expires
    auto = auto_renewal_of(order)
    if auto is not None:
        # RFC 8739 §3.5: the first certificate of a STAR order; the worker issues the rest.
        first = first_window(auto, now=authority.clock.now(), end=auto.end(authz.token_expires),
                             minimum=authority.policy.lifetimes.minimum)
        not_before, not_after = first.not_before, first.not_after
    issued = issue_for_order(session, authority, order, csr, not_before=not_before, not_after=not_after,
                             actor=actor, precertificate_recorded=session.commit)
    _keep_claim(session, order, claim, issued)
    order.status = OrderStatus.VALID
    if auto is not None:
        # RFC 8739 §2.2: renewals reuse this CSR. The order now lasts until its auto-renewal
        # ends; the worker (ca/lifecycle/renewal_worker.py) picks it up at next_renewal_at.
        order.csr_der = csr.public_bytes(serialization.Encoding.DER)
        order.expires = auto.end(authz.token_expires)
        order.next_renewal_at = schedule_after(order, issued.certificate.not_valid_after_utc,
                                               now=authority.clock.now(), policy=authority.policy)
    session.commit()
    return issued


def _fail_unfinished_precertificates(session: Session, order_id: str, detail: str) -> None:
    """After a failed issuance for the order (rolled back), mark its precertificate ``failed`` with
    the reason, in the caller's transaction (the caller commits with record_failure). The row was
    committed before any log saw the precertificate; the rollback undid the issuance's own
    marking, which left the row looking unfinished. Only this finalize (it holds the claim) can
    have one unfinished for this order."""
    session.execute(
        update(Certificate)
        .where(Certificate.order_id == order_id, Certificate.stage == CertificateStage.PRECERTIFICATE)
        .values(stage=CertificateStage.FAILED, error=detail)
        .execution_options(synchronize_session=False)
    )


def _keep_claim(session: Session, order: Order, claim: str, issued: IssuedCertificate) -> None:
    """Release ``claim`` in the transaction that stores the certificate, if it still stands (the
    row stays locked until the commit, so recovery cannot take the order in between). A claim
    given up by recovery (``ca/orders/recovery.py``) means the order is another finalize's now:
    nothing of this one is kept but its precertificate, marked failed; OrderNotReadyError."""
    session.flush()
    kept = session.connection().execute(_RELEASE_CLAIM, {"order_id": order.id, "claim": claim})
    if kept.rowcount == 1:
        set_committed_value(order, "processing_claim", None)
        set_committed_value(order, "processing_since", None)
        return
    order_id = order.id
    session.rollback()
    session.execute(
        update(Certificate)
        .where(Certificate.serial == issued.serial, Certificate.stage == CertificateStage.PRECERTIFICATE)
        .values(stage=CertificateStage.FAILED,
                error="the finalize lost its claim on the order (recovered as abandoned) before storing the certificate")
        .execution_options(synchronize_session=False)
    )
    session.commit()
    raise OrderNotReadyError(f"order {order_id} was recovered from an abandoned finalize; fetch it and finalize again",
                             field="status")


def record_failure(order: Order, error: TNCAError, problem: dict[str, Any]) -> None:
    """What a failed finalize leaves: after a CSR fault the order is ``ready`` again, so the client
    can send a better CSR (RFC 8555 §7.4); otherwise it is ``invalid`` with ``problem`` (the
    front end's problem document for ``error``). An OrderNotReadyError leaves the order alone:
    another request has it, or it was never ready. The caller commits."""
    if isinstance(error, OrderNotReadyError):
        return
    order.processing_claim = None
    order.processing_since = None
    if classify_failure(error) is IssuanceFailure.CSR:
        order.status = OrderStatus.READY
    else:
        invalidate_order(order, problem)


def _claim_processing(session: Session, order: Order, claim: str, *, now: dt.datetime) -> None:
    """RFC 8555 §7.1.6: "processing" while the certificate is made. The conditional update lets
    exactly one of two concurrent finalize requests through; committed at once, with ``claim``
    naming this process and request for recovery (``ca/orders/recovery.py``)."""
    session.flush()
    claimed = session.connection().execute(_CLAIM, {"order_id": order.id, "claim": claim, "since": now})
    if claimed.rowcount != 1:
        session.rollback()
        raise OrderNotReadyError(f"order {order.id} is already being finalized", field="status")
    session.commit()
    # The row says "processing" already; keep the object in step without another UPDATE.
    set_committed_value(order, "status", OrderStatus.PROCESSING)
    set_committed_value(order, "processing_claim", claim)
    set_committed_value(order, "processing_since", now)
