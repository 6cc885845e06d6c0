"""Who may do what, enforced by the server whatever the browser sends.

- An auditor reads every page but sees no control that changes anything; a revocation POST
  forged with the auditor's own valid session and CSRF token is refused with 403 and changes
  nothing (``require_role("operator")`` runs on the server).
- A POST without a CSRF token is refused (400) for anyone, also an operator whose session
  cookie the browser sends along (OWASP CSRF: the cookie alone proves nothing).
- An admin manages people: adds one (a generated password shown once), disables them.
"""

from __future__ import annotations

import re

import pytest
from cryptography import x509
from playwright.sync_api import expect

from tests.browser.support import PEOPLE
from tests.admin.support import counts
from tests.protocol.support import TN_SCOPE, Subscriber, make_csr

pytestmark = pytest.mark.e2e


def issue_over_acme(server, authority) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """A delegation and a certificate for TN 12025550100 issued under it by certbot's client."""
    delegation_id = authority.delegate()
    subscriber = Subscriber(server)
    subscriber.register()
    orderr = subscriber.new_order(TN_SCOPE.to_identifier_value())
    subscriber.answer(orderr, authority.token(delegation_id, subscriber.public_jwk, TN_SCOPE))
    finished = subscriber.finalize(orderr, make_csr()[0])
    leaf = x509.load_pem_x509_certificates(finished.fullchain_pem.encode())[0]
    return delegation_id, format(leaf.serial_number, "x")


def test_an_auditor_sees_no_controls_and_a_forged_revocation_is_403(live, people, authority, visit, shots,
                                                                     session_factory):
    delegation_id, serial = issue_over_acme(live, authority)
    auditor = visit(live)
    page = auditor.page
    auditor.sign_in(PEOPLE["auditor"], shots=shots)
    nav = page.get_by_role("navigation", name="Main")
    for label in ("Dashboard", "Delegations", "Certificates", "Revocations", "Audit trail"):
        expect(nav.get_by_role("link", name=label)).to_be_visible()
    expect(nav.get_by_role("link", name="Revoke by number")).to_have_count(0)
    expect(nav.get_by_role("link", name="People")).to_have_count(0)
    expect(page.get_by_role("link", name="New delegation")).to_have_count(0)
    shots(page, "dashboard")

    auditor.goto(f"/admin/delegations/{delegation_id}")
    expect(page.get_by_role("heading", name="Example Enterprise")).to_be_visible()
    expect(page.locator("#delegation-actions")).to_have_count(0)
    expect(page.get_by_role("link", name=re.compile("Revoke|Mint|Edit"))).to_have_count(0)
    shots(page, "delegation")
    auditor.goto(f"/admin/certificates/{serial}")
    expect(page.locator("#certificate-status")).to_have_text("valid")
    expect(page.get_by_role("link", name="Revoke…")).to_have_count(0)

    # Typing the operator's address shows a page that names the missing role.
    auditor.goto(f"/admin/delegations/{delegation_id}/revoke")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    expect(page.locator("#error-message")).to_contain_text("needs the operator role")
    shots(page, "forbidden")

    # A forged POST with the auditor's real session and a valid CSRF token: the role decides.
    csrf_token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    before = counts(session_factory)
    for path, form in (
        (f"/admin/delegations/{delegation_id}/revoke", {"comment": "forged", "crl_reason": "keyCompromise"}),
        (f"/admin/certificates/{serial}/revoke", {"crl_reason": "keyCompromise"}),
        ("/admin/revoke", {"tns": "12025550100", "crl_reason": "keyCompromise", "comment": "forged"}),
        ("/admin/delegations/new", {"delegate": "Mallory", "tns": "12025550199"}),
        (f"/admin/delegations/{delegation_id}/tokens/new", {"fingerprint": "SHA256 " + ":".join(["AB"] * 32)}),
    ):
        response = page.request.post(f"{live.base_url}{path}", form={"csrf_token": csrf_token, **form},
                                     max_redirects=0)
        assert response.status == 403, (path, response.status)
        assert "needs the operator role" in response.text()
    assert counts(session_factory) == before


def test_a_post_without_a_csrf_token_is_refused(live, people, visit, session_factory):
    operator = visit(live)
    operator.sign_in(PEOPLE["operator"])
    before = counts(session_factory)
    response = operator.page.request.post(
        f"{live.base_url}/admin/delegations/new",
        form={"delegate": "Example Enterprise", "ranges": "12025550100:100"},
        max_redirects=0,
    )
    assert response.status == 400
    assert "The form could not be accepted" in response.text()
    assert "CSRF token is missing" in response.text()
    # A token from another session does not do either (flask-wtf binds it to the session).
    response = operator.page.request.post(
        f"{live.base_url}/admin/delegations/new",
        form={"delegate": "Example Enterprise", "ranges": "12025550100:100", "csrf_token": "IjEyMzQ1Ng.forged.token"},
        max_redirects=0,
    )
    assert response.status == 400
    assert counts(session_factory) == before


def test_an_admin_adds_and_disables_a_person(live, people, visit, shots, session_factory):
    admin = visit(live)
    page = admin.page
    admin.sign_in(PEOPLE["admin"])
    page.get_by_role("navigation", name="Main").get_by_role("link", name="People").click()
    expect(page.locator("#people")).to_contain_text("audrey")

    # A name the rules refuse: the message is next to the field, nothing is written.
    page.get_by_label("Name").fill("Not Allowed")
    page.get_by_role("button", name="Add").click()
    expect(page.locator("#name-error")).to_contain_text("is not allowed")
    expect(page.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
    shots(page, "name-refused")

    page.get_by_label("Name").fill("dana")
    page.get_by_label("Role", exact=True).select_option("auditor")
    page.get_by_role("button", name="Add").click()
    expect(page.locator(".flashes")).to_contain_text("dana was added as auditor")
    password = page.locator("#generated-password").input_value()
    assert len(password) == 24
    shots(page, "added")

    # dana can sign in with it, in a browser of her own.
    dana = visit(live)
    dana.sign_in("dana", password)
    expect(dana.page.locator("#signed-in-role")).to_have_text("auditor")

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#people tr", has_text="dana").get_by_role("button", name="Disable").click()
    expect(page.locator(".flashes")).to_contain_text("dana is disabled")
    expect(page.locator("#people tr", has_text="dana")).to_contain_text("disabled")
    # Her session ended at once: her next page is the login form.
    dana.goto("/admin/")
    expect(dana.page).to_have_url(re.compile(r"/auth/login"))
    shots(page, "disabled")
