"""The STI-PA-compatible token API under ``/stipa``: a thin front end of ``ca/tokens/stipa.py``.

Served when ``tnca.toml`` ``[stipa] enabled`` is true (``tnca init --profile shaken``). The
routes are the ones deployed SHAKEN clients call (docs/shaken.md):

- ``POST /stipa/api/v1/auth/login`` ``{"userId", "password"}`` → ``{"status": "success", "accessToken"}``
- ``POST /stipa/api/v1/account/<sp_id>/token`` with header ``Authorization: <accessToken>`` (the
  raw value; ``Bearer <accessToken>`` is read too) and ``{"atc": {...}}`` →
  ``{"status": "success", "token", "crl"}``
- ``GET /stipa/download/v1/crl/<issuer>.crl``: an issuer's CRL, the same bytes as ``/crl/<issuer>.crl``
  (a SHAKEN home's CRL distribution points name this path).

The token's ``x5u`` is the token authority certificate at ``/token-authority.pem``. Every reply is
JSON with ``"status"``: ``"success"``, or ``"error"`` with a ``"message"`` and an HTTP error status.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from acme_server.acme import repository
from acme_server.client_address import client_address
from acme_server.state import current_state, db_session
from ca import metrics
from ca.errors import LoginThrottledError, RateLimitedError
from ca.tokens import stipa

PREFIX = "/stipa"
CRL_PATH = "/download/v1/crl"
# A login or token request body is a few hundred bytes.
MAX_BODY_BYTES = 8 * 1024


def _reply(payload: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = jsonify(payload)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _error(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return _reply({"status": "error", "message": message}, status, headers)


def _json_body() -> Any:
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return None
    return request.get_json(silent=True, force=True)


def login() -> Response:
    body = _json_body()
    if not isinstance(body, dict):
        return _error('the body must be JSON {"userId", "password"}', 400)
    state, session = current_state(), db_session()
    try:
        outcome = stipa.login(session, user_id=body.get("userId"), password=body.get("password"),
                              remote_addr=client_address(), clock=state.clock, limits=state.policy.rate_limits)
    except LoginThrottledError as error:
        return _error(error.detail, 429, {"Retry-After": str(error.retry_after)})
    except RateLimitedError as error:
        metrics.rate_limited(error.limit)
        return _error(error.detail, 429, {"Retry-After": str(error.retry_after)})
    session.commit()
    if isinstance(outcome, str):
        return _reply({"status": "success", "accessToken": outcome})
    return _error(outcome.detail, 401)


def token(sp_id: str) -> Response:
    body = _json_body()
    state, session = current_state(), db_session()
    header = request.headers.get("Authorization", "")
    access_token = header[len("Bearer "):] if header.startswith("Bearer ") else header
    try:
        grant = stipa.request_token(session, access_token=access_token, sp_id=sp_id, body=body,
                                    authority=state.home.token_authority(), clock=state.clock,
                                    max_ttl=state.policy.tokens.max_lifetime)
    except stipa.StipaRefusal as refusal:
        session.commit()  # the refusal's audit event
        return _error(refusal.detail, refusal.status)
    session.commit()
    return _reply({"status": "success", "message": f"token for account {sp_id} is created successfully",
                   "token": grant.token, "crl": state.issuing_ca().crl_url})


def crl(issuer: str) -> Response:
    return repository.crl(issuer)


def create_blueprint() -> Blueprint:
    blueprint = Blueprint("stipa", __name__, url_prefix=PREFIX)
    blueprint.add_url_rule("/api/v1/auth/login", view_func=login, methods=["POST"])
    blueprint.add_url_rule("/api/v1/account/<sp_id>/token", view_func=token, methods=["POST"])
    blueprint.add_url_rule(CRL_PATH + "/<issuer>.crl", view_func=crl, methods=["GET"])
    return blueprint
