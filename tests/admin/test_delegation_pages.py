"""Delegations and authority tokens through the operator pages.

Every rule is ``ca``'s (RFC 9060 §4 scope inside the issuing CA's, RFC 8226 §8 / RFC 9118 claim
constraints, lifetimes, RFC 9448 token claims); the pages must show each refusal next to the
field it concerns, write nothing when refusing, and name the person in the audit event when
they do write.
"""

from __future__ import annotations

import datetime as dt
import html
import re

import josepy as jose
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from ca.records import models_audit, models_authority
from ca.tokens import fingerprints, trust_config, verification
from ca.numbers.claims import ClaimConstraints
from ca.numbers.tnauthlist import TNScope
from tests.admin.support import counts, element, field_error, make_delegation, text_of
from tests.protocol.support import new_key

FINGERPRINT_KEY = new_key()


def audit_events(session_factory, action: str) -> list[models_audit.AuditEvent]:  # type: ignore[no-untyped-def]
    with session_factory() as session:
        return list(session.scalars(select(models_audit.AuditEvent).where(models_audit.AuditEvent.action == action)
                                    .order_by(models_audit.AuditEvent.seq)))


def test_creating_a_delegation_records_the_operator(operator, session_factory):
    response = operator.post("/admin/delegations/new", {
        "delegate": "Example Enterprise", "tns": "12025550100\n12025550101", "ranges": "12025550200:100",
        "max_lifetime": "12h", "not_after": "2099-12-31", "must_include": "rcd, crn",
        "permitted_values": "orig=12025550100\norig=12025550101",
    })
    assert response.status_code == 302
    delegation_id = response.headers["Location"].rsplit("/", 1)[1]
    with session_factory() as session:
        delegation = session.get(models_authority.Delegation, delegation_id)
        # Normalized: the two adjacent numbers became one range (TNScope.normalized).
        assert TNScope.from_der(delegation.scope_der).describe() == "range 12025550100+2, range 12025550200+100"
        assert delegation.max_lifetime_seconds == 12 * 3600
        assert delegation.not_after == dt.datetime(2099, 12, 31, tzinfo=dt.timezone.utc)
        assert ClaimConstraints.from_der(delegation.constraints_der, delegation.constraints_kind).to_json() == {
            "mustInclude": ["rcd", "crn"], "permittedValues": {"orig": ["12025550100", "12025550101"]}}
        assert delegation.created_by == "user:olivia"
    (event,) = audit_events(session_factory, "delegation.create")
    assert (event.actor, event.subject_id) == ("user:olivia", delegation_id)
    page = text_of(operator.get(response.headers["Location"]))
    assert "created for Example Enterprise" in page
    assert "12025550200 + 100" in page


@pytest.mark.parametrize(
    ("form", "field_id", "fragment"),
    [
        # RFC 9060 §4: the delegated scope must be encompassed by the issuing CA's.
        ({"tns": "13105550100"}, "scope", "is not inside the issuing CA's scope"),
        ({"tns": "1202555010x"}, "tns", "12025550"),
        ({"ranges": "12025550100-100"}, "ranges", "START:COUNT"),
        ({}, "scope", "needs at least one TN, range or SPC"),
        ({"tns": "12025550100", "max_lifetime": "forever"}, "max_lifetime", "expected a duration"),
        ({"tns": "12025550100", "max_lifetime": "90d"}, "max_lifetime", "exceeds the policy's"),
        ({"tns": "12025550100", "max_lifetime": "1m"}, "max_lifetime", "below the minimum 5m"),
        # OverflowError, not ValueError, before durations were bounded: a 500.
        ({"tns": "12025550100", "max_lifetime": "99999999999999d"}, "max_lifetime", "longest duration accepted"),
        ({"tns": "12025550100", "not_after": "next week"}, "not_after", "RFC 3339"),
        ({"tns": "12025550100", "not_after": "2001-01-01"}, "not_after", "must be later than"),
        # RFC 9118 §3 / RFC 8226 §8 issuance rules.
        ({"tns": "12025550100", "must_exclude": "orig"}, "must_exclude", "orig"),
        ({"tns": "12025550100", "permitted_values": "no equals sign"}, "permitted_values", "is not claim=value"),
        ({"tns": "12025550100", "must_include": "rcd", "must_exclude": "rcd"}, "must_exclude", "rcd"),
        ({"tns": "12025550100", "enhanced": "y"}, "enhanced", "needs at least one constraint"),
    ],
)
def test_a_refused_delegation_shows_the_reason_next_to_the_field_and_writes_nothing(
        operator, session_factory, form, field_id, fragment):
    before = counts(session_factory)
    response = operator.post("/admin/delegations/new", {"delegate": "Example Enterprise", **form})
    assert response.status_code == 400
    message = field_error(text_of(response), field_id)
    assert message is not None and fragment in message, (field_id, message)
    assert counts(session_factory) == before


def test_a_missing_delegate_name_is_a_field_error(operator, session_factory):
    before = counts(session_factory)
    response = operator.post("/admin/delegations/new", {"delegate": "", "tns": "12025550100"})
    assert response.status_code == 400
    assert field_error(text_of(response), "delegate") == "This field is required."
    assert 'aria-invalid="true"' in text_of(response)
    assert counts(session_factory) == before


def test_editing_a_delegation_records_before_and_after(operator, home, session_factory):
    delegation_id = make_delegation(home, TNScope.parse(ranges=["12025550100:100"]))
    form = text_of(operator.get(f"/admin/delegations/{delegation_id}/edit"))
    # The scope is shown, not offered for editing (a changed scope is a new delegation).
    assert 'name="tns"' not in form and 'name="ranges"' not in form
    assert "range 12025550100+100" in form
    response = operator.post(f"/admin/delegations/{delegation_id}/edit", {
        "delegate": "Example Enterprise Ltd", "max_lifetime": "6h", "not_after": "", "must_include": "rcd",
        # Sent anyway: ignored, the edit form has no scope.
        "ranges": "12025550000:1000",
    })
    assert response.status_code == 302
    (event,) = audit_events(session_factory, "delegation.update")
    assert event.actor == "user:olivia"
    assert event.details["changed"] == ["constraints", "delegate", "max_lifetime_seconds"]
    assert event.details["before"]["delegate"] == "Example Enterprise"
    assert event.details["after"]["delegate"] == "Example Enterprise Ltd"
    assert event.details["after"]["scope"]["description"] == "range 12025550100+100"
    page = text_of(operator.get(f"/admin/delegations/{delegation_id}"))
    assert "delegation.update" in page and "Example Enterprise Ltd" in page


def test_an_edit_that_changes_nothing_says_so(operator, home, session_factory):
    delegation_id = make_delegation(home, TNScope.parse(tns=["12025550100"]))
    before = counts(session_factory)
    response = operator.post(f"/admin/delegations/{delegation_id}/edit",
                             {"delegate": "Example Enterprise", "max_lifetime": "1d"})
    assert response.status_code == 400
    assert "nothing to change" in text_of(response)
    assert counts(session_factory) == before


def test_minting_a_token_shows_it_once_bound_to_the_account_key(operator, home, session_factory):
    delegation_id = make_delegation(home, TNScope.parse(ranges=["12025550100:100"]))
    fingerprint = fingerprints.account_fingerprint(public_jwk_of(FINGERPRINT_KEY))
    response = operator.post(f"/admin/delegations/{delegation_id}/tokens/new",
                             {"fingerprint": fingerprint, "tns": "12025550123", "ttl": "10m"})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    token = re.search(r'<textarea id="authority-token"[^>]*>([^<]+)</textarea>', text_of(response)).group(1)
    # The token validates as an ACME server validates it (RFC 9448 §6), for that key and number.
    verified = verification.verify(token, identifier_scope=TNScope.parse(tns=["12025550123"]),
                             account_jwk=public_jwk_of(FINGERPRINT_KEY),
                             trust=trust_config.trust_from_policy(home.policy.tokens,
                                                            local_authority=home.token_authority().certificate),
                             clock=home.clock, fetcher=LocalFetcher(home))
    assert verified.local and verified.scope == TNScope.parse(tns=["12025550123"])
    assert dt.timedelta(minutes=9) < verified.expires - home.clock.now() <= dt.timedelta(minutes=10)
    (event,) = audit_events(session_factory, "token.mint")
    assert (event.actor, event.details["delegation_id"]) == ("user:olivia", delegation_id)
    # Only the jti is kept: the delegation page lists it, never the token.
    page = text_of(operator.get(f"/admin/delegations/{delegation_id}"))
    assert verified.jti in page and token not in page


@pytest.mark.parametrize(
    ("form", "field_id", "fragment"),
    [
        ({"fingerprint": "AB:CD"}, "fingerprint", "fingerprint"),
        ({"ttl": "30d"}, "ttl", "exceeds the policy maximum"),
        ({"ttl": "soon"}, "ttl", "expected a duration"),
        ({"ttl": "99999999999999d"}, "ttl", "longest duration accepted"),
        # RFC 9448 §5.4: the token's numbers must be inside the delegation's.
        ({"tns": "12025559999"}, "scope", "is not inside delegation"),
        ({"ca": "y"}, "ca", "does not allow sub-delegation"),
    ],
)
def test_a_refused_token_shows_the_reason_next_to_the_field_and_writes_nothing(
        operator, home, session_factory, form, field_id, fragment):
    delegation_id = make_delegation(home, TNScope.parse(ranges=["12025550100:100"]))
    before = counts(session_factory)
    data = {"fingerprint": fingerprints.account_fingerprint(public_jwk_of(FINGERPRINT_KEY)), **form}
    response = operator.post(f"/admin/delegations/{delegation_id}/tokens/new", data)
    assert response.status_code == 400
    message = field_error(text_of(response), field_id)
    assert message is not None and fragment in message, (field_id, message)
    assert counts(session_factory) == before


def test_the_delegation_list_searches_through_ca_queries(auditor, home):
    first = make_delegation(home, TNScope.parse(ranges=["12025550100:100"]), delegate="Alpha Corp")
    make_delegation(home, TNScope.parse(ranges=["12025550500:100"]), delegate="Beta Corp")
    # Empty fields (a browser sends them all) are left out; the rest goes to ca.records.queries.
    found = element(text_of(auditor.get("/admin/delegations?tn=12025550150&status=&delegate=")), "delegations")
    assert first in found and "Beta Corp" not in found
    found = element(text_of(auditor.get("/admin/delegations?delegate=Beta+Corp")), "delegations")
    assert "Beta Corp" in found and first not in found
    response = auditor.get("/admin/delegations?at=tuesday")
    assert response.status_code == 400
    assert "must be an RFC 3339 time" in field_error(text_of(response), "q-at")


def public_jwk_of(key: ec.EllipticCurvePrivateKey) -> jose.JWK:
    return jose.JWKEC(key=key).public_key()


class LocalFetcher:
    """The token authority's x5u answered from the home, as the ACME server's fetcher does."""

    def __init__(self, home) -> None:  # type: ignore[no-untyped-def]
        self.home = home

    def fetch(self, url: str):  # type: ignore[no-untyped-def]
        authority = self.home.token_authority()
        assert url == authority.x5u
        return (authority.certificate,)


def test_minting_under_an_expired_token_authority_certificate_says_so_and_writes_nothing(operator, home, session_factory):
    """Fault injection (docs/reliability.md): the token authority certificate expired. The page
    answers 400 with the reason (RFC 9448 §6 step 2: every relying party would refuse the token),
    not a 500, and mints nothing."""
    from tests.helpers import expire_token_authority

    delegation_id = make_delegation(home, TNScope.parse(ranges=["12025550100:100"]))
    expired = expire_token_authority(home)
    form_page = operator.get(f"/admin/delegations/{delegation_id}/tokens/new")  # said before the form is filled
    assert form_page.status_code == 200
    assert "expired at" in html.unescape(element(text_of(form_page), "token-authority-refusal"))
    before = counts(session_factory)
    response = operator.post(f"/admin/delegations/{delegation_id}/tokens/new",
                             {"fingerprint": fingerprints.account_fingerprint(public_jwk_of(FINGERPRINT_KEY)),
                              "tns": "12025550123", "ttl": "10m"})
    assert response.status_code == 400
    page = html.unescape(text_of(response))
    assert f"the token authority certificate '{expired.subject.rfc4514_string()}' expired at" in page, page[-3000:]
    assert counts(session_factory) == before
