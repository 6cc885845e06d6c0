"""Plain-GET resources outside the ACME API, for ``x5u`` URLs.

- ``/token-authority.pem``: authority tokens minted by this authority name it in their ``x5u``
  header (RFC 9448 §5.3, RFC 7515 §4.1.5).
- ``/cert-repo/<serial>.pem``: the chain of an issued certificate. RFC 9448 §7: PASSporT ``x5u``
  URLs are fetched with a plain GET, while ACME certificate URLs need POST-as-GET, so a valid
  order carries an ``x5u`` field pointing here. The chain is end-entity first (RFC 9060 §7) and
  may be cached until the certificate expires, for at most a day.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from flask import Blueprint, Response
from sqlalchemy import select

from acme_server.acme.certificates import pem_chain_of
from acme_server.acme.urls import CERT_REPO_PATH
from acme_server.state import current_state, db_session
from ca.config import TOKEN_AUTHORITY_X5U_PATH
from ca.store import Certificate

PEM_CHAIN_CONTENT_TYPE = "application/pem-certificate-chain"
# ATIS-1000074 asks relying parties to cache x5u resources; the certificate changes rarely.
CACHE_SECONDS = 24 * 3600


def token_authority_certificate() -> Response:
    certificate = current_state().home.token_authority().certificate
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    response = Response(pem, status=200, content_type=PEM_CHAIN_CONTENT_TYPE)
    response.headers["Cache-Control"] = f"public, max-age={CACHE_SECONDS}"
    return response


def certificate_chain(serial: str) -> Response:
    record = db_session().scalars(
        select(Certificate).where(Certificate.serial == serial, Certificate.stage == "issued")
    ).one_or_none()
    if record is None:
        return Response("no such certificate\n", status=404, content_type="text/plain")
    body = pem_chain_of(record)
    remaining = int((record.not_after - current_state().clock.now()).total_seconds())
    response = Response(body, status=200, content_type=PEM_CHAIN_CONTENT_TYPE)
    response.headers["Cache-Control"] = f"public, max-age={max(0, min(remaining, CACHE_SECONDS))}"
    return response


def create_blueprint() -> Blueprint:
    blueprint = Blueprint("repository", __name__)
    blueprint.add_url_rule(TOKEN_AUTHORITY_X5U_PATH, view_func=token_authority_certificate, methods=["GET"])
    blueprint.add_url_rule(CERT_REPO_PATH + "/<serial>.pem", view_func=certificate_chain, methods=["GET"])
    return blueprint
