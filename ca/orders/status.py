"""RFC 8555 §7.1.6 status changes of orders, authorizations and challenges, in one place.

::

    order:          pending → ready → processing → valid
                        └──────┴──────────┴──────→ invalid   (error, failed or expired authz)
                    valid → canceled                        (STAR, RFC 8739 §3.1.2)
    authorization:  pending → valid | invalid;  valid → deactivated | expired | revoked;
                    pending → expired | deactivated
    challenge:      pending → valid | invalid   (tkauth-01 is a token check: no "processing",
                                                 no retries; RFC 8555 erratum 5732)

Expiry is applied lazily: whenever a front end loads an order or authorization it calls
:func:`expire_order`, which moves what has passed its ``expires`` to its final state before the
object is rendered or acted on. The caller commits.

An order's ``error`` is an RFC 7807 problem document with an ACME error type (the column's form,
``ca/records/store.py``), written here as a plain dict by :func:`problem`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ca.records.models_acme import Authorization, Order
from ca.records.statuses import AuthorizationStatus, OrderStatus

# RFC 8555 §6.7: "urn:ietf:params:acme:error:" followed by the error type.
ACME_ERROR_NAMESPACE = "urn:ietf:params:acme:error:"
# A finalize that never completed (the process died between "processing" and "valid") and that
# ca/orders/recovery.py did not reconcile first (an order claimed before claims were recorded) is
# given up this long after the order's expiry; the certificate and the order's "valid" are written
# in one transaction, so nothing can have been issued for it.
PROCESSING_GRACE = dt.timedelta(minutes=10)




# Authorization states after which an order can never become ready (RFC 8555 §7.1.6).
_FINAL_UNUSABLE = frozenset({AuthorizationStatus.INVALID, AuthorizationStatus.DEACTIVATED,
                             AuthorizationStatus.EXPIRED, AuthorizationStatus.REVOKED})
# Orders and authorizations that expire when their ``expires`` passes.
_EXPIRING_ORDERS = (OrderStatus.PENDING, OrderStatus.READY)
_EXPIRING_AUTHORIZATIONS = (AuthorizationStatus.PENDING, AuthorizationStatus.VALID)


def problem(error_type: str, detail: str) -> dict[str, Any]:
    """An order's or challenge's ``error``: a problem document of ACME error ``error_type``."""
    return {"type": ACME_ERROR_NAMESPACE + error_type, "detail": detail}


def expire_order(order: Order, now: dt.datetime) -> bool:
    """Apply expiry (:func:`apply_expiry`) and give up a finalize that never completed
    (:data:`PROCESSING_GRACE`). Returns True when something changed; the caller commits."""
    changed = apply_expiry(order, now)
    if order.status == OrderStatus.PROCESSING and order.expires + PROCESSING_GRACE <= now:
        invalidate_order(order, problem("serverInternal", "issuance did not complete; create a new order"))
        changed = True
    return changed


def apply_expiry(order: Order, now: dt.datetime) -> bool:
    """Move an order and its authorizations past their ``expires`` to their final state.

    Returns True when something changed. RFC 8555 §7.1.6: an order that expires before it is
    finalized becomes invalid; an authorization past ``expires`` becomes expired.
    """
    changed = False
    for authz in order.authorizations:
        if authz.status in _EXPIRING_AUTHORIZATIONS and authz.expires <= now:
            authz.status = AuthorizationStatus.EXPIRED
            changed = True
    if order.status in _EXPIRING_ORDERS and order.expires <= now:
        invalidate_order(order, problem("malformed", f"order expired at {order.expires.isoformat()} before it was finalized"))
        return True
    if changed:
        update_order_from_authorizations(order)
    return changed


def update_order_from_authorizations(order: Order) -> None:
    """RFC 8555 §7.1.6: all authorizations valid → ready; one in a final unusable state → invalid."""
    if order.status not in _EXPIRING_ORDERS:
        return
    statuses = [authz.status for authz in order.authorizations]
    failed = [authz for authz in order.authorizations if authz.status in _FINAL_UNUSABLE]
    if failed:
        invalidate_order(order, authorization_problem(failed[0]))
    elif statuses and all(status == AuthorizationStatus.VALID for status in statuses):
        order.status = OrderStatus.READY
    else:
        order.status = OrderStatus.PENDING


def authorization_problem(authz: Authorization) -> dict[str, Any]:
    """The ``error`` of an order one of whose authorizations failed (RFC 8555 §7.1.3, §7.1.6).

    An authorization that failed its challenge carries that challenge's problem (its type, say
    ``unauthorized`` for a refused token, and its detail): the order reports it, prefixed with
    the authorization, so a client reading only the order learns why. An authorization that is
    deactivated, expired or revoked has no problem of its own; the order says which state it is in.
    """
    failures = [challenge.error for challenge in authz.challenges if challenge.error]
    if authz.status == AuthorizationStatus.INVALID and failures:
        error = failures[-1]
        return {"type": error["type"], "detail": f"authorization {authz.id} is invalid: {error.get('detail', '')}"}
    return problem("malformed", f"authorization {authz.id} is {authz.status}")


def invalidate_order(order: Order, error: dict[str, Any]) -> None:
    """The order becomes ``invalid`` with ``error`` (a problem document, :func:`problem`)."""
    order.status = OrderStatus.INVALID
    order.error = error


def deactivate_authorization(authz: Authorization) -> None:
    """RFC 8555 §7.5.2: the client gives up an authorization; its order can no longer be used."""
    authz.status = AuthorizationStatus.DEACTIVATED
    update_order_from_authorizations(authz.order)
