"""ACME resource objects as JSON (RFC 8555 §7.1.2–§7.1.5, RFC 9447 §3, RFC 9448 §4).

Wire names appear only here. Every function takes the stored row and the :class:`Urls` and
returns a plain dict; none of them touches the database beyond the row's loaded relationships.
"""

from __future__ import annotations

from typing import Any

from ca.encoding import rfc3339
from acme_server.urls import Urls
from ca.records.statuses import CertificateStage, OrderStatus
from ca.records.models_acme import Account, Authorization, Challenge, Order

# RFC 9448 §4: the token type of a tkauth-01 challenge.
TKAUTH_TYPE_ATC = "atc"
TKAUTH_CHALLENGE = "tkauth-01"  # http-01 and dns-01 (RFC 8555 §8.3, §8.4) carry only type, url, status, token


def account_object(account: Account, urls: Urls) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "status": account.status,
        "contact": list(account.contact or []),
        # RFC 8555 §7.1.2: "orders" is required.
        "orders": urls.account_orders(account.id),
    }
    if account.terms_agreed:
        obj["termsOfServiceAgreed"] = True
    return obj


def order_object(order: Order, urls: Urls, *, certificate_serial: str | None = None) -> dict[str, Any]:
    """``certificate_serial``: the certificate just issued, when the caller has it at hand."""
    obj: dict[str, Any] = {
        "status": order.status,
        "expires": rfc3339(order.expires),
        "identifiers": [dict(identifier) for identifier in order.identifiers],
        "authorizations": [urls.authorization(authz.id) for authz in order.authorizations],
        "finalize": urls.finalize(order.id),
    }
    if order.not_before is not None:
        obj["notBefore"] = rfc3339(order.not_before)
    if order.not_after is not None:
        obj["notAfter"] = rfc3339(order.not_after)
    if order.error is not None:
        obj["error"] = order.error
    if order.replaces is not None:
        # RFC 9773 §5: a server that accepts "replaces" MUST reflect it in the order.
        obj["replaces"] = order.replaces
    if order.auto_renewal:
        # RFC 8739 §3.1.1: a STAR order shows its auto-renewal object as accepted, and once its
        # first certificate exists "star-certificate" is used instead of "certificate".
        obj["auto-renewal"] = dict(order.auto_renewal)
        if order.status in (OrderStatus.VALID, OrderStatus.CANCELED):
            obj["star-certificate"] = urls.star_certificate(order.id)
        if order.status == OrderStatus.VALID:
            issued = [cert.serial for cert in order.certificates if cert.stage == CertificateStage.ISSUED]
            if issued:
                # RFC 9448 §7: the chain of the current certificate, for PASSporT x5u.
                obj["x5u"] = urls.certificate_x5u(issued[-1])
        return obj
    if order.status == OrderStatus.VALID:
        if certificate_serial is None:
            issued = [cert.serial for cert in order.certificates if cert.stage == CertificateStage.ISSUED]
            certificate_serial = issued[-1] if issued else None
        if certificate_serial is not None:
            obj["certificate"] = urls.certificate(certificate_serial)
            # RFC 9448 §7: where relying parties GET the chain named in a PASSporT's x5u.
            obj["x5u"] = urls.certificate_x5u(certificate_serial)
    return obj


def authorization_object(authz: Authorization, urls: Urls, *, token_authority: str | None) -> dict[str, Any]:
    return {
        "identifier": {"type": authz.identifier_type, "value": authz.identifier_value},
        "status": authz.status,
        # RFC 8555 §7.1.4: "expires" is REQUIRED for valid authorizations; we always send it.
        "expires": rfc3339(authz.expires),
        "challenges": [challenge_object(c, urls, token_authority=token_authority) for c in authz.challenges],
    }


def challenge_object(challenge: Challenge, urls: Urls, *, token_authority: str | None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": challenge.type,
        "url": urls.challenge(challenge.id),
        "status": challenge.status,
        # RFC 9448 §4's example carries a token; tkauth-01 binds through the account key
        # fingerprint instead, but clients written against the example expect it.
        "token": challenge.token,
    }
    if challenge.type == TKAUTH_CHALLENGE:
        obj["tkauth-type"] = TKAUTH_TYPE_ATC
        if token_authority:
            obj["token-authority"] = token_authority
    if challenge.validated is not None:
        obj["validated"] = rfc3339(challenge.validated)
    if challenge.error is not None:
        obj["error"] = challenge.error
    return obj
