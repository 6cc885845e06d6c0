"""Vetting and right-to-use records through the operator pages (docs/identity.md): operators
record them (CSRF-protected forms, the person named in the audit event), auditors only read
them, refusals show next to the field and write nothing, and the certificate page shows who was
vouched for at issuance, with control and bidi characters made visible rather than obeyed."""

from __future__ import annotations

from sqlalchemy import select

from ca.numbers.tnauthlist import TNScope
from ca.records.models_audit import AuditEvent
from ca.records.models_authority import Certificate, Delegation
from tests.admin.support import counts, field_error, issue_certificate, make_delegation, text_of

LEI = "5493001KJTIIGC8Y1R12"
EVIDENCE = "sha256:" + "ab" * 32 + ",https://records.example/kyb/4711.pdf"
SCOPE = TNScope.parse(ranges=["12025550100:100"])
VETTING = {"legal_name": "Example Retail LLC", "country": "US", "lei": LEI, "assurance": "high",
           "vetted_by": "KYB desk", "vetted_at": "2026-11-01", "evidence": EVIDENCE}


def test_operator_records_vetting_and_right_to_use_and_the_pages_show_them(operator, home, session_factory):
    delegation_id = make_delegation(home, SCOPE)
    assert operator.post(f"/admin/delegations/{delegation_id}/vetting", VETTING).status_code == 302
    response = operator.post(f"/admin/delegations/{delegation_id}/right-to-use", {
        "tns": "12025550150", "source": "letter of authorization", "verified_by": "numbering desk",
        "verified_at": "2026-11-02", "evidence": EVIDENCE})
    assert response.status_code == 302, text_of(response)
    with session_factory() as session:
        events = {e.action: e for e in session.scalars(select(AuditEvent))}
        assert events["delegation.vet"].actor == "user:olivia"
        assert events["delegation.vet"].details["after"]["lei"] == LEI
        assert events["delegation.right-to-use"].details["added"]["scope"] == "TN 12025550150"
    page = text_of(operator.get(f"/admin/delegations/{delegation_id}"))
    assert "Example Retail LLC" in page and LEI in page and "letter of authorization" in page
    # Issued after vetting: the subject names the vetted organisation; the certificate page shows it.
    serial = issue_certificate(home, delegation_id, TNScope.parse(tns=["12025550150"]))
    certificate_page = text_of(operator.get(f"/admin/certificates/{serial}"))
    assert "Vouched for at issuance" in certificate_page and LEI in certificate_page
    assert "O=Example Retail LLC" in certificate_page


def test_refused_vetting_shows_the_field_and_writes_nothing(operator, home, session_factory):
    delegation_id = make_delegation(home, SCOPE)
    before = counts(session_factory)
    response = operator.post(f"/admin/delegations/{delegation_id}/vetting", {**VETTING, "lei": LEI[:-1] + "3"})
    assert response.status_code == 400
    assert "check digits" in (field_error(text_of(response), "lei") or "")
    assert counts(session_factory) == before


def test_auditors_cannot_record_vetting_and_forms_need_the_csrf_token(auditor, operator, home, session_factory):
    delegation_id = make_delegation(home, SCOPE)
    before = counts(session_factory)
    assert auditor.post(f"/admin/delegations/{delegation_id}/vetting", VETTING).status_code == 403
    assert operator.post(f"/admin/delegations/{delegation_id}/vetting", VETTING, csrf=False).status_code in (400, 403)
    assert counts(session_factory) == before


def test_a_bidi_override_stored_before_names_were_checked_is_shown_not_obeyed(operator, home, session_factory):
    """A subject and a delegate name carrying U+202E (rows written before this check existed)
    render as visible code points on the pages, never as reordered text."""
    delegation_id = make_delegation(home, SCOPE)
    serial = issue_certificate(home, delegation_id, TNScope.parse(tns=["12025550150"]))
    with session_factory() as session:
        session.get(Delegation, delegation_id).delegate = "Example \u202eknaB"
        session.scalars(select(Certificate).where(Certificate.serial == serial)).one().subject = "CN=a\u202egnp.exe"
        session.commit()
    for path in (f"/admin/certificates/{serial}", f"/admin/delegations/{delegation_id}", "/admin/delegations"):
        page = text_of(operator.get(path))
        assert "\u202e" not in page, path
        assert "⟦U+202E⟧" in page, path


def test_operator_pins_rich_call_data_in_canonical_form(operator, session_factory):
    """RFC 9795 / RFC 8785: a pinned rcd object is stored as its canonical JSON, whatever its spelling."""
    from ca.numbers.claims import ClaimConstraints

    response = operator.post("/admin/delegations/new", {
        "delegate": "Example Retail", "tns": "12025550100", "profile": "vesper",
        "permitted_values": 'rcd={ "nam" : "Example Retail",  "apn": "12025550100" }'})
    assert response.status_code == 302, text_of(response)
    with session_factory() as session:
        delegation = session.get(Delegation, response.headers["Location"].rsplit("/", 1)[1])
        constraints = ClaimConstraints.from_der(delegation.constraints_der, delegation.constraints_kind)
    assert constraints.must_include == ("rcd",)
    assert delegation.profile == "vesper"
    assert dict(constraints.permitted_values) == {"rcd": ('{"apn":"12025550100","nam":"Example Retail"}',)}
    refused = operator.post("/admin/delegations/new", {"delegate": "X", "tns": "12025550101",
                                                       "permitted_values": "rcd=not json"})
    assert refused.status_code == 400 and "JSON object" in (field_error(text_of(refused), "permitted_values") or "")
