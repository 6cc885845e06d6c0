"""The operator's whole journey in a real browser, with a real ACME client and a real CT log.

Sign in → create a delegation (with claim constraints) → mint an authority token bound to the
enterprise's ACME account key and copy it → the enterprise (certbot's ``acme`` client) orders,
answers ``tkauth-01`` with that token and downloads its certificate → find the certificate by
its number → read its decoded TNAuthList, claim constraints, verified SCT and verified chain →
revoke the delegation through the preview, which lists that certificate → see both revoked.
"""

from __future__ import annotations

import re

import pytest
from cryptography import x509
from playwright.sync_api import expect
from sqlalchemy import select

from ca.tokens import fingerprints
from ca.records.models_authority import Delegation, Revocation
from ca.numbers.tnauthlist import TNScope
from tests.browser.support import PEOPLE
from tests.protocol.support import Subscriber, make_csr

pytestmark = pytest.mark.e2e

NUMBER = "12025550123"


def test_operator_delegates_mints_finds_and_revokes(live_with_ct, ct_log, people, visit, shots, session_factory):
    operator = visit(live_with_ct)
    operator.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_with_ct.base_url)
    page = operator.page
    operator.sign_in(PEOPLE["operator"])
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    # An operator's navigation has the revocation page but not the people page (admin only).
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Revoke by number")).to_be_visible()
    expect(nav.get_by_role("link", name="People")).to_have_count(0)
    shots(page, "dashboard-empty")

    # 1. A delegation of 100 numbers, with claim constraints (RFC 8226 §8).
    page.get_by_role("link", name="New delegation").first.click()
    page.get_by_label("Delegate", exact=True).fill("Example Enterprise")
    page.get_by_label("Number ranges").fill("12025550100:100")
    page.get_by_label("Longest certificate lifetime").fill("12h")
    page.get_by_label("Claims that must be present").fill("rcd")
    shots(page, "delegation-form")
    page.get_by_role("button", name="Create delegation").click()
    expect(page.locator("#delegation-status")).to_contain_text("active")
    expect(page.locator(".alert-success")).to_contain_text("created for Example Enterprise")
    delegation_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#scope-entries")).to_contain_text("12025550100 + 100")
    expect(page.locator("#constraints")).to_contain_text("rcd")

    # Edit what may change; the audit history shows before and after.
    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_label("Telephone numbers")).to_have_count(0)  # the scope is not editable
    page.get_by_label("Longest certificate lifetime").fill("6h")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator(".timeline li").first).to_contain_text("delegation.update")
    expect(page.locator(".timeline li").first).to_contain_text("max_lifetime_seconds")
    expect(page.locator(".timeline li").first).to_contain_text("43200 → 21600")
    shots(page, "delegation-edited")

    # 2. The enterprise's ACME account, and a token bound to its key's fingerprint (RFC 9448 §5.4).
    subscriber = Subscriber(live_with_ct)
    subscriber.register()
    fingerprint = fingerprints.account_fingerprint(subscriber.public_jwk)
    page.get_by_role("link", name="Mint authority token").click()
    page.get_by_label("Account key fingerprint").fill(fingerprint)
    page.get_by_label("Telephone numbers").fill(NUMBER)
    page.get_by_label("Token lifetime").fill("30m")
    shots(page, "token-form")
    page.get_by_role("button", name="Mint token").click()
    expect(page.get_by_role("heading", name="Authority token minted")).to_be_visible()
    expect(page.locator("#token-expires")).to_contain_text("in 30 min")
    token = page.locator("#authority-token").input_value()
    page.get_by_role("button", name="Copy token").click()
    expect(page.locator("#authority-token-status")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == token
    shots(page, "token-minted")

    # 3. The enterprise orders the number with that token, over real HTTP.
    scope = TNScope.parse(tns=[NUMBER])
    orderr = subscriber.new_order(scope.to_identifier_value())
    subscriber.answer(orderr, token)
    csr_pem, _ = make_csr(subject="Example Enterprise")
    finished = subscriber.finalize(orderr, csr_pem)
    leaf = x509.load_pem_x509_certificates(finished.fullchain_pem.encode())[0]
    serial = format(leaf.serial_number, "x")

    # 4. Find it by number, from the search box every page has.
    page.get_by_role("searchbox").fill(NUMBER)
    page.get_by_role("button", name="Find").click()
    expect(page).to_have_url(re.compile(rf"/admin/certificates\?tn={NUMBER}$"))
    results = page.locator("#certificates")
    expect(results.locator("tbody tr")).to_have_count(1)
    expect(results).to_contain_text("Example Enterprise")
    expect(results).to_contain_text("valid")
    shots(page, "found-by-number")

    # 5. What the certificate says, checked: TNAuthList, constraints, the log's SCT, the chain.
    results.get_by_role("link", name=re.compile(serial[:16])).click()
    expect(page.locator("#certificate-status")).to_have_text("valid")
    expect(page.locator("#tnauthlist")).to_contain_text(NUMBER)
    expect(page.locator("#claim-constraints")).to_contain_text("rcd")
    sct_row = page.locator("#scts tbody tr")
    expect(sct_row).to_have_count(1)
    expect(sct_row).to_contain_text(ct_log.name)
    expect(sct_row).to_contain_text("verified")
    expect(page.locator("#chain li")).to_have_count(3)  # delegate certificate, issuing CA, root
    expect(page.locator("#chain-status")).to_contain_text("every signature verifies")
    shots(page, "certificate")

    # 6. Revoke the delegation: the preview lists the certificate it will revoke.
    page.locator("#certificate-delegation").click()
    page.get_by_role("link", name="Revoke…").click()
    page.get_by_label("Why").fill("Contract with Example Enterprise ended")
    shots(page, "revocation-form")
    page.get_by_role("button", name="Preview the revocation").click()
    expect(page.locator("#planned-certificates")).to_contain_text(serial)
    expect(page.locator("#planned-delegation")).to_contain_text(delegation_id)
    with session_factory() as session:  # the preview wrote nothing
        assert session.get(Delegation, delegation_id).status == "active"
        assert session.scalars(select(Revocation)).all() == []
    shots(page, "revocation-preview")
    page.get_by_role("button", name=re.compile("Revoke the delegation and 1 certificate")).click()

    # 7. Revoked, both of them, and the audit trail names the operator.
    expect(page).to_have_url(re.compile(rf"/admin/delegations/{delegation_id}$"))
    expect(page.locator("#revoked-notice")).to_contain_text("Contract with Example Enterprise ended")
    expect(page.locator(".flashes")).to_contain_text("Revoked 1 certificate, 1 delegation")
    expect(page.locator("#delegation-certificates")).to_contain_text("revoked")
    expect(page.locator(".timeline")).to_contain_text("delegation.revoke")
    expect(page.locator(".timeline")).to_contain_text("user:olivia")
    shots(page, "delegation-revoked")
    page.goto(f"{live_with_ct.base_url}/admin/certificates/{serial}")
    expect(page.locator("#certificate-status")).to_have_text("revoked")
    expect(page.locator("#revocation-notice")).to_contain_text("privilege-withdrawn")
    expect(page.get_by_role("link", name="Revoke…")).to_have_count(0)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Delegations").click()
    expect(page.locator("#delegations")).to_contain_text("revoked")
    shots(page, "delegations")
    page.goto(f"{live_with_ct.base_url}/admin/")
    expect(page.locator("#stat-revoked .value")).to_have_text("1")
    expect(page.locator("#stat-tokens .value")).to_have_text("0")  # the token was used
    shots(page, "dashboard-after")
