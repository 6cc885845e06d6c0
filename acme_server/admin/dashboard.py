"""The dashboard: counts, issuance and revocation over time, what ends soon, recent revocations."""

from __future__ import annotations

from flask import Response

from acme_server.admin.chart import activity_chart
from acme_server.admin.common import db, now, page
from acme_server.state import current_state
from ca.readiness import transparency_off_reason
from ca.records import overview, queries, query_filters
from ca.tokens import fingerprints

CHART_DAYS = 30
LIST_LENGTH = 8


def dashboard() -> Response:
    session, moment = db(), now()
    days = overview.activity_by_day(session, now=moment, days=CHART_DAYS)
    return page(
        "admin/dashboard.html",
        counts=overview.counts(session, now=moment, token_authority=fingerprints.certificate_issuer_id(
            current_state().home.token_authority().certificate)),
        days=days,
        chart=activity_chart(days),
        delegations_ending=overview.delegations_ending(session, now=moment, limit=LIST_LENGTH),
        certificates_expiring=overview.certificates_expiring(session, now=moment, limit=LIST_LENGTH),
        revocations=queries.revocations(session, query_filters.RevocationFilter(limit=LIST_LENGTH)).items,
        ending_within=overview.DELEGATIONS_ENDING_WITHIN,
        expiring_within=overview.CERTIFICATES_EXPIRING_WITHIN,
        transparency_off=transparency_off_reason(current_state().home),
    )
