"""Helpers of the STAR (RFC 8739) tests: auto-renewal objects, STAR orders placed with hand-made
requests (``RawClient``) and with certbot's ``acme`` client over real HTTP, and the renewal
worker run in-process with a clock the test moves forward.

certbot's ``acme`` knows nothing of STAR. The classes here extend its messages the way
``acme.messages`` defines its own (josepy fields with the wire names), so the e2e tests drive the
server as a real client library would: ``canceled`` is registered as an order status (RFC 8739
§3.1.1 adds it), and the order gains ``auto-renewal`` and ``star-certificate``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import josepy as jose
import requests
from acme import fields, messages
from cryptography import x509

from ca.lifecycle import renewal_worker
from ca.clock import FixedClock
from ca.home import Home
from ca.records.models_acme import Order
from ca.records.models_authority import Certificate
from protocol.support import (
    TN_SCOPE,
    Authority,
    RawClient,
    RawOrder,
    Subscriber,
    csr_b64,
    raw_answer,
    raw_new_order,
)
from tnca.acme_client import tnauthlist_identifier

# RFC 8739 §3.1.1: "We add a new status value: canceled". Registering it lets certbot's
# Status.from_json read a canceled order instead of refusing it as unknown.
STATUS_CANCELED = messages.Status("canceled")

HOUR = dt.timedelta(hours=1)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def auto_renewal(*, lifetime: dt.timedelta = HOUR, end: dt.datetime | None = None, **members: Any) -> dict[str, Any]:
    """An ``auto-renewal`` object (RFC 8739 §3.1.1); ends 3 h from now unless told otherwise."""
    obj: dict[str, Any] = {
        "end-date": rfc3339(end or utcnow() + 3 * HOUR),
        "lifetime": int(lifetime.total_seconds()),
    }
    obj.update(members)
    return obj


# --------------------------------------------------------------------------------------------
# Hand-made requests
# --------------------------------------------------------------------------------------------


def star_new_order(raw: RawClient, auto: dict[str, Any], scope=TN_SCOPE, **fields_: Any) -> RawOrder:
    return raw_new_order(raw, scope.to_identifier_value(), **{"auto-renewal": auto}, **fields_)


def star_ready_order(raw: RawClient, authority: Authority, auto: dict[str, Any], *, scope=TN_SCOPE,
                     delegation_id: str | None = None, token_ttl: dt.timedelta = 6 * HOUR) -> RawOrder:
    """A STAR order whose tkauth-01 challenge was answered with a token living ``token_ttl``."""
    delegation_id = delegation_id or authority.delegate()
    order = star_new_order(raw, auto, scope)
    answered = raw_answer(raw, order, authority.token(delegation_id, raw.jwk, scope, ttl=token_ttl))
    assert answered.get_json()["status"] == "valid", answered.get_json()
    order.body = raw.post(order.url, None).get_json()
    assert order.body["status"] == "ready", order.body
    return order


def star_valid_order(raw: RawClient, authority: Authority, auto: dict[str, Any], **kwargs: Any) -> RawOrder:
    """A finalized STAR order (its first certificate issued): status "valid"."""
    order = star_ready_order(raw, authority, auto, **kwargs)
    csr, _key = csr_b64()
    response = raw.post(order.body["finalize"], {"csr": csr})
    assert response.status_code == 200, response.get_data(as_text=True)
    order.body = response.get_json()
    assert order.body["status"] == "valid", order.body
    return order


def order_row(session_factory, order_url: str) -> Order:
    with session_factory() as session:
        order = session.get(Order, order_url.rsplit("/", 1)[1])
        session.expunge(order)
        return order


def issued_certificates(session_factory, order_id: str) -> list[Certificate]:
    """The order's issued certificates, oldest first."""
    with session_factory() as session:
        rows = list(session.query(Certificate).filter_by(order_id=order_id, stage="issued").order_by(Certificate.id))
        for row in rows:
            session.expunge(row)
        return rows


# --------------------------------------------------------------------------------------------
# The worker, in-process, on a clock the test moves (the server keeps the real time)
# --------------------------------------------------------------------------------------------


@dataclass
class Worker:
    """``ca.lifecycle.renewal_worker.renew_due`` as ``tnca worker`` runs it, with a clock the test controls."""

    home: Home
    session_factory: Any
    clock: FixedClock

    def tick(self, *, limit: int = 100) -> int:
        return renewal_worker.renew_due(self.session_factory, self.home, clock=self.clock, limit=limit)

    def at(self, moment: dt.datetime) -> int:
        """Move the clock to ``moment`` (never backwards) and run one tick there."""
        if moment > self.clock.now():
            self.clock.advance(moment - self.clock.now())
        return self.tick()

    def next_renewal_at(self, order_id: str) -> dt.datetime | None:
        with self.session_factory() as session:
            return session.get(Order, order_id).next_renewal_at


# --------------------------------------------------------------------------------------------
# certbot's acme client, extended for STAR
# --------------------------------------------------------------------------------------------


class AutoRenewalObject(jose.JSONObjectWithFields):
    """RFC 8739 §3.1.1 ``auto-renewal``."""

    start_date: dt.datetime | None = fields.rfc3339("start-date", omitempty=True)
    end_date: dt.datetime = fields.rfc3339("end-date")
    lifetime: int = jose.field("lifetime")
    lifetime_adjust: int | None = jose.field("lifetime-adjust", omitempty=True)
    allow_certificate_get: bool | None = jose.field("allow-certificate-get", omitempty=True)


class STAROrder(messages.Order):
    """An order with the RFC 8739 §3.1.1 members (and RFC 9448 §7 ``x5u``)."""

    auto_renewal: AutoRenewalObject | None = jose.field("auto-renewal", omitempty=True,
                                                        decoder=AutoRenewalObject.from_json)
    star_certificate: str | None = jose.field("star-certificate", omitempty=True)
    x5u: str | None = jose.field("x5u", omitempty=True)


class OrderCancellation(jose.JSONObjectWithFields):
    """RFC 8739 §3.1.2: the payload that cancels a STAR order."""

    status: messages.Status = jose.field("status")


@dataclass
class StarCertificate:
    chain: list[x509.Certificate]
    headers: Any

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]


class STARSubscriber(Subscriber):
    """A subscriber (certbot's ``ClientV2``) that orders, fetches and cancels STAR certificates."""

    def new_star_order(self, identifier_value: str, auto: AutoRenewalObject) -> messages.OrderResource:
        order = STAROrder(identifiers=(tnauthlist_identifier(identifier_value),), auto_renewal=auto)
        response = self.acme._post(self.directory["newOrder"], order)
        body = STAROrder.from_json(response.json())
        authorizations = [
            self.acme._authzr_from_response(self.acme._post_as_get(url), uri=url) for url in body.authorizations
        ]
        return messages.OrderResource(body=body, uri=response.headers["Location"], authorizations=authorizations)

    def finalize_star(self, orderr: messages.OrderResource, csr_pem: bytes) -> STAROrder:
        """finalize; the server issues the first certificate at once (RFC 8739 §2.2)."""
        self.acme.begin_finalization(orderr.update(csr_pem=csr_pem))
        return self.star_order(orderr)

    def star_order(self, orderr: messages.OrderResource) -> STAROrder:
        return STAROrder.from_json(self.acme._post_as_get(orderr.uri).json())

    def fetch(self, star_certificate_url: str) -> StarCertificate:
        """POST-as-GET on the star-certificate URL (RFC 8739 §3.3)."""
        response = self.acme._post_as_get(star_certificate_url)
        return StarCertificate(x509.load_pem_x509_certificates(response.text.encode()), response.headers)

    def cancel(self, orderr: messages.OrderResource) -> STAROrder:
        """RFC 8739 §3.1.2: POST {"status": "canceled"} to the order URL."""
        response = self.acme._post(orderr.uri, OrderCancellation(status=STATUS_CANCELED))
        return STAROrder.from_json(response.json())


def plain_get(url: str) -> requests.Response:
    """An unauthenticated GET (RFC 8739 §3.4), as a delegated party without the account key makes it."""
    return requests.get(url, headers={"Accept": "application/pem-certificate-chain"}, timeout=10)
