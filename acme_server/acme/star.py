"""STAR (RFC 8739) on the wire: the ``auto-renewal`` object of newOrder, the directory's
``meta.auto-renewal``, the ``star-certificate`` resource and cancellation.

The schedule is ``ca/lifecycle/star_schedule.py``, the checks ``ca/orders/validity.py`` (the rules
of every order), cancellation ``ca/lifecycle/renewal.py`` and the worker
``ca/lifecycle/renewal_worker.py``; this module parses and renders. A STAR order is an ordinary
order until finalize (one authorization, one ``tkauth-01`` challenge); finalize issues its first
certificate, and from then on the order stays ``valid`` while ``ca.lifecycle.renewal_worker``
publishes the next certificate at the order's ``star-certificate`` URL before the current one
expires.

``star-certificate`` answers POST-as-GET from the ordering account and, when the order
negotiated it (§3.4), a plain unauthenticated GET. It serves the order's newest certificate with
``Cert-Not-Before``/``Cert-Not-After`` (§3.3); a canceled order gets 403 ``autoRenewalCanceled``
(§3.1.2) and one past its end 403 ``autoRenewalExpired`` (§3.3).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Response, g
from sqlalchemy.orm import selectinload
from werkzeug.http import http_date

from acme_server.acme import problems
from acme_server.acme.chains import PEM_CHAIN_CONTENT_TYPE, pem_chain_of
from ca.encoding import EncodingError, parse_rfc3339
from acme_server.acme.owned import actor, owned_order
from acme_server.state import current_state, db_session
from ca.errors import AutoRenewalError
from ca.lifecycle import renewal
from ca.lifecycle.star_schedule import (
    ALLOW_CERTIFICATE_GET,
    END_DATE,
    LIFETIME,
    LIFETIME_ADJUST,
    START_DATE,
    AutoRenewal,
    auto_renewal_of,
    order_end,
)
from ca.records.statuses import OrderStatus
from ca.policy import Policy
from ca.records.models_acme import Order

# The newOrder member (RFC 8739 §3.1.1) and the directory meta member (§3.2).
AUTO_RENEWAL = "auto-renewal"
# RFC 8739 §3.3: HTTP header fields of star-certificate responses.
CERT_NOT_BEFORE = "Cert-Not-Before"
CERT_NOT_AFTER = "Cert-Not-After"


# --------------------------------------------------------------------------------------------
# Directory (RFC 8739 §3.2) and newOrder (§3.1.1)
# --------------------------------------------------------------------------------------------


def directory_meta(policy: Policy) -> dict[str, Any] | None:
    """``meta.auto-renewal``, or None when the policy turns STAR off."""
    max_duration = policy.acme.auto_renewal_max_duration
    if max_duration <= dt.timedelta(0):
        return None
    return {
        "min-lifetime": int(policy.lifetimes.minimum.total_seconds()),
        "max-duration": int(max_duration.total_seconds()),
        "allow-certificate-get": policy.acme.auto_renewal_allow_certificate_get,
    }


def parse_auto_renewal(payload: dict[str, Any], *, policy: Policy) -> AutoRenewal | None:
    """The newOrder ``auto-renewal`` object as this server accepts it, or None for an ordinary order.

    Members this server does not know are ignored, as RFC 8555 §7.4 has servers ignore unknown
    fields. Members it knows must have their RFC 8739 §3.1.1 types. Whether the policy can honour
    it is ``ca.orders.placing``'s question (``ca.orders.validity.check_order_request``).
    """
    if AUTO_RENEWAL not in payload:
        return None
    value = payload[AUTO_RENEWAL]
    if not isinstance(value, dict):
        raise problems.malformed("'auto-renewal' must be an object (RFC 8739 §3.1.1)")
    present = [name for name in ("notBefore", "notAfter") if payload.get(name) is not None]
    if present:
        # RFC 8739 §3.1.1: notBefore/notAfter "MUST NOT be present in a STAR Order" (400; the
        # RFC's "malformedRequest" is not a registered type, see docs/rfc-support.md).
        raise problems.malformed(
            f"a STAR order must not carry {' or '.join(present)}; the auto-renewal object sets the validity of its "
            "certificates (RFC 8739 §3.1.1)"
        )
    return AutoRenewal(
        end_date=_time(value, END_DATE, required=True),
        start_date=_time(value, START_DATE, required=False),
        lifetime=dt.timedelta(seconds=_seconds(value, LIFETIME, required=True)),
        lifetime_adjust=dt.timedelta(seconds=_seconds(value, LIFETIME_ADJUST, required=False)),
        # RFC 8739 §3.4: granted only when the server offers it; the order then shows false,
        # which is how the client learns it was not granted (§3.1.1: the server MAY adjust).
        allow_certificate_get=_boolean(value, ALLOW_CERTIFICATE_GET)
        and policy.acme.auto_renewal_allow_certificate_get,
    )


def _time(value: dict[str, Any], name: str, *, required: bool) -> dt.datetime | None:
    if value.get(name) is None:
        if required:
            raise problems.malformed(f"'auto-renewal' lacks '{name}' (RFC 8739 §3.1.1: required)")
        return None
    try:
        moment = parse_rfc3339(value[name], field=f"auto-renewal.{name}")
    except EncodingError as exc:
        raise problems.malformed(str(exc)) from exc
    # X.509 times have whole seconds (RFC 5280 §4.1.2.5): what the order shows is what is issued.
    return moment.replace(microsecond=0)


def _seconds(value: dict[str, Any], name: str, *, required: bool) -> int:
    raw = value.get(name)
    if raw is None:
        if required:
            raise problems.malformed(f"'auto-renewal' lacks '{name}' (RFC 8739 §3.1.1: required)")
        return 0
    # JSON true is not a number of seconds, although Python counts bool as int.
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0 or (name == LIFETIME and raw == 0):
        kind = "a positive" if name == LIFETIME else "a non-negative"
        raise problems.malformed(f"'auto-renewal.{name}' must be {kind} integer number of seconds, got {raw!r:.40}")
    # Anything above a century is a mistake, and would overflow datetime arithmetic.
    if raw > 100 * 365 * 86400:
        raise problems.malformed(f"'auto-renewal.{name}' of {raw} seconds is out of range")
    return raw


def _boolean(value: dict[str, Any], name: str) -> bool:
    raw = value.get(name, False)
    if not isinstance(raw, bool):
        raise problems.malformed(f"'auto-renewal.{name}' must be true or false, got {raw!r:.40}")
    return raw


# --------------------------------------------------------------------------------------------
# Cancellation (RFC 8739 §3.1.2): POST {"status": "canceled"} to the order URL
# --------------------------------------------------------------------------------------------


def cancel_by_client(order: Order, payload: dict[str, Any]) -> Order:
    """The order resource with a JSON payload: the one change a client may ask is cancellation."""
    if set(payload) != {"status"} or payload["status"] != OrderStatus.CANCELED:
        raise problems.malformed(
            'the only change a client can make to an order is {"status": "canceled"} of a STAR order (RFC 8739 §3.1.2)'
        )
    if not order.auto_renewal:
        raise problems.malformed(
            f"order {order.id} is not an auto-renewal order; only STAR orders can be canceled (RFC 8739 §3.1.2)"
        )
    if order.status != OrderStatus.VALID:
        raise problems.auto_renewal_cancellation_invalid(
            f"order {order.id} is {order.status}; only a valid auto-renewal order can be canceled (RFC 8739 §3.1.2)"
        )
    session, state = db_session(), current_state()
    # End the read transaction first: the cancellation's UPDATE then starts its own, waits for a
    # renewal in progress, and decides on the committed status (ca.lifecycle.renewal.cancel).
    session.commit()
    try:
        renewal.cancel(session, order, actor=actor(g.account), by=renewal.CANCELED_BY_CLIENT, clock=state.clock)
    except AutoRenewalError as error:
        session.rollback()
        raise problems.auto_renewal_cancellation_invalid(error.detail) from error
    session.commit()
    return order


# --------------------------------------------------------------------------------------------
# The star-certificate resource (RFC 8739 §3.3, §3.4)
# --------------------------------------------------------------------------------------------


def star_certificate(order_id: str) -> Response:
    """POST-as-GET by the account that placed the order (RFC 8739 §3.3, RFC 8555 §7.4.2)."""
    order = owned_order(db_session(), g.account, order_id, now=current_state().clock.now())
    return _serve(order, public=False)


def star_certificate_get(order_id: str) -> Response:
    """Unauthenticated GET, for an order that negotiated it (RFC 8739 §3.4)."""
    order = db_session().get(Order, order_id, options=[selectinload(Order.authorizations)])
    if order is None:
        raise problems.malformed(f"no order {order_id[:64]!r}", status=404)
    auto = auto_renewal_of(order)
    if auto is not None and not auto.allow_certificate_get:
        raise problems.unauthorized(
            f"order {order.id} did not negotiate unauthenticated GET (RFC 8739 §3.4: 'allow-certificate-get'); "
            "fetch its star-certificate with POST-as-GET"
        )
    return _serve(order, public=True)


def _serve(order: Order, *, public: bool) -> Response:
    state = current_state()
    now = state.clock.now()
    if not order.auto_renewal:
        raise problems.malformed(f"order {order.id} is not an auto-renewal order; it has no star-certificate", status=404)
    if order.status == OrderStatus.CANCELED:
        detail = (order.error or {}).get("detail") or f"the auto-renewal of order {order.id} was canceled"
        raise problems.auto_renewal_canceled(detail)
    if order.status != OrderStatus.VALID:
        raise problems.malformed(f"order {order.id} is {order.status}; it has no certificate yet", status=404)
    end = order_end(order)
    if end is not None and now >= end:
        raise problems.auto_renewal_expired(
            f"the auto-renewal of order {order.id} ended at {end.isoformat()}; its last certificate has expired"
        )
    session = db_session()
    record = renewal.current_certificate(session, order.id)
    if record is None:  # pragma: no cover - a valid STAR order has its first certificate
        raise problems.malformed(f"order {order.id} has no certificate yet", status=404)
    chain = pem_chain_of(session, record, issuing=state.issuing_ca())
    response = Response(chain, status=200, content_type=PEM_CHAIN_CONTENT_TYPE)
    # RFC 8739 §3.3: "MUST be equal to the respective fields inside the end-entity certificate",
    # as HTTP-dates (RFC 7231 §7.1.1.1).
    response.headers[CERT_NOT_BEFORE] = http_date(record.not_before)
    response.headers[CERT_NOT_AFTER] = http_date(record.not_after)
    if public:
        # RFC 8739 §4.3: caches must consider the response stale no later than the certificate
        # expires; the next certificate replaces it from its publication on.
        fresh_until = min(record.not_after, order.next_renewal_at or record.not_after)
        response.headers["Cache-Control"] = f"public, max-age={max(0, int((fresh_until - now).total_seconds()))}"
    return response
