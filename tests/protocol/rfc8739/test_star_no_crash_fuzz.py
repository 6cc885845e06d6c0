"""Property: whatever ``auto-renewal`` object, cancellation payload or star-certificate request a
client sends, the answer is a result or a problem document, never a server error (RFC 8555 §6.7:
bad input never produces a 500)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.rfc8739.star_support import auto_renewal, rfc3339, star_valid_order
from protocol.support import TN_SCOPE

SCALARS = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats(allow_nan=False)
    | st.text(max_size=30)
)
# RFC 3339 strings at the edges of what datetime can represent, and beyond.
TIMES = st.sampled_from([
    "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59",
    "2030-02-30T00:00:00Z", "2030-01-01T24:00:00Z", "2030-01-01T00:00:60Z", "2030-01-01T00:00:00.999999999Z",
]) | st.datetimes(timezones=st.just(dt.timezone.utc)).map(rfc3339)
VALUES = st.recursive(SCALARS | TIMES, lambda children: st.lists(children, max_size=3)
                      | st.dictionaries(st.text(max_size=8), children, max_size=3), max_leaves=10)
MEMBERS = st.sampled_from(["start-date", "end-date", "lifetime", "lifetime-adjust", "allow-certificate-get"])
AUTO_RENEWALS = st.dictionaries(MEMBERS, VALUES | TIMES | st.integers(min_value=0, max_value=10**10), max_size=5)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(auto=AUTO_RENEWALS | VALUES, extra=st.dictionaries(st.sampled_from(["notBefore", "notAfter"]), TIMES, max_size=2))
def test_any_auto_renewal_object_gets_an_order_or_a_problem(registered, auto, extra):
    response = registered.post("/acme/new-order", {
        "identifiers": [{"type": "TNAuthList", "value": TN_SCOPE.to_identifier_value()}], "auto-renewal": auto, **extra,
    })
    assert response.status_code in (201, 400), (auto, extra, response.get_data(as_text=True))
    if response.status_code == 400:
        assert response.headers["Content-Type"] == "application/problem+json"


@pytest.fixture
def star_urls(registered, authority):
    """A valid STAR order's URL and its star-certificate URL."""
    order = star_valid_order(registered, authority, auto_renewal())
    return order.url, order.body["star-certificate"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.dictionaries(st.sampled_from(["status", "expires", "auto-renewal"]), VALUES, max_size=3) | VALUES,
       target=st.sampled_from([0, 1]))
def test_any_payload_to_a_star_order_or_its_certificate_gets_a_result_or_a_problem(registered, star_urls, payload, target):
    response = registered.post(star_urls[target], json.dumps(payload))
    assert response.status_code < 500, (payload, response.get_data(as_text=True))
    if response.status_code >= 400:
        assert response.headers["Content-Type"] == "application/problem+json"
