"""The auditor's searches: the same answers as the audit API, paged, exportable.

The pages take the API's query string (``ca.records.queries`` parses both), so a search shows exactly the
items ``GET /api/v1/certificates`` returns for it, its export links are the API's exports with the
same filters, and a parameter the parser refuses is shown next to its field (400).
"""

from __future__ import annotations

import datetime as dt
import html
import re

from ca.numbers.tnauthlist import TNScope
from tests.admin.support import element, field_error, issue_certificate, make_delegation, text_of

NUMBER = "12025550123"


def serials_on(page: str, table_id: str = "certificates") -> list[str]:
    return re.findall(r'href="/admin/certificates/([0-9a-f]+)"', element(page, table_id))


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_who_could_sign_for_a_number_at_a_time(auditor, home):
    delegation_id = make_delegation(home, TNScope.parse(ranges=["12025550100:100"]))
    covering = issue_certificate(home, delegation_id, TNScope.parse(tns=[NUMBER]))
    issue_certificate(home, delegation_id, TNScope.parse(tns=["12025550124"]))
    now = home.clock.now()
    page = text_of(auditor.get(f"/admin/certificates?tn={NUMBER}&at={iso(now)}"))
    assert serials_on(page) == [covering]
    assert "Example Enterprise" in element(page, "certificates")
    # RFC 5280 §4.1.2.5: after notAfter it no longer counts.
    page = text_of(auditor.get(f"/admin/certificates?tn={NUMBER}&at={iso(now + dt.timedelta(days=3))}"))
    assert "No certificate matches." in page


def test_the_page_lists_what_the_audit_api_returns(auditor, home):
    delegation_id = make_delegation(home, TNScope.parse(ranges=["12025550100:100"]), delegate="Alpha Corp")
    for number in ("12025550101", "12025550102", "12025550103"):
        issue_certificate(home, delegation_id, TNScope.parse(tns=[number]))
    query = "range=12025550100:50&delegate=Alpha+Corp&revocation=unrevoked"
    page = text_of(auditor.get(f"/admin/certificates?{query}"))
    api = auditor.get(f"/api/v1/certificates?{query}").get_json()
    assert serials_on(page) == [item["serial"] for item in api["items"]]
    assert len(serials_on(page)) == 3
    # The page links to the same query in the API.
    api_link = html.unescape(re.search(r'<a href="([^"]+)" class="muted" id="api-link"', page).group(1))
    assert api_link == f"/api/v1/certificates?{query}"


def test_paging_walks_every_certificate_once_newest_first(auditor, home):
    delegation_id = make_delegation(home, TNScope.parse(ranges=["12025550100:100"]))
    issued = [issue_certificate(home, delegation_id, TNScope.parse(tns=[f"120255501{i:02d}"])) for i in range(5)]
    seen: list[str] = []
    path = "/admin/certificates?limit=2"
    pages = 0
    while path:
        page = text_of(auditor.get(path))
        seen.extend(serials_on(page))
        pages += 1
        following = re.search(r'<a href="([^"]+)" rel="next" id="next-page">', page)
        path = html.unescape(following.group(1)) if following else None
    assert seen == list(reversed(issued))
    assert pages == 3


def test_export_links_are_the_api_exports_with_the_same_filters(auditor, home):
    delegation_id = make_delegation(home, TNScope.parse(ranges=["12025550100:100"]))
    serial = issue_certificate(home, delegation_id, TNScope.parse(tns=[NUMBER]))
    issue_certificate(home, delegation_id, TNScope.parse(tns=["12025550124"]))
    page = text_of(auditor.get(f"/admin/certificates?tn={NUMBER}&limit=1"))
    csv_link = html.unescape(re.search(r'<a href="([^"]+)" id="export-csv"', page).group(1))
    json_link = html.unescape(re.search(r'<a href="([^"]+)" id="export-json"', page).group(1))
    assert csv_link == f"/api/v1/export/certificates?tn={NUMBER}&format=csv"  # no paging in an export
    assert json_link == f"/api/v1/export/certificates?tn={NUMBER}&format=json"
    exported = auditor.get(csv_link)
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    lines = exported.get_data(as_text=True).strip().splitlines()
    assert lines[0].startswith("serial,") and len(lines) == 2 and lines[1].startswith(serial + ",")
    assert [item["serial"] for item in auditor.get(json_link).get_json()] == [serial]


def test_a_refused_parameter_is_shown_next_to_its_field(auditor):
    for query, field, fragment in (
        ("at=yesterday", "q-at", "must be an RFC 3339 time"),
        ("serial=XYZ", "q-serial", "lower-case hex"),
        ("range=12025550100", "q-range", "START:COUNT"),
        ("tn=12345678901234567", "q-tn", "at most 15 (RFC 8226 §9)"),
        ("issued_after=2026-02-30", "q-issued_after", "is not a real time"),
    ):
        response = auditor.get(f"/admin/certificates?{query}")
        assert response.status_code == 400, query
        message = field_error(text_of(response), field)
        assert message is not None and fragment in message, (query, message)


def test_a_parameter_given_twice_or_unknown_is_refused_above_the_form(auditor):
    response = auditor.get("/admin/certificates?tn=12025550100&tn=12025550101")
    assert response.status_code == 400
    assert "tn is given 2 times; give it once" in text_of(response)
    response = auditor.get("/admin/certificates?colour=blue")
    assert response.status_code == 400
    assert "unknown parameter &#39;colour&#39;" in text_of(response)


def test_revocations_and_audit_events_are_searchable(operator, auditor, home):
    delegation_id = make_delegation(home, TNScope.parse(ranges=["12025550100:100"]))
    serial = issue_certificate(home, delegation_id, TNScope.parse(tns=[NUMBER]))
    preview = text_of(operator.post(f"/admin/certificates/{serial}/revoke", {"crl_reason": "superseded"}))
    digest = re.search(r'name="plan_digest" value="([0-9a-f]{64})"', preview).group(1)
    operator.post(f"/admin/certificates/{serial}/revoke", {"crl_reason": "superseded", "plan_digest": digest})

    page = text_of(auditor.get("/admin/revocations?reason=superseded&source=operator"))
    table = element(page, "revocations")
    assert serial in table and "user:olivia" in table
    assert "No revocation matches." in text_of(auditor.get("/admin/revocations?reason=key-compromise"))

    page = text_of(auditor.get(f"/admin/audit?subject_type=certificate&subject_id={serial}"))
    events = element(page, "events")
    assert "certificate.issue" in events and "certificate.revoke" in events
    page = text_of(auditor.get("/admin/audit?action=delegation."))
    assert "delegation.create" in element(page, "events")
    response = auditor.get("/admin/audit?action=Not+An+Action")
    assert response.status_code == 400
    assert "is not an action name" in field_error(text_of(response), "q-action")
