"""One certificate: what it says (decoded TNAuthList and claim constraints), its SCTs verified
against the configured logs, its chain verified link by link, its status and its audit history."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from flask import Response, current_app
from sqlalchemy import select

from acme_server.admin.common import db, now, page
from acme_server.admin.inspect import inspect, issuer_rows
from acme_server.admin.present import as_datetime
from acme_server.state import current_state
from ca.records import queries, query_filters
from ca.errors import NotFoundError, QueryError, TransparencyError
from ca.records.models_authority import Certificate
from ca.issuing.transparency import LogClient

_LOGS_KEY = "tnca.admin.ct_logs"
_logs_lock = threading.Lock()


def configured_logs() -> tuple[tuple[LogClient, ...], str | None]:
    """The policy's CT logs as clients (their keys verify SCTs), built once per process.

    A log whose key file cannot be read is left out, and the page says why: the other SCTs can
    still be checked.
    """
    with _logs_lock:
        cached = current_app.extensions.get(_LOGS_KEY)
        if cached is None:
            logs, problems = [], []
            for log in current_state().policy.ct.logs:
                try:
                    logs.append(LogClient.from_policy(log))
                except TransparencyError as error:
                    problems.append(error.detail)
            cached = current_app.extensions[_LOGS_KEY] = (tuple(logs), "; ".join(problems) or None)
    return cached


def certificate_status(item: dict[str, Any], moment: dt.datetime) -> str:
    """One word for the badge: revoked, expired, not-yet-valid, valid, precertificate, failed."""
    if item["stage"] != "issued":
        return item["stage"]
    if item["revocation"] is not None:
        return "revoked"
    if as_datetime(item["not_after"]) < moment:
        return "expired"
    if as_datetime(item["not_before"]) > moment:
        return "not-yet-valid"
    return "valid"


def _issued_identity(events: list[Any]) -> dict[str, Any] | None:
    for event in events:
        action = event["action"] if isinstance(event, dict) else event.action
        details = event["details"] if isinstance(event, dict) else event.details
        if action == "certificate.issue" and isinstance(details, dict) and "profile" in details:
            return {"profile": details["profile"], "vetting": details.get("vetting"),
                    "right_to_use": details.get("right_to_use") or []}
    return None


def certificate_detail(serial: str) -> Response:
    session = db()
    try:
        serial = query_filters.parse_certificate_filter({"serial": serial}).serial or ""
    except QueryError as error:
        raise NotFoundError(error.detail, field="serial") from None
    item = queries.certificate_by_serial(session, serial)
    if item is None:
        raise NotFoundError(f"There is no certificate with serial {serial}.", field="serial")
    record = session.scalars(select(Certificate).where(Certificate.serial == serial)).one()
    logs, logs_problem = configured_logs()
    inspection = inspect(record, issuer_rows(session, record.issuer_id), logs)
    history = queries.events(session, query_filters.EventFilter(subject_type="certificate", subject_id=serial, limit=100))
    moment = now()
    return page(
        "admin/certificate.html",
        item=item,
        record=record,
        inspection=inspection,
        certificate_status=certificate_status(item, moment),
        history=history.items,
        # What the issue event recorded about who was vouched for (docs/identity.md).
        issued_identity=_issued_identity(history.items),
        logs_problem=logs_problem,
        required_scts=current_state().policy.ct.required_scts,
    )
