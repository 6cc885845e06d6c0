"""Errors of the audit API as RFC 9457 problem details (``application/problem+json``).

One table maps each error class to a problem type and status; ``parameter`` names the query or
path parameter at fault. Unexpected exceptions give a generic 500 with an incident id that an
operator finds in the log; their text is never sent (it may name files, hosts or keys).
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

from flask import Response
from werkzeug.exceptions import HTTPException

from acme_server.observability import request_id
from ca.errors import AuthenticationError, NotFoundError, QueryError, TNCAError

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "urn:tnca:problem:"
# RFC 6750 §3: the challenge a 401 carries.
BEARER_CHALLENGE = 'Bearer realm="tnca audit API"'

log = logging.getLogger("tnca.audit_api")

# error class -> (problem type suffix, status, title)
CA_ERROR_PROBLEMS: tuple[tuple[type[TNCAError], str, int, str], ...] = (
    (QueryError, "bad-parameter", 400, "Bad parameter"),
    (NotFoundError, "not-found", 404, "Not found"),
    (AuthenticationError, "unauthenticated", 401, "Not authenticated"),
)
HTTP_PROBLEMS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "Not authenticated"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    413: ("too-large", "Request too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


def problem_response(kind: str, status: int, title: str, detail: str, *, parameter: str | None = None,
                     headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"type": PROBLEM_BASE + kind, "title": title, "status": status, "detail": detail}
    if parameter is not None:
        body["parameter"] = parameter
    identifier = request_id()  # RFC 9457 §3.2 extension member, as on every problem (docs/observability.md)
    if identifier is not None:
        body["requestId"] = identifier
    response = Response(json.dumps(body, ensure_ascii=False), status=status, content_type=PROBLEM_CONTENT_TYPE)
    response.headers["Cache-Control"] = "no-store"
    if status == 401:
        response.headers["WWW-Authenticate"] = BEARER_CHALLENGE
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def for_ca_error(error: TNCAError) -> Response:
    for error_class, kind, status, title in CA_ERROR_PROBLEMS:
        if isinstance(error, error_class):
            return problem_response(kind, status, title, error.detail, parameter=error.field if status == 400 else None)
    return internal(error)


def for_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    if status >= 500:
        return internal(error)
    kind, title = HTTP_PROBLEMS.get(status, ("http-error", error.name))
    headers = {}
    if status == 405:
        allowed = error.get_response().headers.get("Allow")
        if allowed:
            headers["Allow"] = allowed
    detail = error.description or title
    if status == 401 and getattr(error, "description", None) is None:
        detail = "sign in, or send 'Authorization: Bearer tnca_…'"
    return problem_response(kind, status, title, detail, headers=headers)


def internal(error: BaseException) -> Response:
    incident = secrets.token_hex(8)
    log.error("audit API incident %s", incident, exc_info=error)
    return problem_response("internal", 500, "Internal error",
                            f"internal error; the operator can look up incident {incident}")
