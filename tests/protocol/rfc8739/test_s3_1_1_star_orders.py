"""RFC 8739 §3.1.1: the ``auto-renewal`` order extension, from newOrder through the challenge to
the first certificate at finalize; and RFC 9447 §7 (no certificate outlives the authority token)
applied to the whole STAR order.
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from sqlalchemy import select

from acme_server import create_app
from ca.records.models_audit import AuditEvent
from protocol.rfc8739.star_support import (
    HOUR,
    auto_renewal,
    issued_certificates,
    order_row,
    rfc3339,
    star_new_order,
    star_ready_order,
    star_valid_order,
    utcnow,
)
from protocol.support import (
    TN_SCOPE,
    Authority,
    ExternalTokenAuthority,
    RawClient,
    assert_problem,
    raw_answer,
    table_counts,
    trusting,
    with_policy,
)

MINUTE = dt.timedelta(minutes=1)


def test_s3_1_1_new_order_reflects_the_auto_renewal_object(registered, session_factory):
    """"They are returned when the Order has been created"; lifetime-adjust shows the adjustment
    applied (§3.5: at least half the lifetime), allow-certificate-get the setting granted."""
    end = utcnow() + 3 * HOUR
    order = star_new_order(registered, auto_renewal(end=end, **{"lifetime-adjust": 60, "allow-certificate-get": True}))
    assert order.body["status"] == "pending"
    assert order.body["auto-renewal"] == {
        "end-date": rfc3339(end), "lifetime": 3600, "lifetime-adjust": 1800, "allow-certificate-get": True,
    }
    assert "star-certificate" not in order.body and "certificate" not in order.body
    assert order_row(session_factory, order.url).auto_renewal == order.body["auto-renewal"]


def test_s3_1_1_start_date_is_reflected(registered):
    start = utcnow() + HOUR
    order = star_new_order(registered, auto_renewal(end=start + 2 * HOUR, **{"start-date": rfc3339(start)}))
    assert order.body["auto-renewal"]["start-date"] == rfc3339(start)


@pytest.mark.parametrize("member", ["notBefore", "notAfter"])
def test_s3_1_1_not_before_or_not_after_in_a_star_order_is_malformed(registered, session_factory, member):
    """"The optional notBefore and notAfter fields ... MUST NOT be present in a STAR Order. If they
    are included, the server MUST return an error with status code 400" (type: see
    docs/rfc-support.md, divergences)."""
    before = table_counts(session_factory)
    response = registered.post("/acme/new-order", {
        "identifiers": [{"type": "TNAuthList", "value": TN_SCOPE.to_identifier_value()}],
        "auto-renewal": auto_renewal(), member: rfc3339(utcnow() + HOUR),
    })
    assert_problem(response, "malformed", 400, f"a STAR order must not carry {member}")
    assert table_counts(session_factory) == before


@pytest.mark.parametrize(
    "auto, fragment",
    [
        ("3600", "'auto-renewal' must be an object"),
        ({"lifetime": 3600}, "'auto-renewal' lacks 'end-date'"),
        ({"end-date": rfc3339(utcnow() + HOUR)}, "'auto-renewal' lacks 'lifetime'"),
        (auto_renewal(lifetime=HOUR) | {"lifetime": "3600"}, "'auto-renewal.lifetime' must be a positive integer"),
        (auto_renewal() | {"lifetime": True}, "'auto-renewal.lifetime' must be a positive integer"),
        (auto_renewal() | {"lifetime": 0}, "'auto-renewal.lifetime' must be a positive integer"),
        (auto_renewal() | {"lifetime-adjust": -1}, "'auto-renewal.lifetime-adjust' must be a non-negative integer"),
        (auto_renewal() | {"lifetime": 10**12}, "out of range"),
        (auto_renewal() | {"end-date": "tomorrow"}, "'auto-renewal.end-date' is not an RFC 3339 date-time"),
        (auto_renewal() | {"start-date": 17}, "'auto-renewal.start-date' must be an RFC 3339 date-time string"),
        (auto_renewal() | {"allow-certificate-get": "yes"}, "'auto-renewal.allow-certificate-get' must be true or false"),
    ],
    ids=["not-an-object", "no-end-date", "no-lifetime", "lifetime-string", "lifetime-bool", "lifetime-zero",
         "negative-adjust", "huge-lifetime", "end-date-text", "start-date-number", "get-not-bool"],
)
def test_s3_1_1_malformed_auto_renewal_members_are_named(registered, session_factory, auto, fragment):
    before = table_counts(session_factory)
    response = registered.post("/acme/new-order", {
        "identifiers": [{"type": "TNAuthList", "value": TN_SCOPE.to_identifier_value()}], "auto-renewal": auto,
    })
    assert_problem(response, "malformed", 400, fragment)
    assert table_counts(session_factory) == before


@pytest.mark.parametrize(
    "make_auto, fragment",
    [
        # Built at call time, not collection: a date computed when pytest collects is minutes
        # stale by the time the test runs in a long suite.
        # RFC 8739 §3.2 min-lifetime (the policy minimum, 5 minutes).
        (lambda: auto_renewal(lifetime=dt.timedelta(minutes=4)), "lifetime 4m is below this authority's min-lifetime of 5m"),
        # §3.2 max-duration (30 days by default).
        (lambda: auto_renewal(end=utcnow() + dt.timedelta(days=31)), "this authority's max-duration is 30d"),
        (lambda: auto_renewal(end=utcnow() - HOUR), "must be later than the start-date and than now"),
        (lambda: auto_renewal(**{"start-date": rfc3339(utcnow() - HOUR)}), "start-date"),
        (lambda: auto_renewal(end=utcnow() + 3 * MINUTE), "shorter than one certificate of the minimum lifetime 5m"),
        # T + T/2 must fit the longest certificate the policy allows (30 days for a delegate CA;
        # which kind the order is for is known at the challenge).
        (lambda: auto_renewal(lifetime=21 * 24 * HOUR, end=utcnow() + 29 * 24 * HOUR),
         "valid for 31d12h, above the policy maximum of 30d"),
    ],
    ids=["below-min-lifetime", "beyond-max-duration", "end-in-the-past", "start-in-the-past", "too-short",
         "lifetime-plus-overlap-too-long"],
)
def test_s3_2_auto_renewal_outside_the_policy_is_refused_at_new_order(registered, session_factory, make_auto, fragment):
    before = table_counts(session_factory)
    response = registered.post("/acme/new-order", {
        "identifiers": [{"type": "TNAuthList", "value": TN_SCOPE.to_identifier_value()}], "auto-renewal": make_auto(),
    })
    assert_problem(response, "malformed", 400, fragment)
    assert table_counts(session_factory) == before


def test_s3_2_star_turned_off_by_policy_refuses_auto_renewal(home, session_factory):
    off = with_policy(home, "acme", auto_renewal_max_duration="0s")
    raw = RawClient(create_app(off).test_client(), off.base_url)
    raw.register({})
    before = table_counts(session_factory)
    response = raw.post("/acme/new-order", {
        "identifiers": [{"type": "TNAuthList", "value": TN_SCOPE.to_identifier_value()}], "auto-renewal": auto_renewal(),
    })
    assert_problem(response, "malformed", 400, "does not offer STAR auto-renewal")
    assert table_counts(session_factory) == before


def test_s3_4_unauthenticated_get_not_offered_is_reflected_as_false(home):
    """§3.4: "If the server accepts the request, it MUST reflect the attribute setting"; a server
    that does not offer it reflects false (§3.1.1: it "MAY adjust them at will")."""
    no_get = with_policy(home, "acme", auto_renewal_allow_certificate_get=False)
    raw = RawClient(create_app(no_get).test_client(), no_get.base_url)
    raw.register({})
    order = star_new_order(raw, auto_renewal(**{"allow-certificate-get": True}))
    assert order.body["auto-renewal"]["allow-certificate-get"] is False


# --------------------------------------------------------------------------------------------
# At the challenge: the authority token and the delegation (RFC 9447 §7, RFC 9060 §4)
# --------------------------------------------------------------------------------------------


def _answer(registered, authority, auto, *, ttl=6 * HOUR, **delegation):
    delegation_id = authority.delegate(**delegation)
    order = star_new_order(registered, auto)
    answered = raw_answer(registered, order, authority.token(delegation_id, registered.jwk, TN_SCOPE, ttl=ttl))
    return order, answered.get_json()


def test_rfc9447_s7_star_end_date_after_the_token_expiry_fails_the_challenge(registered, authority, session_factory):
    """RFC 9447 §7: "ACME services relying on Authority Tokens SHOULD NOT issue certificates that
    expire later than the token"; the last certificate of a STAR order ends at its end-date."""
    order, challenge = _answer(registered, authority, auto_renewal(end=utcnow() + 3 * HOUR), ttl=2 * HOUR)
    assert challenge["status"] == "invalid"
    assert challenge["error"]["type"] == "urn:ietf:params:acme:error:unauthorized"
    assert "is after the authority token's 'exp'" in challenge["error"]["detail"]
    assert order_row(session_factory, order.url).status == "invalid"
    with session_factory() as session:  # the token was not spent
        assert not session.scalars(select(AuditEvent).where(AuditEvent.action == "authorization.validate")).all()


def test_s3_5_lifetime_plus_overlap_beyond_the_delegation_maximum_fails_the_challenge(registered, authority):
    """A delegation capping certificates at 1 h: T = 50 min gives certificates of 1h15m."""
    auto = auto_renewal(lifetime=dt.timedelta(minutes=50))
    _order, challenge = _answer(registered, authority, auto, max_lifetime=HOUR)
    assert challenge["status"] == "invalid"
    assert challenge["error"]["type"] == "urn:ietf:params:acme:error:unauthorized"
    assert "above the maximum lifetime of delegation" in challenge["error"]["detail"]


def test_s3_5_lifetime_plus_overlap_beyond_the_end_entity_maximum_fails_the_challenge(registered, authority):
    """The token says end-entity (no 'ca'): certificates of T = 17 h would be valid for 25h30m,
    above the policy's 24 h for end-entity certificates."""
    auto = auto_renewal(lifetime=17 * HOUR, end=utcnow() + 20 * HOUR)
    _order, challenge = _answer(registered, authority, auto, ttl=23 * HOUR, max_lifetime=48 * HOUR)
    assert challenge["status"] == "invalid"
    assert challenge["error"]["type"] == "urn:ietf:params:acme:error:malformed"
    assert "valid for 1d1h30m, above the policy maximum for end-entity certificates of 1d" in challenge["error"]["detail"]


def test_rfc9060_s4_star_end_date_after_the_delegation_ends_fails_the_challenge(home, session_factory):
    """A token of another token authority may outlive the delegation that covers its scope (one
    minted here cannot); the STAR order may not."""
    external = ExternalTokenAuthority()
    trusted = trusting(home, external)
    raw = RawClient(create_app(trusted).test_client(), trusted.base_url)
    raw.register({})
    Authority(trusted, session_factory).delegate(not_after=utcnow() + 2 * HOUR)
    order = star_new_order(raw, auto_renewal(end=utcnow() + 4 * HOUR))
    challenge = raw_answer(raw, order, external.token(raw.jwk, TN_SCOPE, exp=utcnow() + 5 * HOUR)).get_json()
    assert challenge["status"] == "invalid"
    assert challenge["error"]["type"] == "urn:ietf:params:acme:error:unauthorized"
    assert "is after delegation" in challenge["error"]["detail"]


# --------------------------------------------------------------------------------------------
# Finalize: the first certificate (RFC 8739 §2.2, §3.5)
# --------------------------------------------------------------------------------------------


def test_s3_1_1_finalized_star_order_is_valid_with_a_star_certificate_url(registered, authority, session_factory, home):
    end = utcnow() + 3 * HOUR
    order = star_valid_order(registered, authority, auto_renewal(end=end))
    body = order.body
    order_id = order.url.rsplit("/", 1)[1]
    assert body["star-certificate"] == f"{home.base_url}/acme/star-cert/{order_id}"
    # "star-certificate" is "used instead of certificate".
    assert "certificate" not in body
    assert body["expires"] == rfc3339(end)
    (first,) = issued_certificates(session_factory, order_id)
    assert body["x5u"] == f"{home.base_url}/cert-repo/{first.serial}.pem"
    # §3.5: nrd[0] is the issuance; notBefore backdated by the policy's 60 s only (not the
    # half-lifetime: certificates are not backdated past the allowance), notAfter = nrd[0] + T.
    assert first.not_after - first.not_before == HOUR + dt.timedelta(seconds=60)
    row = order_row(session_factory, order.url)
    # The worker publishes the next certificate half a lifetime before the current one ends.
    assert row.next_renewal_at == first.not_after - 30 * MINUTE
    assert row.csr_der is not None and x509.load_der_x509_csr(row.csr_der).is_signature_valid


def test_s3_5_future_start_date_gives_a_first_certificate_starting_then(registered, authority, session_factory):
    start = utcnow() + HOUR
    order = star_valid_order(registered, authority,
                             auto_renewal(end=start + 2 * HOUR, **{"start-date": rfc3339(start)}))
    (first,) = issued_certificates(session_factory, order.url.rsplit("/", 1)[1])
    assert (first.not_before, first.not_after) == (start, start + HOUR)


def test_s3_1_1_a_star_order_is_pending_then_ready_like_any_other(registered, authority):
    """Until finalize a STAR order is an ordinary order (RFC 8555 §7.1.6 states)."""
    order = star_ready_order(registered, authority, auto_renewal())
    assert order.body["status"] == "ready"
    assert "star-certificate" not in order.body
