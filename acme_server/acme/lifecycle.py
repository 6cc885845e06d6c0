"""RFC 8555 §7.1.6 status changes of orders, authorizations and challenges, in one place.

::

    order:          pending → ready → processing → valid
                        └──────┴──────────┴──────→ invalid   (error, failed or expired authz)
    authorization:  pending → valid | invalid;  valid → deactivated | expired | revoked;
                    pending → expired | deactivated
    challenge:      pending → valid | invalid   (tkauth-01 is a token check: no "processing",
                                                 no retries; RFC 8555 erratum 5732)

Expiry is applied lazily: whenever a handler loads an order or authorization it calls
:func:`apply_expiry`, which moves what has passed its ``expires`` to its final state before the
object is rendered or acted on. The caller commits.
"""

from __future__ import annotations

import datetime as dt

from acme_server.acme.problems import AcmeProblem, malformed
from ca.records.models_acme import Authorization, Order

# Authorization states after which an order can never become ready (RFC 8555 §7.1.6).
_FINAL_UNUSABLE = frozenset({"invalid", "deactivated", "expired", "revoked"})


def apply_expiry(order: Order, now: dt.datetime) -> bool:
    """Move an order and its authorizations past their ``expires`` to their final state.

    Returns True when something changed. RFC 8555 §7.1.6: an order that expires before it is
    finalized becomes invalid; an authorization past ``expires`` becomes expired.
    """
    changed = False
    for authz in order.authorizations:
        if authz.status in ("pending", "valid") and authz.expires <= now:
            authz.status = "expired"
            changed = True
    if order.status in ("pending", "ready") and order.expires <= now:
        invalidate_order(order, malformed(f"order expired at {order.expires.isoformat()} before it was finalized"))
        return True
    if changed:
        update_order_from_authorizations(order)
    return changed


def update_order_from_authorizations(order: Order) -> None:
    """RFC 8555 §7.1.6: all authorizations valid → ready; one in a final unusable state → invalid."""
    if order.status not in ("pending", "ready"):
        return
    statuses = [authz.status for authz in order.authorizations]
    failed = [authz for authz in order.authorizations if authz.status in _FINAL_UNUSABLE]
    if failed:
        authz = failed[0]
        invalidate_order(order, malformed(f"authorization {authz.id} is {authz.status}"))
    elif statuses and all(status == "valid" for status in statuses):
        order.status = "ready"
    else:
        order.status = "pending"


def invalidate_order(order: Order, problem: AcmeProblem) -> None:
    order.status = "invalid"
    order.error = problem.to_json(top_level=False)


def deactivate_authorization(authz: Authorization) -> None:
    """RFC 8555 §7.5.2: the client gives up an authorization; its order can no longer be used."""
    authz.status = "deactivated"
    update_order_from_authorizations(authz.order)
