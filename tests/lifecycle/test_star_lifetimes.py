"""Short-lived delegate certificates: lifetimes per delegation from the policy, over ACME.

An end-entity certificate lives the policy's 24 h by default, never longer than its delegation's
maximum lifetime, never past the delegation's end or the authority token's ``exp`` (RFC 9447 §7),
and never less than 5 minutes, a floor no policy file can lower (short lifetimes give freshness;
RFC 8739 §6: servers SHOULD enforce a minimum).
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from acme_server import create_app
from ca.home import Home
from ca.errors import PolicyError
from protocol.rfc8739.star_support import HOUR, utcnow
from protocol.support import (  # noqa: F401  (fixtures)
    TN_SCOPE,
    Authority,
    ExternalTokenAuthority,
    RawClient,
    app,
    assert_problem,
    authority,
    client,
    csr_b64,
    home,
    port,
    raw_answer,
    raw_new_order,
    registered,
    table_counts,
    trusting,
    with_policy,
)

MINUTE = dt.timedelta(minutes=1)
BACKDATE = dt.timedelta(seconds=60)  # ca/policies/default.toml [lifetimes] backdate


def finalize(raw: RawClient, order_url: str):
    body = raw.post(order_url, None).get_json()
    csr, _key = csr_b64()
    return raw.post(body["finalize"], {"csr": csr})


def issue(raw: RawClient, token: str) -> x509.Certificate:
    order = raw_new_order(raw, TN_SCOPE.to_identifier_value())
    assert raw_answer(raw, order, token).get_json()["status"] == "valid"
    response = finalize(raw, order.url)
    assert response.status_code == 200, response.get_data(as_text=True)
    return x509.load_pem_x509_certificates(raw.post(response.get_json()["certificate"], None).get_data())[0]


def validity(certificate: x509.Certificate) -> dt.timedelta:
    return certificate.not_valid_after_utc - certificate.not_valid_before_utc


def test_end_entity_certificates_live_the_policy_default_of_24_hours(registered, authority):  # noqa: F811
    delegation_id = authority.delegate(max_lifetime=24 * HOUR)
    leaf = issue(registered, authority.token(delegation_id, registered.jwk, TN_SCOPE, ttl=24 * HOUR))
    assert validity(leaf) == 24 * HOUR  # the 60 s of backdating count against it


def test_the_delegations_maximum_lifetime_caps_its_certificates(registered, authority):  # noqa: F811
    delegation_id = authority.delegate(max_lifetime=2 * HOUR)
    leaf = issue(registered, authority.token(delegation_id, registered.jwk, TN_SCOPE, ttl=6 * HOUR))
    assert validity(leaf) == 2 * HOUR


def test_no_certificate_outlives_the_authority_token(registered, authority):  # noqa: F811
    """RFC 9447 §7: "SHOULD NOT issue certificates that expire later than the token"."""
    delegation_id = authority.delegate(max_lifetime=24 * HOUR)
    before = utcnow()
    leaf = issue(registered, authority.token(delegation_id, registered.jwk, TN_SCOPE, ttl=30 * MINUTE))
    assert before + 30 * MINUTE <= leaf.not_valid_after_utc <= utcnow() + 30 * MINUTE


def test_no_certificate_outlives_its_delegation(home, session_factory):  # noqa: F811
    """A token of another token authority may outlive the delegation; the certificate may not."""
    external = ExternalTokenAuthority()
    trusted = trusting(home, external)
    raw = RawClient(create_app(trusted).test_client(), trusted.base_url)
    raw.register({})
    ends = utcnow() + 90 * MINUTE
    Authority(trusted, session_factory).delegate(max_lifetime=24 * HOUR, not_after=ends)
    leaf = issue(raw, external.token(raw.jwk, TN_SCOPE, exp=utcnow() + 5 * HOUR))
    assert leaf.not_valid_after_utc == ends


def test_a_certificate_shorter_than_5_minutes_is_refused(registered, authority, session_factory):  # noqa: F811
    """A token expiring 3 minutes from now leaves room for a 4-minute certificate (with the 60 s of
    backdating): below the minimum, so finalize refuses, issues nothing, and the order is invalid."""
    delegation_id = authority.delegate()
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    raw_answer(registered, order, authority.token(delegation_id, registered.jwk, TN_SCOPE, ttl=3 * MINUTE))
    response = finalize(registered, order.url)
    assert_problem(response, "malformed", 400, "below the policy minimum of 5m")
    assert table_counts(session_factory)["certificates"] == 0
    assert registered.post(order.url, None).get_json()["status"] == "invalid"


@pytest.mark.parametrize("key", ["minimum", "end_entity"])
def test_no_policy_file_can_lower_lifetimes_below_5_minutes(home, key):  # noqa: F811
    """The floor is in code (ca.policy.ABSOLUTE_MINIMUM_LIFETIME), not in the policy file: a
    production configuration cannot go below it."""
    edited = with_policy(home, "lifetimes", **{key: "4m"})
    with pytest.raises(PolicyError) as refused:
        Home(edited.path).policy
    assert refused.value.field == f"[lifetimes] {key}"
    assert "below the minimum of 5m" in refused.value.detail
