"""The auditor's searches: certificates (who could sign for this number at time T), revocations
and the audit trail, with paging and CSV/JSON export links.

Each page reads its query string with the :mod:`ca.records.queries` parser and runs the same query as
the audit API (``/api/v1``), so a page, its export and the API answer the same question the
same way. The query string *is* the API's: a search can be copied from the address bar into
``curl`` or ``tnca audit query``. A parameter the parser refuses is shown next to its field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import Response, url_for

from acme_server.admin.certificate_pages import certificate_status
from acme_server.admin.common import db, now, page, search_parameters
from ca.records import overview, queries, query_filters
from ca.errors import QueryError

PAGING = ("limit", "cursor")


def _search(
    parse: Callable[[Mapping[str, Any]], Any],
    run: Callable[[Any], queries.Page],
    params: dict[str, str],
) -> tuple[queries.Page | None, QueryError | None]:
    try:
        return run(parse(params)), None
    except QueryError as error:
        return None, error


def _links(endpoint: str, export_endpoint: str | None, params: dict[str, str], result: queries.Page | None) -> dict[str, str | None]:
    """Next page, first page, and the exports of every match (the API's, without paging)."""
    filters = {k: v for k, v in params.items() if k not in PAGING}
    links: dict[str, str | None] = {
        "first": url_for(endpoint, **{k: v for k, v in params.items() if k != "cursor"}) if "cursor" in params else None,
        "next": url_for(endpoint, **{**params, "cursor": result.next_cursor}) if result and result.next_cursor else None,
        "csv": None,
        "json": None,
    }
    if export_endpoint is not None:
        links["csv"] = url_for(export_endpoint, **filters, format="csv")
        links["json"] = url_for(export_endpoint, **filters, format="json")
    return links


def certificate_search() -> Response:
    params = search_parameters()
    session, moment = db(), now()
    result, error = _search(query_filters.parse_certificate_filter, lambda f: queries.certificates(session, f, now=moment), params)
    return page(
        "admin/certificates.html",
        status=400 if error else 200,
        params=params,
        error=error,
        result=result,
        statuses={item["serial"]: certificate_status(item, moment) for item in (result.items if result else [])},
        links=_links(".certificate_search", "audit_api.export_certificates", params, result),
        api_url=url_for("audit_api.list_certificates", **params),
        delegate_names=overview.delegate_names(session),
    )


def revocation_search() -> Response:
    params = search_parameters()
    session = db()
    result, error = _search(query_filters.parse_revocation_filter, lambda f: queries.revocations(session, f), params)
    return page(
        "admin/revocations.html",
        status=400 if error else 200,
        params=params,
        error=error,
        result=result,
        links=_links(".revocation_search", "audit_api.export_revocations", params, result),
        api_url=url_for("audit_api.list_revocations", **params),
        delegate_names=overview.delegate_names(session),
        reasons=query_filters.REASON_NAMES,
    )


def event_search() -> Response:
    params = search_parameters()
    session = db()
    result, error = _search(query_filters.parse_event_filter, lambda f: queries.events(session, f), params)
    return page(
        "admin/events.html",
        status=400 if error else 200,
        params=params,
        error=error,
        result=result,
        links=_links(".event_search", None, params, result),
        api_url=url_for("audit_api.list_audit_events", **params),
        export_url=url_for("audit_api.export_audit_trail"),
    )
