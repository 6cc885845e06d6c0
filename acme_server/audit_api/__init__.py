"""The audit API: read-only JSON (and CSV) under ``/api/v1`` for auditors and regulators.

Routes come from one table, :data:`acme_server.audit_api.routes.ENDPOINTS`, which also
generates the OpenAPI 3.1 document served at ``/api/v1/openapi.json``. Answers come from
:mod:`ca.records.queries`, the same functions ``tnca audit query`` and the auditor pages use.

Authentication (:mod:`acme_server.auth`): an API token (``Authorization: Bearer tnca_…``) or a
signed-in session; every endpoint but the OpenAPI document needs the ``auditor`` role (operators
and admins include it). Everything is GET, so CSRF does not arise.

Errors are RFC 9457 problem documents (:mod:`acme_server.audit_api.problems`), also for unknown
URLs and wrong methods under ``/api/v1``: a blueprint's own handlers never see those (Flask
routes them before any blueprint is chosen), so registering the blueprint wraps the app's
HTTPException handler for that one URL space and leaves every other path to the handler it had.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, request
from werkzeug.exceptions import HTTPException

from acme_server.audit_api import endpoints, problems, routes
from acme_server.auth import require_role
from ca.errors import TNCAError

BLUEPRINT_NAME = "audit_api"
URL_PREFIX = "/api/v1"


def is_api_request() -> bool:
    return request.path == URL_PREFIX or request.path.startswith(URL_PREFIX + "/")


def create_blueprint() -> Blueprint:
    blueprint = Blueprint(BLUEPRINT_NAME, __name__, url_prefix=URL_PREFIX)
    for endpoint in routes.ENDPOINTS:
        blueprint.add_url_rule(endpoint.flask_rule, endpoint=endpoint.operation_id,
                               view_func=_view(endpoint), methods=["GET"])
    blueprint.register_error_handler(TNCAError, problems.for_ca_error)
    blueprint.register_error_handler(HTTPException, problems.for_http_exception)
    blueprint.register_error_handler(Exception, problems.internal)
    blueprint.after_request(_no_store)
    blueprint.record_once(lambda state: _own_url_space_errors(state.app))
    return blueprint


def _view(endpoint: routes.Endpoint) -> Callable[..., Response]:
    """The row's handler, behind its role check (none for the OpenAPI document)."""
    handler: Callable[..., Response] = getattr(endpoints, endpoint.operation_id)
    return require_role(endpoint.role)(handler) if endpoint.role is not None else handler


def _no_store(response: Response) -> Response:
    # Answers depend on who asks; shared caches must not keep them.
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Vary", "Authorization, Cookie")
    return response


def _own_url_space_errors(app: Flask) -> None:
    """404/405 under /api/v1 as problem documents; other paths keep the app's handler."""
    previous: Callable[[HTTPException], Any] | None = app.error_handler_spec[None][None].get(HTTPException)

    def handle(error: HTTPException) -> Any:
        if is_api_request():
            return problems.for_http_exception(error)
        return previous(error) if previous is not None else error

    app.register_error_handler(HTTPException, handle)
