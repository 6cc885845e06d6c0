"""What every resource handler shares: the objects the signing account owns, loaded with expiry
applied (RFC 8555 §7.1.6), and the name the audit log gives the account."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload

from acme_server.acme import problems
from acme_server.observability import note
from acme_server.state import current_state
from ca.orders import recovery
from ca.orders.status import expire_order
from ca.records.models_acme import Account, Authorization, Order
from ca.records.statuses import OrderStatus


def actor(account: Account) -> str:
    """The audit log's name for what an ACME account does."""
    return f"acme:account:{account.id}"


# One statement: the order and its authorizations joined (a selectin load was a second one).
# Built once, so a request only binds the id (a statement built per call is keyed per call).
_ORDER_WITH_AUTHORIZATIONS = (select(Order).options(joinedload(Order.authorizations))
                              .where(Order.id == bindparam("order_id")))


def owned_order(session: Session, account: Account, order_id: str, *, now: dt.datetime) -> Order:
    """The order, if ``account`` owns it; an abandoned finalize reconciled, expiry applied, both
    committed (RFC 8555 §7.1.6)."""
    order = session.execute(_ORDER_WITH_AUTHORIZATIONS, {"order_id": order_id}).unique().scalar_one_or_none()
    if order is None:
        raise problems.malformed(f"no order {order_id[:64]!r}", status=404)
    if order.account_id != account.id:
        raise problems.unauthorized(f"order {order.id} belongs to another account")
    # A finalize whose process died left it "processing": reconciled now (ca/orders/recovery.py).
    if order.status == OrderStatus.PROCESSING and recovery.reconcile(session, order, clock=current_state().clock):
        session.commit()
    note(order=order.id)
    if expire_order(order, now):
        session.commit()
    return order


def owned_authorization(session: Session, account: Account, authz: Authorization | None, what: str, *,
                        now: dt.datetime) -> Authorization:
    """``authz`` (None when it does not exist; ``what`` names it), if ``account`` owns it; its
    order's expiry applied and committed."""
    if authz is None:
        raise problems.malformed(f"no {what}", status=404)
    if authz.account_id != account.id:
        raise problems.unauthorized(f"{what} belongs to another account")
    note(order=authz.order_id)
    if expire_order(authz.order, now):
        session.commit()
    return authz
