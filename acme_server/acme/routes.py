"""The ACME routing table: one line per resource (RFC 8555 §7.1), with its handler and auth mode.

Paths are relative to ``/acme``. ``auth`` None marks the resources clients may GET: the two of
RFC 8555 §6.3, a STAR order's star-certificate (RFC 8739 §3.4, next to its POST-as-GET row) and
renewalInfo (RFC 9773 §4.1); every other resource takes only POST (a GET gets 405
``malformed``, RFC 8555 §6.3) and runs the JWS chain of :func:`acme_server.acme.jws.acme_post`
before its handler.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from flask import Blueprint

from acme_server.acme import accounts, authorizations, certificates, directory, orders, renewal_info, star
from acme_server.acme.jws import Auth, Payload, acme_post
from acme_server.urls import ACME_PREFIX


@dataclasses.dataclass(frozen=True)
class Route:
    path: str
    handler: Callable[..., object]
    auth: Auth | None  # None: a plain GET resource
    payload: Payload | None = None


ROUTES = (
    Route("/directory", directory.directory, None),
    Route("/new-nonce", directory.new_nonce, None),
    Route("/new-account", accounts.new_account, Auth.JWK, Payload.ACCOUNT),
    Route("/acct/<account_id>", accounts.account, Auth.KID, Payload.EMPTY_OR_JSON),
    Route("/acct/<account_id>/orders", accounts.account_orders, Auth.KID, Payload.EMPTY),
    Route("/key-change", accounts.key_change, Auth.KID, Payload.JSON),
    Route("/new-order", orders.new_order, Auth.KID, Payload.JSON),
    Route("/order/<order_id>", orders.order, Auth.KID, Payload.EMPTY_OR_JSON),  # JSON: cancel (RFC 8739)
    Route("/order/<order_id>/finalize", orders.finalize_order, Auth.KID, Payload.JSON),
    Route("/authz/<authz_id>", authorizations.authorization, Auth.KID, Payload.EMPTY_OR_JSON),
    Route("/chall/<challenge_id>", authorizations.challenge, Auth.KID, Payload.EMPTY_OR_JSON),
    Route("/cert/<serial>", certificates.certificate, Auth.KID, Payload.EMPTY),
    Route("/revoke-cert", certificates.revoke_cert, Auth.JWK_OR_KID, Payload.JSON),
    # RFC 8739 §3.3, §3.4: POST-as-GET by the account, or plain GET when the order negotiated it.
    Route("/star-cert/<order_id>", star.star_certificate, Auth.KID, Payload.EMPTY),
    Route("/star-cert/<order_id>", star.star_certificate_get, None),
    # RFC 9773 §4.1: an unauthenticated GET, so the renewal window can be cached and polled.
    Route("/renewal-info/<cert_id>", renewal_info.renewal_info, None),
)


def create_blueprint() -> Blueprint:
    blueprint = Blueprint("acme", __name__, url_prefix=ACME_PREFIX)
    for route in ROUTES:
        if route.auth is None:
            # HEAD follows GET (newNonce answers HEAD with 200, RFC 8555 §7.2).
            view, methods = route.handler, ["GET"]
        else:
            view, methods = acme_post(auth=route.auth, payload=route.payload)(route.handler), ["POST"]
        # No automatic OPTIONS: anything but the listed methods is a 405 problem with Allow.
        blueprint.add_url_rule(
            route.path,
            endpoint=route.handler.__name__,
            view_func=view,
            methods=methods,
            provide_automatic_options=False,
        )
    return blueprint
