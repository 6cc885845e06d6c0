"""Stopping STAR auto-renewal orders (RFC 8739 §3.1.2), and reading the state of one.

A STAR order stops renewing when its end is reached (it stays ``valid``, §3.3), when the client
cancels it (§3.1.2), when an operator cancels it, when its account is deactivated, or when
issuance refuses for good (the delegation revoked or ended, the CSR no longer acceptable:
``ca.orders.finalize.classify_failure``): those make it ``canceled``. :func:`cancel` is the one
function that does it, and an order stopped by the authority carries an ``autoRenewalCanceled``
problem in its ``error`` saying why (the column holds an RFC 7807 problem document,
``ca/records/store.py``). :func:`cancel_unauthorized` cancels the orders whose delegation is no
longer active, once per worker tick.

The schedule of an order is ``ca/lifecycle/star_schedule.py``; the worker that issues each next
certificate is ``ca/lifecycle/renewal_worker.py``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, inspect, select, update
from sqlalchemy.orm import Session, sessionmaker

from ca.errors import AutoRenewalError
from ca.orders.status import ACME_ERROR_NAMESPACE
from ca.records.statuses import CertificateStage, DelegationStatus, OrderStatus
from ca.records import audit
from ca.records.models_acme import Authorization, Order
from ca.records.models_authority import Certificate, Delegation

if TYPE_CHECKING:
    from ca.clock import Clock

log = logging.getLogger("tnca.renewal")

# Who the audit log names for what the authority does to STAR orders by itself (renewals, and
# cancellations of orders whose delegation died).
RENEWAL_ACTOR = "system:star-renewal"
# The audit action of a cancellation.
AUDIT_ACTION_CANCEL = "order.cancel"
# RFC 8739 §5 (IANA): the problem type a canceled order's star-certificate answers with; stored
# in Order.error when the authority, not the client, stopped the order.
AUTO_RENEWAL_CANCELED = ACME_ERROR_NAMESPACE + "autoRenewalCanceled"

# Who stopped an order (the audit event's "by").
CANCELED_BY_CLIENT = "client"
CANCELED_BY_OPERATOR = "operator"
CANCELED_BY_ACCOUNT = "account-deactivation"
CANCELED_BY_AUTHORITY = "authority"


# --------------------------------------------------------------------------------------------
# Reading an order's state
# --------------------------------------------------------------------------------------------



def current_certificate(session: Session, order_id: str) -> Certificate | None:
    """The order's newest issued certificate: what its star-certificate URL serves."""
    return session.scalars(
        select(Certificate)
        .where(Certificate.order_id == order_id, Certificate.stage == CertificateStage.ISSUED)
        .order_by(Certificate.id.desc())
        .limit(1)
    ).first()



def star_orders_under(session: Session, delegation_id: str) -> list[Order]:
    """The valid STAR orders whose authorization was validated under ``delegation_id`` (the ones a
    revocation of that delegation must cancel)."""
    return list(
        session.scalars(
            select(Order)
            .join(Authorization, Authorization.order_id == Order.id)
            .where(Authorization.delegation_id == delegation_id, Order.status == OrderStatus.VALID,
                   Order.auto_renewal.is_not(None))
            .order_by(Order.created_at)
        )
    )


# --------------------------------------------------------------------------------------------
# Cancellation (RFC 8739 §3.1.2)
# --------------------------------------------------------------------------------------------


def cancel(
    session: Session,
    order: Order,
    *,
    actor: str,
    by: str,
    clock: "Clock",
    reason: str | None = None,
) -> Order:
    """Make a valid STAR order ``canceled``: no certificate is issued for it once this commits.

    ``by`` is :data:`CANCELED_BY_CLIENT`, ``_OPERATOR``, ``_ACCOUNT`` or ``_AUTHORITY``; anything
    but the client's own cancellation records ``reason`` as an ``autoRenewalCanceled`` problem in
    the order's ``error`` so the client learns why. The status change is one conditional UPDATE,
    the first statement of its transaction when the caller has just committed or rolled back
    (SQLite cannot upgrade a stale read snapshot to a write): it waits for a renewal in progress
    to commit (the worker holds the order's row) and matches only a valid STAR order, so two
    cancellations cannot both succeed. Raises AutoRenewalError (nothing written) when the order
    is not an auto-renewal order or not ``valid``. Appends an ``order.cancel`` audit event; the
    caller commits.
    """
    # The identity key needs no SELECT, even when the caller's rollback expired ``order``.
    (order_id,) = inspect(order).identity
    now = clock.now()
    values: dict[str, Any] = {
        "status": OrderStatus.CANCELED,
        # RFC 8739 §3.1.2: the server "MUST set an appropriate 'expires' date": the order's
        # auto-renewal ended now.
        "expires": now,
        "next_renewal_at": None,
        "renewal_claim": None,
    }
    if by != CANCELED_BY_CLIENT:
        values["error"] = {"type": AUTO_RENEWAL_CANCELED, "detail": reason or f"order {order_id} was canceled by the {by}"}
    result = session.execute(
        update(Order)
        .where(Order.id == order_id, Order.status == OrderStatus.VALID, Order.auto_renewal.is_not(None))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.refresh(order)
        if not order.auto_renewal:
            raise AutoRenewalError(f"order {order_id} is not an auto-renewal (STAR) order", field="order")
        raise AutoRenewalError(
            f"order {order_id} is {order.status}; only a valid auto-renewal order can be canceled (RFC 8739 §3.1.2)",
            field="order",
        )
    session.refresh(order)
    current = current_certificate(session, order.id)
    audit.append(
        session,
        actor=actor,
        action=AUDIT_ACTION_CANCEL,
        subject_type="order",
        subject_id=order.id,
        details={
            "by": by,
            "reason": reason,
            "account_id": order.account_id,
            "certificates_issued": session.scalar(
                select(func.count()).select_from(Certificate).where(
                    Certificate.order_id == order.id, Certificate.stage == CertificateStage.ISSUED
                )
            ),
            # The last certificate stays valid until its notAfter (RFC 8739 §3.3: a
            # cancellation is fully effective when the published certificate expires).
            "current_serial": current.serial if current is not None else None,
            "current_not_after": current.not_after.isoformat() if current is not None else None,
        },
        clock=clock,
    )
    return order



def cancel_unauthorized(session_factory: sessionmaker, *, clock: "Clock", limit: int = 100) -> list[str]:
    """Cancel the valid STAR orders whose delegation is no longer active (revoked, or past its
    end): the certificate they serve stays, but none follows it. Returns the canceled order ids.

    A delegation revocation that cancels its STAR orders in its own transaction makes this a
    no-op; run each tick, it bounds how long any other path to a dead delegation can leave an
    order looking alive to one tick, instead of until its next renewal.
    """
    now = clock.now()
    with session_factory() as session:
        stale = session.execute(
            select(Order.id, Delegation.id, Delegation.status, Delegation.not_after)
            .join(Authorization, Authorization.order_id == Order.id)
            .join(Delegation, Delegation.id == Authorization.delegation_id)
            .where(
                Order.status == OrderStatus.VALID,
                Order.auto_renewal.is_not(None),
                Order.next_renewal_at.is_not(None),
                (Delegation.status != DelegationStatus.ACTIVE) | (Delegation.not_after <= now),
            )
            .order_by(Order.next_renewal_at)
            .limit(limit)
        ).all()
    canceled = []
    for order_id, delegation_id, status, not_after in stale:
        why = (f"delegation {delegation_id} is {status}" if status != DelegationStatus.ACTIVE
               else f"delegation {delegation_id} ended at {not_after.isoformat()}")
        with session_factory() as session:
            order = session.get(Order, order_id)
            session.commit()  # end the read: cancel() begins with its UPDATE
            try:
                cancel(session, order, actor=RENEWAL_ACTOR, by=CANCELED_BY_AUTHORITY, clock=clock,
                       reason=f"auto-renewal stopped: {why}")
            except AutoRenewalError:  # canceled meanwhile (by the client, or another worker)
                continue
            session.commit()
        log.warning("STAR order %s canceled: %s", order_id, why)
        canceled.append(order_id)
    return canceled
