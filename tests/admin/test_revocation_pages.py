"""Revocation through the pages: always previewed, and what is confirmed is what happens.

The preview is a :class:`ca.lifecycle.revocation.RevocationPlan` (nothing written); the confirm form
carries its digest; confirming plans again and executes only that same plan. A plan that changed
in between (something issued, revoked or used) is shown again with 409 and nothing revoked, and a
digest the server never showed is refused the same way. RFC 5280 §5.3.1 reason codes are what the
operator chose.
"""

from __future__ import annotations

import re

from sqlalchemy import select

from ca.records import models_audit, models_authority
from ca.lifecycle.reasons import CRLReason
from ca.numbers.tnauthlist import TNScope
from tests.admin.support import counts, element, field_error, issue_certificate, make_delegation, text_of

DELEGATED = TNScope.parse(ranges=["12025550100:100"])
NUMBER = TNScope.parse(tns=["12025550123"])


def digest_of(html: str) -> str:
    return re.search(r'<input type="hidden" name="plan_digest" value="([0-9a-f]{64})">', html).group(1)


def revocations(session_factory) -> dict[str, models_authority.Revocation]:  # type: ignore[no-untyped-def]
    with session_factory() as session:
        rows = session.execute(select(models_authority.Certificate.serial, models_authority.Revocation)
                               .join(models_authority.Revocation, models_authority.Revocation.certificate_id == models_authority.Certificate.id)).all()
        return {serial: revocation for serial, revocation in rows}


def test_revoking_a_delegation_previews_every_certificate_then_revokes_them(operator, home, session_factory):
    delegation_id = make_delegation(home, DELEGATED)
    serials = {issue_certificate(home, delegation_id, NUMBER) for _ in range(2)}
    other = issue_certificate(home, make_delegation(home, TNScope.parse(tns=["12025550500"])),
                              TNScope.parse(tns=["12025550500"]))
    before = counts(session_factory)

    form = {"comment": "Contract ended", "crl_reason": "privilegeWithdrawn"}
    preview = operator.post(f"/admin/delegations/{delegation_id}/revoke", form)
    assert preview.status_code == 200
    planned = element(text_of(preview), "planned-certificates")
    assert all(serial in planned for serial in serials) and other not in planned
    assert counts(session_factory) == before  # a preview writes nothing

    done = operator.post(f"/admin/delegations/{delegation_id}/revoke", {**form, "plan_digest": digest_of(text_of(preview))})
    assert (done.status_code, done.headers["Location"]) == (302, f"/admin/delegations/{delegation_id}")
    revoked = revocations(session_factory)
    assert set(revoked) == serials
    assert {(r.reason_code, r.source, r.actor, r.comment) for r in revoked.values()} == {
        (int(CRLReason.PRIVILEGE_WITHDRAWN), "delegation", "user:olivia", "Contract ended")}
    with session_factory() as session:
        assert session.get(models_authority.Delegation, delegation_id).status == "revoked"
        execute = session.scalars(select(models_audit.AuditEvent).where(models_audit.AuditEvent.action == "revocation.execute")).one()
        assert (execute.actor, execute.details["plan"]["digest"]) == ("user:olivia", digest_of(text_of(preview)))
    page = text_of(operator.get(f"/admin/delegations/{delegation_id}"))
    assert "Revoked 2 certificates, 1 delegation" in page


def test_a_plan_that_changed_since_the_preview_is_shown_again_and_nothing_is_revoked(operator, home, session_factory):
    delegation_id = make_delegation(home, DELEGATED)
    first = issue_certificate(home, delegation_id, NUMBER)
    form = {"comment": "Contract ended", "crl_reason": "privilegeWithdrawn"}
    shown = digest_of(text_of(operator.post(f"/admin/delegations/{delegation_id}/revoke", form)))

    # Meanwhile another certificate is issued under the delegation.
    second = issue_certificate(home, delegation_id, NUMBER)
    before = counts(session_factory)
    stale = operator.post(f"/admin/delegations/{delegation_id}/revoke", {**form, "plan_digest": shown})
    assert stale.status_code == 409
    html = text_of(stale)
    assert "The plan changed since you reviewed it" in html
    assert first in element(html, "planned-certificates") and second in element(html, "planned-certificates")
    assert counts(session_factory) == before
    assert revocations(session_factory) == {}

    # Confirming the plan now shown revokes both.
    done = operator.post(f"/admin/delegations/{delegation_id}/revoke", {**form, "plan_digest": digest_of(html)})
    assert done.status_code == 302
    assert set(revocations(session_factory)) == {first, second}


def test_a_digest_the_server_never_showed_is_refused(operator, home, session_factory):
    delegation_id = make_delegation(home, DELEGATED)
    issue_certificate(home, delegation_id, NUMBER)
    before = counts(session_factory)
    response = operator.post(f"/admin/delegations/{delegation_id}/revoke",
                             {"comment": "x", "crl_reason": "keyCompromise", "plan_digest": "0" * 64})
    assert response.status_code == 409
    assert counts(session_factory) == before


def test_changing_the_reason_after_the_preview_changes_the_plan(operator, home, session_factory):
    """The digest covers the request too: a confirm form edited to another reason is not the plan shown."""
    delegation_id = make_delegation(home, DELEGATED)
    issue_certificate(home, delegation_id, NUMBER)
    shown = digest_of(text_of(operator.post(f"/admin/delegations/{delegation_id}/revoke",
                                            {"comment": "Contract ended", "crl_reason": "privilegeWithdrawn"})))
    response = operator.post(f"/admin/delegations/{delegation_id}/revoke",
                             {"comment": "Contract ended", "crl_reason": "keyCompromise", "plan_digest": shown})
    assert response.status_code == 409
    assert revocations(session_factory) == {}


def test_revoking_one_certificate_records_the_chosen_reason(operator, home, session_factory):
    delegation_id = make_delegation(home, DELEGATED)
    serial = issue_certificate(home, delegation_id, NUMBER)
    form = {"crl_reason": "keyCompromise", "comment": "Key found on a public server"}
    preview = text_of(operator.post(f"/admin/certificates/{serial}/revoke", form))
    assert serial in element(preview, "planned-certificates")
    assert "planned-delegation" not in preview  # the delegation stays
    done = operator.post(f"/admin/certificates/{serial}/revoke", {**form, "plan_digest": digest_of(preview)})
    assert (done.status_code, done.headers["Location"]) == (302, f"/admin/certificates/{serial}")
    (revocation,) = revocations(session_factory).values()
    assert (revocation.reason_code, revocation.source, revocation.comment) == (
        int(CRLReason.KEY_COMPROMISE), "operator", "Key found on a public server")
    page = text_of(operator.get(f"/admin/certificates/{serial}"))
    assert "key-compromise" in element(page, "revocation-notice")
    assert "Revoke…" not in page
    # Already revoked: the form says so instead of planning.
    again = operator.post(f"/admin/certificates/{serial}/revoke", form)
    assert again.status_code == 400
    assert "was already revoked" in text_of(again)


def test_unspecified_is_recorded_as_no_reason_code(operator, home, session_factory):
    """RFC 5280 §5.3.1: the reason code SHOULD be absent rather than unspecified(0)."""
    serial = issue_certificate(home, make_delegation(home, DELEGATED), NUMBER)
    preview = text_of(operator.post(f"/admin/certificates/{serial}/revoke", {"crl_reason": "unspecified"}))
    operator.post(f"/admin/certificates/{serial}/revoke", {"crl_reason": "unspecified", "plan_digest": digest_of(preview)})
    (revocation,) = revocations(session_factory).values()
    assert revocation.reason_code is None


def test_a_reason_outside_the_offered_ones_is_a_field_error(operator, home, session_factory):
    serial = issue_certificate(home, make_delegation(home, DELEGATED), NUMBER)
    before = counts(session_factory)
    response = operator.post(f"/admin/certificates/{serial}/revoke", {"crl_reason": "certificateHold"})
    assert response.status_code == 400
    assert field_error(text_of(response), "crl_reason") == "Not a valid choice."
    assert counts(session_factory) == before


def test_revoking_by_number_lists_the_delegations_that_still_grant_it(operator, home, session_factory):
    delegation_id = make_delegation(home, DELEGATED)
    covering = issue_certificate(home, delegation_id, NUMBER)
    elsewhere = issue_certificate(home, delegation_id, TNScope.parse(tns=["12025550150"]))
    form = {"tns": "12025550123", "crl_reason": "keyCompromise", "comment": "Number ported away"}
    preview = text_of(operator.post("/admin/revoke", form))
    planned = element(preview, "planned-certificates")
    assert covering in planned and elsewhere not in planned
    assert delegation_id in element(preview, "still-granting")
    done = operator.post("/admin/revoke", {**form, "plan_digest": digest_of(preview)})
    assert (done.status_code, done.headers["Location"]) == (302, "/admin/revocations")
    assert set(revocations(session_factory)) == {covering}
    with session_factory() as session:
        assert session.get(models_authority.Delegation, delegation_id).status == "active"


def test_revoking_by_number_needs_numbers(operator, session_factory):
    before = counts(session_factory)
    response = operator.post("/admin/revoke", {"crl_reason": "keyCompromise", "comment": "x"})
    assert response.status_code == 400
    assert "needs at least one TN, range or SPC" in field_error(text_of(response), "scope")
    response = operator.post("/admin/revoke", {"tns": "12025550123", "crl_reason": "keyCompromise", "comment": ""})
    assert field_error(text_of(response), "comment") == "This field is required."
    assert counts(session_factory) == before


def test_a_number_no_certificate_covers_previews_nothing_to_do(operator, session_factory):
    response = operator.post("/admin/revoke", {"tns": "12025550999", "crl_reason": "keyCompromise", "comment": "x"})
    assert response.status_code == 200
    html = text_of(response)
    assert "No unexpired certificate would be revoked." in html
    assert "confirm-form" not in html
