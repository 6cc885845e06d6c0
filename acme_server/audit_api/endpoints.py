"""The audit API's handlers, one per row of :data:`acme_server.audit_api.routes.ENDPOINTS`.

A handler is short: read the parameters with the ``ca.records.queries`` parser, run one query,
render.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlencode

from flask import Response, current_app, request, stream_with_context, url_for

from acme_server.audit_api.openapi import MAX_PASSPORT_CHARS, PASSPORT_TEXT, document
from acme_server.audit_api.routes import CSV, EXPORT_FORMATS, JSON, JSON_LINES, PAGINATION_PARAMETERS
from acme_server.auth import current_principal
from acme_server.state import current_state, db_session
from ca.auditing import passport
from ca.records import audit, audit_export, exports, queries, query_filters
from ca.errors import NotFoundError, QueryError

# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------


def query_parameters() -> dict[str, str]:
    """The query string as single values; a parameter given twice is refused, not half-read."""
    params: dict[str, str] = {}
    for name in request.args:
        values = request.args.getlist(name)
        if len(values) > 1:
            raise QueryError(f"{name[:40]} is given {len(values)} times; give it once", field=name[:64])
        params[name] = values[0]
    return params


def json_response(value: Any, *, status: int = 200) -> Response:
    body = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status=status, mimetype=JSON)


def page_response(page: queries.Page) -> Response:
    response = json_response(page.to_json())
    if page.next_cursor is not None:
        # RFC 8288: the next page, for clients that follow links rather than read next_cursor.
        params = {**query_parameters(), "cursor": page.next_cursor}
        # The authority's external URL, not the one a reverse proxy forwarded to.
        response.headers["Link"] = f'<{current_state().home.base_url}{request.path}?{urlencode(params)}>; rel="next"'
    return response


def _now() -> dt.datetime:
    return current_state().clock.now()


def _export_filter(parse: Callable[[Mapping[str, str]], Any]) -> tuple[Any, str]:
    params = query_parameters()
    export_format = params.pop("format", "json")
    if export_format not in EXPORT_FORMATS:
        raise QueryError(f"format must be one of {', '.join(EXPORT_FORMATS)} (got {export_format[:20]!r})",
                         field="format")
    for name in PAGINATION_PARAMETERS:
        if name in params:
            raise QueryError(f"an export returns every match; {name} is only for pages", field=name)
    return parse(params), export_format


def _export_response(items: Callable[[Any], Iterator[dict[str, Any]]], columns: Any, export_format: str,
                     name: str) -> Response:
    """Stream every matching item, in its own database session (the request's may be closed first)."""
    sessionmaker = current_state().sessionmaker
    stamp = _now().strftime("%Y%m%dT%H%M%SZ")

    def generate() -> Iterator[str]:
        with sessionmaker() as session:
            rows = items(session)
            if export_format == "csv":
                yield from exports.csv_lines(rows, columns)
                return
            yield "["
            for index, item in enumerate(rows):
                yield ("," if index else "") + "\n" + json.dumps(item, ensure_ascii=False, separators=(",", ":"))
            yield "\n]\n"

    media_type = CSV if export_format == "csv" else JSON
    response = Response(stream_with_context(generate()), mimetype=media_type)
    if export_format == "csv":
        response.headers["Content-Type"] = "text/csv; charset=utf-8; header=present"  # RFC 4180 §3
    response.headers["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.{export_format}"'
    return response


# ------------------------------------------------------------------------------------------
# Handlers
# ------------------------------------------------------------------------------------------


def list_certificates() -> Response:
    flt = query_filters.parse_certificate_filter(query_parameters())
    return page_response(queries.certificates(db_session(), flt, now=_now()))


def get_certificate(serial: str) -> Response:
    _no_parameters()
    serial_filter = query_filters.parse_certificate_filter({"serial": serial})
    item = queries.certificate_by_serial(db_session(), serial_filter.serial)
    if item is None:
        raise NotFoundError(f"no certificate with serial {serial}", field="serial")
    return json_response(item)


def list_revocations() -> Response:
    return page_response(queries.revocations(db_session(), query_filters.parse_revocation_filter(query_parameters())))


def list_delegations() -> Response:
    return page_response(queries.delegations(db_session(), query_filters.parse_delegation_filter(query_parameters())))


def list_audit_events() -> Response:
    return page_response(queries.events(db_session(), query_filters.parse_event_filter(query_parameters())))


def list_audit_checkpoints() -> Response:
    return page_response(queries.checkpoints(db_session(), query_filters.parse_checkpoint_filter(query_parameters())))


def get_audit_head() -> Response:
    _no_parameters()
    session = db_session()
    seq, head_hash = audit.head(session)
    latest = queries.checkpoints(session, query_filters.CheckpointFilter(limit=1)).items
    return json_response({"seq": seq, "hash": head_hash, "last_checkpoint": latest[0] if latest else None})


def export_certificates() -> Response:
    flt, export_format = _export_filter(query_filters.parse_certificate_filter)
    now = _now()
    return _export_response(
        lambda session: exports.iter_all(functools.partial(queries.certificates, session, now=now), flt),
        exports.CERTIFICATE_CSV_COLUMNS, export_format, "certificates",
    )


def export_revocations() -> Response:
    flt, export_format = _export_filter(query_filters.parse_revocation_filter)
    return _export_response(
        lambda session: exports.iter_all(functools.partial(queries.revocations, session), flt),
        exports.REVOCATION_CSV_COLUMNS, export_format, "revocations",
    )


def export_audit_trail() -> Response:
    """The whole chain with its checkpoints, as ``tnca audit verify --export`` reads it."""
    _no_parameters()
    sessionmaker = current_state().sessionmaker
    clock = current_state().clock
    stamp = _now().strftime("%Y%m%dT%H%M%SZ")

    def generate() -> Iterator[str]:
        with sessionmaker() as session:
            for line in audit_export.export_lines(session, clock=clock):
                yield line + "\n"

    response = Response(stream_with_context(generate()), mimetype=JSON_LINES)
    response.headers["Content-Disposition"] = f'attachment; filename="audit-{stamp}.jsonl"'
    return response


def verify_passport() -> Response:
    """``tnca verify passport --json`` over HTTP: the same verdict (ca.auditing.passport)."""
    params = query_parameters()
    unknown = sorted(set(params) - {"passport", "at"})
    if unknown:
        raise QueryError(f"unknown parameter {unknown[0][:40]!r}; this resource takes passport and at",
                         field=unknown[0][:64])
    text = params.get("passport")
    if not text:
        raise QueryError("passport is required: a PASSporT or a SIP Identity header value", field="passport")
    if len(text) > MAX_PASSPORT_CHARS:
        raise QueryError(f"passport is longer than {MAX_PASSPORT_CHARS} characters", field="passport")
    if not re.fullmatch(PASSPORT_TEXT, text):
        raise QueryError("passport must be printable ASCII text (a JWS and Identity header parameters)", field="passport")
    at = query_filters.parse_time(params["at"], field="at") if "at" in params else None
    state, session = current_state(), db_session()
    try:
        verdict = passport.verify(text, at=at, finder=passport.finder_of_home(state.home, session, state.x5u_fetcher),
                                  trust=passport.trust_of_home(state.home), session=session)
    except passport.PassportInputError as error:
        verdict = passport.Verdict.unreadable(error)
    return json_response(verdict.to_json())


def get_me() -> Response:
    _no_parameters()
    principal = current_principal()
    assert principal is not None  # require_role ran first
    return json_response({"name": principal.name, "role": principal.role, "via": principal.via,
                          "token_id": principal.token_id})


def get_openapi() -> Response:
    _no_parameters()
    return json_response(document(url_for("audit_api.get_openapi"), current_app.config["SESSION_COOKIE_NAME"]))


def _no_parameters() -> None:
    params = query_parameters()
    if params:
        name = next(iter(params))
        raise QueryError(f"unknown parameter {name[:40]!r}; this resource takes none", field=name[:64])
