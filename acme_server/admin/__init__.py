"""The operator and auditor pages: server-rendered HTML under ``/admin``.

Auditors and regulators ask, months later, *who could sign for this number on that day, and who
said so?*; operators grant numbers, mint authority tokens and revoke. One routing table
(:data:`PAGES`) says which role each page needs (``acme_server.auth`` roles: auditor < operator
< admin); navigation shows only what the signed-in person may use, and the server refuses the
rest whatever the browser sends (403).

Rules every page follows:

- **Reads** go through ``ca``: searches through :mod:`ca.records.queries` (the source of the audit API
  and ``tnca audit query``, so the three cannot disagree), the dashboard through
  :mod:`ca.records.overview`.
- **Changes** are one ``ca`` function each, in the request's transaction, and that function
  appends the audit event naming the person (``user:NAME``): delegations (create, update),
  tokens (mint), external account keys (:mod:`ca.records.external_accounts`), revocations (:mod:`ca.lifecycle.revocation` plans), people (:mod:`ca.records.users`).
- **Forms** carry a CSRF token (flask-wtf, configured by ``acme_server.auth``); a ``ca`` error
  is shown next to the field it names, and nothing is written.
- **Revocation always previews.** The page shows the :class:`ca.lifecycle.revocation.RevocationPlan`
  (every certificate, delegation, STAR order and token it touches) and the confirm form carries
  the plan's digest. Confirming plans again and executes only if the digest is the same:
  otherwise the new plan is shown for another look (and ``ca.lifecycle.revocation.execute`` itself
  refuses a plan that went stale while it ran).
- Pages are ``Cache-Control: no-store`` (they show fresh authority tokens and who holds which
  numbers); static files (CSS, JS, icon) are local: the pages load nothing from elsewhere and
  the Content-Security-Policy (``default-src 'self'``) would refuse it anyway.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, redirect, request, url_for
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, NotFound

from acme_server.admin import (
    audit_pages,
    certificate_pages,
    common,
    dashboard,
    delegation_pages,
    eab_pages,
    people_pages,
    present,
    revocation_pages,
    verification_pages,
)
from acme_server.auth import RoleRequired, current_principal, register_page_handlers, require_role
from ca.errors import NotFoundError, QueryError, TNCAError
from ca.records.users import ADMIN, AUDITOR, OPERATOR

BLUEPRINT_NAME = "admin"
URL_PREFIX = "/admin"
GET, POST = ("GET",), ("POST",)
GET_POST = ("GET", "POST")


@dataclasses.dataclass(frozen=True)
class Page:
    path: str
    view: Callable[..., Any]
    role: str
    methods: tuple[str, ...] = GET

    @property
    def endpoint(self) -> str:
        return self.view.__name__


# The pages, one line each: path, handler, the role it needs, methods.
PAGES: tuple[Page, ...] = (
    Page("/", dashboard.dashboard, AUDITOR),
    Page("/delegations", delegation_pages.delegation_list, AUDITOR),
    Page("/delegations/new", delegation_pages.delegation_new, OPERATOR, GET_POST),
    Page("/delegations/<delegation_id>", delegation_pages.delegation_detail, AUDITOR),
    Page("/delegations/<delegation_id>/edit", delegation_pages.delegation_edit, OPERATOR, GET_POST),
    Page("/delegations/<delegation_id>/tokens/new", delegation_pages.token_new, OPERATOR, GET_POST),
    Page("/delegations/<delegation_id>/vetting", delegation_pages.delegation_vet, OPERATOR, GET_POST),
    Page("/delegations/<delegation_id>/right-to-use", delegation_pages.delegation_right_to_use, OPERATOR, GET_POST),
    Page("/delegations/<delegation_id>/revoke", revocation_pages.revoke_delegation, OPERATOR, GET_POST),
    Page("/certificates", audit_pages.certificate_search, AUDITOR),
    Page("/certificates/<serial>", certificate_pages.certificate_detail, AUDITOR),
    Page("/certificates/<serial>/revoke", revocation_pages.revoke_certificate, OPERATOR, GET_POST),
    Page("/revoke", revocation_pages.revoke_numbers, OPERATOR, GET_POST),
    Page("/revocations", audit_pages.revocation_search, AUDITOR),
    Page("/eab", eab_pages.eab_keys, OPERATOR, GET_POST),
    Page("/eab/<key_id>/revoke", eab_pages.eab_revoke, OPERATOR, POST),
    Page("/audit", audit_pages.event_search, AUDITOR),
    Page("/passport", verification_pages.passport_check, AUDITOR, GET_POST),
    Page("/numbers", verification_pages.number_history, AUDITOR),
    Page("/people", people_pages.people, ADMIN, GET_POST),
    Page("/people/<name>/role", people_pages.person_role, ADMIN, POST),
    Page("/people/<name>/disable", people_pages.person_disable, ADMIN, POST),
    Page("/people/<name>/enable", people_pages.person_enable, ADMIN, POST),
    Page("/people/<name>/password", people_pages.person_password, ADMIN, POST),
)


# The navigation: (endpoint, label, role needed), in the order shown.
NAVIGATION = (
    ("dashboard", "Dashboard", AUDITOR),
    ("delegation_list", "Delegations", AUDITOR),
    ("certificate_search", "Certificates", AUDITOR),
    ("revocation_search", "Revocations", AUDITOR),
    ("event_search", "Audit trail", AUDITOR),
    ("passport_check", "Check a PASSporT", AUDITOR),
    ("number_history", "Numbers in CT logs", AUDITOR),
    ("revoke_numbers", "Revoke by number", OPERATOR),
    ("eab_keys", "Account keys", OPERATOR),
    ("people", "People", ADMIN),
)


def create_blueprint() -> Blueprint:
    blueprint = Blueprint(BLUEPRINT_NAME, __name__, url_prefix=URL_PREFIX, template_folder="templates",
                          static_folder="static", static_url_path="/static")
    for entry in PAGES:
        blueprint.add_url_rule(entry.path, endpoint=entry.endpoint, view_func=require_role(entry.role)(entry.view),
                               methods=list(entry.methods))
    # 401 → the login page (and back); then our own pages for 403 and CSRF failures.
    register_page_handlers(blueprint)
    blueprint.register_error_handler(RoleRequired, _forbidden)
    blueprint.register_error_handler(CSRFError, _csrf_failed)
    blueprint.register_error_handler(NotFoundError, _not_found)
    blueprint.register_error_handler(QueryError, _bad_request)
    blueprint.register_error_handler(TNCAError, _bad_request)
    blueprint.context_processor(_navigation)
    present.register(blueprint)
    blueprint.record_once(lambda state: _app_setup(state.app))
    return blueprint


def _navigation() -> dict[str, Any]:
    principal = current_principal()
    items = []
    if principal is not None:
        items = [
            {"endpoint": f"{BLUEPRINT_NAME}.{endpoint}", "label": label,
             "current": request.endpoint == f"{BLUEPRINT_NAME}.{endpoint}"}
            for endpoint, label, role in NAVIGATION
            if principal.allows(role)
        ]
    return {
        "principal": principal,
        "navigation": items,
        "can_operate": principal is not None and principal.allows(OPERATOR),
        "is_admin": principal is not None and principal.allows(ADMIN),
        "now": common.now(),
    }


def _forbidden(error: RoleRequired) -> Response:
    return common.page("admin/error.html", status=403, title="Not allowed",
                       message=f"This needs the {error.required_role} role; you are signed in as "
                               f"{error.principal.name} ({error.principal.role}).")


def _csrf_failed(error: CSRFError) -> Response:
    return common.page("admin/error.html", status=400, title="The form could not be accepted",
                       message=f"{error.description} Nothing was changed. Go back, reload the page and submit it again.")


def _not_found(error: NotFoundError) -> Response:
    return common.page("admin/error.html", status=404, title="Not found", message=error.detail)


def _bad_request(error: TNCAError) -> Response:
    common.db().rollback()
    return common.page("admin/error.html", status=400, title="That did not work", message=error.detail)


def _app_setup(app: Flask) -> None:
    """``/`` and a login lead to the dashboard, the sign-in pages get the stylesheet, and unknown URLs under
    ``/admin`` get a page in our layout (a blueprint's own 404 handler never sees them: Flask
    routes before choosing a blueprint)."""
    app.add_url_rule("/", endpoint="tnca_home", view_func=lambda: redirect(url_for(f"{BLUEPRINT_NAME}.dashboard")))
    # A login without a `next` target lands on the dashboard (acme_server.auth reads this).
    app.config.setdefault("AUTH_LANDING_ENDPOINT", f"{BLUEPRINT_NAME}.dashboard")
    # The sign-in pages (acme_server/auth templates) use the same stylesheet and icon.
    app.context_processor(lambda: {
        "ui_stylesheet": url_for(f"{BLUEPRINT_NAME}.static", filename="tnca.css"),
        "ui_icon": url_for(f"{BLUEPRINT_NAME}.static", filename="tnca.svg"),
    })
    previous = app.error_handler_spec[None][None].get(HTTPException)

    def handle(error: HTTPException) -> Any:
        if isinstance(error, NotFound) and (request.path == URL_PREFIX or request.path.startswith(URL_PREFIX + "/")):
            # Not routed to the blueprint, so its context processor does not run: add the navigation.
            return common.page("admin/error.html", status=404, title="Not found",
                               message="There is no page at this address.", **_navigation())
        return previous(error) if previous is not None else error

    app.register_error_handler(HTTPException, handle)
