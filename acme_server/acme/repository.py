"""Plain-GET resources outside the ACME API: the token authority's certificate for ``x5u``.

Authority tokens minted by this authority name ``{base_url}/token-authority.pem`` in their
``x5u`` header (RFC 9448 §5.3, RFC 7515 §4.1.5); relying parties fetch it with a plain GET.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from flask import Blueprint, Response

from acme_server.state import current_state
from ca.config import TOKEN_AUTHORITY_X5U_PATH

PEM_CHAIN_CONTENT_TYPE = "application/pem-certificate-chain"
# ATIS-1000074 asks relying parties to cache x5u resources; the certificate changes rarely.
CACHE_SECONDS = 24 * 3600


def token_authority_certificate() -> Response:
    certificate = current_state().home.token_authority().certificate
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    response = Response(pem, status=200, content_type=PEM_CHAIN_CONTENT_TYPE)
    response.headers["Cache-Control"] = f"public, max-age={CACHE_SECONDS}"
    return response


def create_blueprint() -> Blueprint:
    blueprint = Blueprint("repository", __name__)
    blueprint.add_url_rule(TOKEN_AUTHORITY_X5U_PATH, view_func=token_authority_certificate, methods=["GET"])
    return blueprint
