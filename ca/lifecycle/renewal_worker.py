"""The STAR renewal worker (RFC 8739 §2.2, §3.5): issues each next certificate of the due
auto-renewal orders through the one function that issues for an order
(``ca.orders.finalize.issue_for_order``, which ACME finalize uses for the first certificate).

A failed renewal is judged by ``ca.orders.finalize.classify_failure``: refused for good (or the
stored CSR at fault) cancels the order (``ca.lifecycle.renewal.cancel``); transient trouble (a
log down, an HSM busy) is retried after :data:`RETRY_DELAY`.

**Workers** (:func:`renew_due`; ``tnca worker``). Any number may run against one database:

1. *Claim.* One statement, ``UPDATE orders … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)``,
   stamps the due orders with a random claim and moves their ``next_renewal_at`` past a lease. On
   PostgreSQL a concurrent worker skips rows another one has locked and then finds them no longer
   due; on SQLite (no ``FOR UPDATE``) the database write lock serializes the statement.
2. *Fence.* Each claimed order is renewed in its own transaction, which begins with a
   conditional ``UPDATE`` that matches only while the order is still ``valid`` and still carries
   this worker's claim. It is repeated right after the precertificate row is committed (the
   issuance pipeline commits it before any log sees it), and the lock it takes — the order's row
   on PostgreSQL, the database on SQLite — is held until the certificate is committed. So a
   cancellation either commits before the precertificate reaches a log (and the renewal stops
   there) or waits until the renewal has committed: once a cancellation succeeds, no certificate
   follows it (RFC 8739 §3.1.2). A worker whose lease ran out finds its claim replaced and
   commits nothing.
3. *Schedule.* The certificate, its audit event and the order's next ``next_renewal_at`` are one
   transaction.

**Checkpoints** (:func:`checkpoint_if_due`; each worker tick). The worker also anchors the audit
trail: it signs a checkpoint (the JSON statement and the published C2SP note, both of the same
head) when the trail moved and ``[audit] checkpoint_interval`` passed or
``checkpoint_max_events`` events were added since the last one, and at once when a revocation
was recorded since. The head row's lock makes two workers' checkpoints follow one another.

On SQLite the write lock is held for the CT round trip of one renewal (bounded by the policy's
``[ct] submission_deadline``), during which other writers queue; SQLite is the single-host store,
PostgreSQL the one for several workers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets


from cryptography import x509
from sqlalchemy import func, inspect, select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from ca.errors import AutoRenewalError, TNCAError
from ca.lifecycle.renewal import (
    CANCELED_BY_ACCOUNT,
    CANCELED_BY_AUTHORITY,
    RENEWAL_ACTOR,
    cancel,
    cancel_unauthorized,
    current_certificate,
)
from ca.lifecycle.star_schedule import AutoRenewal, next_window, schedule_after
from ca.orders.authority import Authority
from ca.orders.finalize import IssuanceFailure, classify_failure, issue_for_order
from ca.records.statuses import CertificateStage, OrderStatus
from ca.policy import format_duration
from ca.records.models_acme import Account, Order
from ca.records.models_authority import Certificate
from ca.records import audit_checkpoints, audit_keys
from ca.records.models_audit import AuditCheckpoint

from ca.clock import Clock
from ca.home import Home

log = logging.getLogger("tnca.renewal")

# How long a claim keeps other workers off an order. One renewal takes a signature and one CT
# round trip, bounded by [ct] submission_deadline (seconds); a worker that died is replaced
# after this long.
CLAIM_LEASE = dt.timedelta(minutes=5)
# After a transient failure (too few SCTs, a signer error) the next attempt waits this long.
RETRY_DELAY = dt.timedelta(minutes=1)
# A claim token: 96 random bits, URL-safe (fits Order.renewal_claim).
CLAIM_TOKEN_BYTES = 12


@dataclasses.dataclass(frozen=True)
class Claim:
    order_id: str
    token: str


class _ClaimLost(Exception):
    """The order was canceled, or another worker took it over, while this worker renewed it."""


def claim_due(session_factory: sessionmaker, *, clock: "Clock", limit: int, lease: dt.timedelta = CLAIM_LEASE) -> list[Claim]:
    """Step 1 (module docstring): claim up to ``limit`` due orders, oldest due first; commits."""
    now = clock.now()
    token = secrets.token_urlsafe(CLAIM_TOKEN_BYTES)
    due = (
        select(Order.id)
        .where(Order.status == OrderStatus.VALID, Order.next_renewal_at <= now)
        .order_by(Order.next_renewal_at)
        .limit(limit)
        # PostgreSQL: rows another worker is claiming right now are skipped, not waited for.
        # SQLite renders no FOR UPDATE; its write lock serializes this whole statement.
        .with_for_update(skip_locked=True)
    )
    with session_factory() as session:
        claimed = session.execute(
            update(Order)
            .where(Order.id.in_(due.scalar_subquery()))
            .values(renewal_claim=token, next_renewal_at=now + lease)
            .returning(Order.id)
            .execution_options(synchronize_session=False)
        ).scalars().all()
        session.commit()
    return [Claim(order_id, token) for order_id in sorted(claimed)]


def _fence(session: Session, claim: Claim) -> bool:
    """Step 2: re-take the order's row if it is still valid and still ours. Must be the first
    statement of its transaction (SQLite cannot upgrade a read snapshot that went stale)."""
    result = session.execute(
        update(Order)
        .where(Order.id == claim.order_id, Order.status == OrderStatus.VALID, Order.renewal_claim == claim.token)
        .values(renewal_claim=claim.token)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


@dataclasses.dataclass(frozen=True)
class RenewalResult:
    order_id: str
    outcome: str  # "renewed" | "finished" | "canceled" | "retry" | "lost" | "not-due"
    serial: str | None = None
    detail: str | None = None


def renew_due(session_factory: sessionmaker, home: "Home", *, clock: "Clock", limit: int = 100) -> int:
    """Renew every STAR order that is due now (up to ``limit``); returns how many certificates
    were issued. Safe to run from any number of processes at once (module docstring).

    First cancels the orders whose delegation died (``ca.lifecycle.renewal.cancel_unauthorized``).
    """
    authority = Authority.of_home(home, clock=clock)
    cancel_unauthorized(session_factory, clock=clock, limit=limit)
    renewed = 0
    for claim in claim_due(session_factory, clock=clock, limit=limit):
        try:
            result = renew_claimed(session_factory, authority, claim)
        except Exception:  # a bug or a lost database must not stop the other orders' renewals
            # The claim stands until its lease runs out; then the order is tried again.
            log.exception("renewal of STAR order %s failed; it is retried after the claim lease (%s)",
                          claim.order_id, format_duration(CLAIM_LEASE))
            continue
        renewed += result.outcome == "renewed"
    return renewed


def renew_claimed(session_factory: sessionmaker, authority: Authority, claim: Claim) -> RenewalResult:
    """Issue the next certificate of one claimed order through ``ca.orders.finalize.issue_for_order``
    (with the policy's CT logs), then schedule the one after it."""
    policy, clock = authority.policy, authority.clock
    with session_factory() as session:
        if not _fence(session, claim):
            session.rollback()
            return RenewalResult(claim.order_id, "lost", detail="canceled or claimed by another worker")
        order = session.get(
            Order,
            claim.order_id,
            options=[selectinload(Order.authorizations), selectinload(Order.account)],
            populate_existing=True,
        )
        assert order is not None  # the fence matched its row
        now = clock.now()
        auto = AutoRenewal.from_json(order.auto_renewal)
        end = auto.end(order.authorizations[0].token_expires)
        current = current_certificate(session, order.id)
        account: Account = order.account

        if account.status != "valid":  # accounts: valid | deactivated | revoked
            return _stop(session, order, f"account {account.id} is {account.status}", by=CANCELED_BY_ACCOUNT, clock=clock)
        if current is None or order.csr_der is None:  # pragma: no cover - finalize writes both
            return _stop(session, order, "the order has no certificate to renew", by=CANCELED_BY_AUTHORITY, clock=clock)
        window = next_window(auto, current.not_after, now=now, end=end, minimum=policy.lifetimes.minimum)
        if window is None:
            order.next_renewal_at = None
            order.renewal_claim = None
            session.commit()
            return RenewalResult(order.id, "finished")
        if window.not_before > now:
            # Claimed by a worker whose clock runs ahead of this one: not due here yet.
            order.next_renewal_at = window.not_before
            order.renewal_claim = None
            session.commit()
            return RenewalResult(order.id, "not-due")

        precertificate_ids: list[int] = []

        def precertificate_recorded() -> None:
            # RFC 6962 §3.1 via ca.issuing.issuance: the precertificate is committed before any log sees
            # it; then the order is fenced again, so a cancellation that slipped in between ends
            # the renewal before the precertificate reaches a log.
            precertificate_ids.append(session.scalar(
                select(func.max(Certificate.id)).where(Certificate.order_id == order.id, Certificate.stage == CertificateStage.PRECERTIFICATE)
            ))
            session.commit()
            if not _fence(session, claim):
                raise _ClaimLost()

        try:
            # RFC 8739 §2.2: "using the same CSR" as finalize, which stored it.
            issued = issue_for_order(
                session,
                authority,
                order,
                x509.load_der_x509_csr(order.csr_der),
                not_before=window.not_before,
                not_after=window.not_after,
                actor=RENEWAL_ACTOR,
                precertificate_recorded=precertificate_recorded,
            )
        except _ClaimLost:
            session.rollback()
            _abandon_precertificates(session, precertificate_ids, "the order was canceled before the precertificate was submitted")
            return RenewalResult(claim.order_id, "lost", detail="canceled during the renewal")
        except TNCAError as error:
            if classify_failure(error) is not IssuanceFailure.TRANSIENT:
                # Refused for good: the delegation was revoked or ended, the stored CSR or the
                # scope is no longer acceptable. Nothing was written (these checks come before
                # the precertificate).
                session.rollback()
                return _stop(session, order, f"renewal refused: {error.detail}", by=CANCELED_BY_AUTHORITY, clock=clock)
            # Transient (too few SCTs, a signer error): keep what issue() recorded (a failed
            # precertificate stays for auditors) and try again later.
            session.commit()
            log.warning("renewal of order %s failed, retrying in %s: %s", order.id, format_duration(RETRY_DELAY), error.detail)
            if _fence(session, claim):
                order.next_renewal_at = clock.now() + RETRY_DELAY
                order.renewal_claim = None
            session.commit()
            return RenewalResult(order.id, "retry", detail=error.detail)

        order.next_renewal_at = schedule_after(order, issued.certificate.not_valid_after_utc, now=now, policy=policy)
        order.renewal_claim = None
        session.commit()
        log.info(
            "renewed STAR order %s: certificate %s valid %s – %s, %d SCT(s); next %s",
            order.id, issued.serial, issued.certificate.not_valid_before_utc.isoformat(),
            issued.certificate.not_valid_after_utc.isoformat(), len(issued.scts),
            order.next_renewal_at.isoformat() if order.next_renewal_at else "none (end reached)",
        )
        return RenewalResult(order.id, "renewed", serial=issued.serial)


def _stop(session: Session, order: Order, reason: str, *, by: str, clock: "Clock") -> RenewalResult:
    """End the renewals of an order the authority can no longer renew (module docstring)."""
    (order_id,) = inspect(order).identity
    session.rollback()
    try:
        cancel(session, order, actor=RENEWAL_ACTOR, by=by, clock=clock, reason=reason)
    except AutoRenewalError:  # canceled meanwhile by someone else: the outcome is the same
        session.rollback()
        return RenewalResult(order_id, "lost", detail="canceled meanwhile")
    session.commit()
    log.warning("STAR order %s canceled: %s", order_id, reason)
    return RenewalResult(order_id, "canceled", detail=reason)


def _abandon_precertificates(session: Session, ids: list[int], reason: str) -> None:
    """A precertificate committed for a renewal that then stopped never went to a log."""
    ids = [i for i in ids if i is not None]
    if ids:
        session.execute(
            update(Certificate)
            .where(Certificate.id.in_(ids), Certificate.stage == CertificateStage.PRECERTIFICATE)
            .values(stage=CertificateStage.FAILED, error=reason)
            .execution_options(synchronize_session=False)
        )
        session.commit()


def checkpoint_if_due(home: "Home", *, clock: "Clock") -> AuditCheckpoint | None:
    """Sign a checkpoint of the audit trail when one is due (module docstring); commits it.

    The audit key and its certificate, and the note key, are created on first use."""
    settings = home.config.audit
    signer, _ = audit_keys.ensure_checkpoint_signer(home, clock=clock)
    note_key = audit_keys.note_key(home)
    with home.sessionmaker() as session:
        made = audit_checkpoints.checkpoint_if_due(
            session, signer=signer, clock=clock, interval=settings.checkpoint_interval,
            max_events=settings.checkpoint_max_events, note_key=note_key,
            due_after=audit_checkpoints.REVOCATION_ACTIONS)
        session.commit()
        if made is not None:
            log.info("audit checkpoint %d signed: %d events", made.id, made.seq)
        return made
