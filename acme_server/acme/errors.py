"""The one place that writes ``application/problem+json``, and the hooks every ACME response gets.

- :class:`AcmeProblem` renders as itself.
- A ``ca`` error that a handler did not translate with its own phase goes through the single
  table in :mod:`acme_server.acme.problems`.
- Werkzeug's 404/405/413/415 under ``/acme/`` become ``malformed`` problems with the same status
  (a blueprint's own handlers never see unknown URLs in its space, so these are app-level and
  branch on the path). A 405 keeps its ``Allow`` header.
- The database unreachable (a PostgreSQL restart, a failover: ``OperationalError`` or
  ``InterfaceError`` from the driver) is not a bug and not the client's fault: ``serverInternal``
  with 503 and ``Retry-After``, logged with an incident id. SQLAlchemy drops the pool's dead
  connections when it sees a disconnect, so the next request connects afresh: the server recovers
  without a restart.
- Anything else is a bug: the client gets ``serverInternal`` with a generic detail and an
  incident id; the traceback is logged under that id and never sent.
"""

from __future__ import annotations

import json
import logging
import secrets

from flask import Flask, Response, g, request
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError

from acme_server.acme import problems
from acme_server.acme.problems import PROBLEM_CONTENT_TYPE, AcmeProblem
from acme_server.observability import request_id
from acme_server.urls import ACME_PREFIX
from acme_server.state import current_state
from ca.errors import TNCAError

log = logging.getLogger("tnca.acme")

_HTTP_ERROR_DETAILS = {
    404: "no ACME resource at this URL",
    405: "method {method} is not allowed on this resource; RFC 8555 §6.3: resources other than the directory and newNonce are read with POST-as-GET",
    413: "request body exceeds the size limit",
    415: "unsupported media type; use application/jose+json",
}


def is_acme_request() -> bool:
    return request.path == ACME_PREFIX or request.path.startswith(ACME_PREFIX + "/")


def problem_response(problem: AcmeProblem) -> Response:
    document = problem.to_json()
    # RFC 7807 §3.2 extension member: the id a support ticket quotes (acme_server/observability.py).
    identifier = request_id()
    if identifier is not None:
        document["requestId"] = identifier
    body = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    response = Response(body, status=problem.status, content_type=PROBLEM_CONTENT_TYPE)
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response


def _log_problem(problem: AcmeProblem) -> None:
    log.info("problem %s %s %s: %s", request.method, request.path, problem.code, problem.detail)


def handle_problem(problem: AcmeProblem) -> Response:
    _log_problem(problem)
    return problem_response(problem)


def handle_ca_error(error: TNCAError) -> Response:
    problem = problems.problem_for_ca_error(error)
    if problems.is_internal(problem):
        return _internal(error)
    _log_problem(problem)
    return problem_response(problem)


def handle_http_exception(error: HTTPException) -> Response | HTTPException:
    if not is_acme_request():
        return error
    status = error.code or 500
    if status >= 500:
        return _internal(error)
    detail = _HTTP_ERROR_DETAILS.get(status, error.description or error.name).format(method=request.method)
    problem = problems.malformed(detail, status=status)
    response = problem_response(problem)
    if status == 405:
        allowed = error.get_response().headers.get("Allow")
        if allowed:
            response.headers["Allow"] = allowed
    return response


def handle_unexpected(error: Exception) -> Response | HTTPException:
    if not is_acme_request():
        log.exception("unhandled error on %s %s", request.method, request.path)
        return InternalServerError()
    return _internal(error)


# Seconds a client waits before retrying a request the database could not serve.
DATABASE_RETRY_AFTER_SECONDS = 2


def handle_database_unavailable(error: OperationalError | InterfaceError) -> Response | HTTPException:
    if not is_acme_request():
        log.exception("database unavailable on %s %s", request.method, request.path)
        return InternalServerError()
    incident = secrets.token_hex(8)
    log.warning("incident %s on %s %s: database unavailable", incident, request.method, request.path, exc_info=error)
    problem = AcmeProblem(
        "serverInternal",
        f"the database is unavailable for a moment; retry after {DATABASE_RETRY_AFTER_SECONDS} s (incident {incident})",
        503,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )
    return problem_response(problem)


def _internal(error: BaseException) -> Response:
    # Internal messages may carry sensitive data; the client gets an id that
    # an operator can find in the log, nothing more.
    incident = secrets.token_hex(8)
    log.error("incident %s on %s %s", incident, request.method, request.path, exc_info=error)
    return problem_response(problems.server_internal(f"internal error; the operator can look up incident {incident}"))


def add_acme_headers(response: Response) -> Response:
    """RFC 8555 §6.5, §7.1, §7.2: headers every response under /acme/ carries."""
    if not is_acme_request():
        return response
    state = current_state()
    # RFC 8555 §6.5: a Replay-Nonce on every response to a POST, and SHOULD on errors; we send
    # one everywhere so any response can start the next request, except on the plain-GET
    # responses a shared cache may keep (RFC 8739 §4.3 star-certificate, RFC 9773 renewalInfo):
    # a cache would hand one single-use nonce to every client.
    cacheable = response.headers.get("Cache-Control", "").startswith("public")
    nonce = g.get("replay_nonce")
    if nonce is None and not cacheable:
        try:
            nonce = state.nonces.issue()
        except Exception:  # the response is still worth sending; the client will ask newNonce
            log.exception("could not issue a Replay-Nonce")
    if nonce is not None and not cacheable:
        response.headers["Replay-Nonce"] = nonce
    # RFC 8555 §7.1: every resource except the directory links to the directory.
    directory = state.urls.directory()
    if request.path != ACME_PREFIX + "/directory":
        response.headers.add("Link", f'<{directory}>;rel="index"')
    # RFC 8555 §7.2: newNonce MUST be no-store; nothing else in the API may be cached either,
    # since every other response carries a single-use nonce.
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def register(app: Flask) -> None:
    app.register_error_handler(AcmeProblem, handle_problem)
    app.register_error_handler(TNCAError, handle_ca_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(OperationalError, handle_database_unavailable)
    app.register_error_handler(InterfaceError, handle_database_unavailable)
    app.register_error_handler(Exception, handle_unexpected)
    app.after_request(add_acme_headers)
