"""External account keys on the operator pages (RFC 8555 §7.3.4): make one (its MAC key shown
once, in the answer to the POST), list, revoke; operators only, CSRF-protected, audited, and a
refused form writes nothing. The same ``ca.records.external_accounts`` functions as ``tnca eab``."""

from __future__ import annotations

import re

from sqlalchemy import select

from ca.numbers.tnauthlist import TNScope
from ca.records.models_acme import ExternalAccountKey
from ca.records.models_audit import AuditEvent
from tests.admin.support import counts, element, field_error, make_delegation, text_of

SCOPE = TNScope.parse(ranges=["12025550100:100"])
_HMAC = re.compile(r'id="new-hmac-key"[^>]* value="([A-Za-z0-9_-]{43})"')
_KID = re.compile(r'id="new-kid"[^>]* value="([a-z2-7]+)"')


def test_operator_makes_a_key_sees_its_mac_key_once_and_revokes_it(operator, home):
    make_delegation(home, SCOPE, delegate="Example Enterprise")
    made = operator.post("/admin/eab", {"delegate": "Example Enterprise", "delegation": "", "expires": "2099-01-01"})
    assert made.status_code == 200, text_of(made)
    html = text_of(made)
    hmac_key, key_id = _HMAC.search(html).group(1), _KID.search(html).group(1)

    listing = text_of(operator.get("/admin/eab"))
    assert key_id in element(listing, "eab-keys") and "unused" in element(listing, "eab-keys")
    assert hmac_key not in listing  # shown once, in the POST's answer only

    with home.sessionmaker() as session:
        row = session.get(ExternalAccountKey, key_id)
        assert (row.delegate, row.created_by, row.expires_at.year) == ("Example Enterprise", "user:olivia", 2099)
        made_event = session.scalars(select(AuditEvent).where(AuditEvent.action == "eab.create")).one()
        assert made_event.actor == "user:olivia" and hmac_key not in str(made_event.details)

    revoked = operator.post(f"/admin/eab/{key_id}/revoke", {})
    assert revoked.status_code == 302
    assert "revoked" in element(text_of(operator.get("/admin/eab")), "eab-keys")
    with home.sessionmaker() as session:
        assert session.get(ExternalAccountKey, key_id).revoked_at is not None


def test_a_refused_form_shows_the_error_by_its_field_and_writes_nothing(operator, home, session_factory):
    make_delegation(home, SCOPE, delegate="Example Enterprise")
    before = counts(session_factory)
    unknown = operator.post("/admin/eab", {"delegate": "Nobody Inc", "delegation": "", "expires": ""})
    assert unknown.status_code == 400
    assert "no delegation names the delegate 'Nobody Inc'" in field_error(text_of(unknown), "delegate")
    past = operator.post("/admin/eab", {"delegate": "Example Enterprise", "delegation": "", "expires": "2001-01-01"})
    assert past.status_code == 400 and "not in the future" in field_error(text_of(past), "expires")
    assert counts(session_factory) == before


def test_without_the_csrf_token_nothing_is_made(operator, home, session_factory):
    make_delegation(home, SCOPE, delegate="Example Enterprise")
    before = counts(session_factory)
    response = operator.post("/admin/eab", {"delegate": "Example Enterprise"}, csrf=False)
    assert response.status_code == 400 and "Nothing was changed" in text_of(response)
    assert counts(session_factory) == before


def test_auditors_may_not_make_or_revoke_keys(auditor, home, session_factory):
    make_delegation(home, SCOPE, delegate="Example Enterprise")
    before = counts(session_factory)
    assert auditor.get("/admin/eab").status_code == 403
    assert auditor.post("/admin/eab", {"delegate": "Example Enterprise"}).status_code == 403
    assert auditor.post("/admin/eab/somekey/revoke", {}).status_code == 403
    assert counts(session_factory) == before
