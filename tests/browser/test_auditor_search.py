"""An auditor's question in the browser: who could sign for this number at that time, and who
said so? Search by number and time, page through the answer, download it as CSV, then follow
one certificate to its revocation and its audit trail."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest
from playwright.sync_api import expect

from ca.lifecycle import revocation
from ca.lifecycle.reasons import CRLReason
from ca.numbers.tnauthlist import TNScope
from tests.admin.support import issue_certificate, make_delegation
from tests.browser.support import PEOPLE

pytestmark = pytest.mark.e2e

NUMBER = "12025550123"


def test_an_auditor_finds_pages_and_exports_who_could_sign_for_a_number(live, people, visit, shots, home):
    delegation_id = make_delegation(home, TNScope.parse(ranges=["12025550100:100"]), delegate="Example Enterprise",
                                    actor="user:olivia")
    serials = [issue_certificate(home, delegation_id, TNScope.parse(tns=[NUMBER])) for _ in range(3)]
    issue_certificate(home, delegation_id, TNScope.parse(tns=["12025550150"]))  # another number
    with home.sessionmaker() as session:
        plan = revocation.plan_revoke_certificate(session, serials[0], reason=CRLReason.KEY_COMPROMISE,
                                                  comment="key found on a laptop", clock=home.clock)
        revocation.execute(session, plan, actor="user:olivia", clock=home.clock, home=home)
    # A second later: the search field takes whole seconds, the revocation time has microseconds.
    at = (home.clock.now() + dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    auditor = visit(live)
    page = auditor.page
    auditor.sign_in(PEOPLE["auditor"])
    page.get_by_role("searchbox").fill(NUMBER)
    page.get_by_role("button", name="Find").click()
    page.get_by_label("Valid at (UTC)").fill(at)
    page.get_by_label("Revocation (as of “valid at”)").select_option("unrevoked")
    page.get_by_label("Per page").select_option("10")
    page.get_by_role("button", name="Search", exact=True).click()
    rows = page.locator("#certificates tbody tr")
    expect(rows).to_have_count(2)  # the revoked one is left out, as of that time
    expect(page.locator("#certificates")).not_to_contain_text(serials[0][:16])
    shots(page, "number-at-time")

    # Every certificate for the number, two per page, newest first.
    auditor.goto(f"/admin/certificates?tn={NUMBER}&limit=2")
    expect(rows).to_have_count(2)
    first_page = rows.locator("td:first-child a").all_inner_texts()
    page.get_by_role("link", name="Older →").click()
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("revoked")
    shots(page, "second-page")
    seen = first_page + rows.locator("td:first-child a").all_inner_texts()
    assert [text.rstrip("…") for text in seen] == [s[:16] for s in reversed(serials)]
    page.get_by_role("link", name="← Newest").click()
    expect(rows).to_have_count(2)

    # The CSV has every match, not just the page.
    with page.expect_download() as download_info:
        page.get_by_role("link", name="CSV").click()
    download = download_info.value
    assert re.fullmatch(r"certificates-\d{8}T\d{6}Z\.csv", download.suggested_filename)
    table = list(csv.DictReader(io.StringIO(open(download.path(), encoding="utf-8").read())))
    assert sorted(row["serial"] for row in table) == sorted(serials)
    assert {row["delegation_created_by"] for row in table} == {"user:olivia"}
    assert [row["revocation_reason"] for row in table if row["serial"] == serials[0]] == ["key-compromise"]

    # The revocation, and the audit trail behind it.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Revocations").click()
    revoked = page.locator("#revocations tbody tr")
    expect(revoked).to_have_count(1)
    expect(revoked).to_contain_text("key-compromise")
    expect(revoked).to_contain_text("key found on a laptop")
    expect(revoked).to_contain_text("user:olivia")
    shots(page, "revocations")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit trail").click()
    page.get_by_label("Subject id").fill(serials[0])
    page.get_by_role("button", name="Search", exact=True).click()
    events = page.locator("#events tbody tr")
    expect(events).to_have_count(2)
    expect(events.nth(0)).to_contain_text("certificate.revoke")
    expect(events.nth(1)).to_contain_text("certificate.issue")
    shots(page, "audit-trail")
