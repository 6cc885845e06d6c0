"""The directory (RFC 8555 §7.1.1) and newNonce (RFC 8555 §7.2): the two plain-GET resources."""

from __future__ import annotations

from flask import Response, g, request

from acme_server.acme import star
from acme_server.acme.responses import acme_json
from acme_server.state import current_state


def directory() -> Response:
    state = current_state()
    urls = state.urls
    meta: dict[str, object] = {
        # RFC 8555 §7.3.4: tells clients whether newAccount needs externalAccountBinding.
        "externalAccountRequired": state.policy.acme.eab_required,
    }
    if state.policy.acme.terms_of_service:
        meta["termsOfService"] = state.policy.acme.terms_of_service
    if state.website:
        meta["website"] = state.website
    # RFC 8739 §3.2: "MUST be present if the server supports STAR".
    auto_renewal = star.directory_meta(state.policy)
    if auto_renewal is not None:
        meta[star.AUTO_RENEWAL] = auto_renewal
    return acme_json(
        {
            "newNonce": urls.new_nonce(),
            "newAccount": urls.new_account(),
            "newOrder": urls.new_order(),
            # No "newAuthz": pre-authorization (RFC 8555 §7.4.1) is not offered; authority tokens
            # are presented per order. RFC 8555 §7.1.1: omit the field when unsupported.
            "revokeCert": urls.revoke_cert(),
            "keyChange": urls.key_change(),
            # RFC 9773 §3: a server providing renewal information MUST list it.
            "renewalInfo": urls.renewal_info(),
            "meta": meta,
        }
    )


def new_nonce() -> Response:
    # RFC 8555 §7.2: HEAD answers 200 (SHOULD), GET answers 204 with an empty body; both carry a
    # Replay-Nonce (the response hook adds it, with Cache-Control: no-store). The nonce is issued
    # here, not left to the hook, so that a database that cannot record one makes this request
    # fail with a retryable problem instead of answering 200 without the nonce it exists for.
    g.replay_nonce = current_state().nonces.issue()
    return Response(status=200 if request.method == "HEAD" else 204)
