"""RFC 8555 §6.7 ``rateLimited``: the policy's ``[rate_limits]``, one test per limit.

RFC 8555 §6.6: "the server may return an error of type 'rateLimited' … the server SHOULD include a
Retry-After header field"; RFC 6585 §4 makes it 429. The counts live in the database
(``rate_limit_counters``), so two apps over one database (two processes, two hosts) share them;
the first refusal of a key in a window is audited, later ones are not.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re

import pytest
from sqlalchemy import func, select

from acme_server import create_app
from acme_server.client_address import resolve
from ca import policy
from ca.clock import FixedClock
from ca.errors import RateLimitedError
from ca.home import Home
from ca.records import rate_limits
from ca.records.models_acme import Challenge, Order, RateLimitCounter
from ca.records.models_audit import AuditEvent
from protocol.support import (
    DELEGATED_SCOPE,
    TN_SCOPE,
    RawClient,
    assert_problem,
    raw_answer,
    raw_new_order,
    table_counts,
)

# Long windows, so that no test straddles a window's end (they are aligned to the epoch).
WINDOW = "30d"
WINDOW_SECONDS = 30 * 86400
NEW_ORDER = "/acme/new-order"
ORDER = {"identifiers": [{"type": "TNAuthList", "value": TN_SCOPE.to_identifier_value()}]}


def with_limits(home: Home, **limits: int) -> Home:
    """The home with ``[rate_limits]`` entries set to ``count`` per WINDOW, as an operator edits policy.toml."""
    text = home.policy_path.read_text()
    for name, count in limits.items():
        text, replaced = re.subn(rf"(?m)^{name} = .*$", f'{name} = {{ count = {count}, window = "{WINDOW}" }}', text)
        assert replaced == 1, name
    home.policy_path.write_text(text)
    return Home(home.path)


def reached_events(session_factory) -> list[AuditEvent]:
    with session_factory() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == "rate_limit.reached")))


def assert_rate_limited(response, limit: str) -> None:
    assert_problem(response, "rateLimited", 429, f"rate limit {limit} reached")
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= WINDOW_SECONDS


def registered_client(client, home: Home) -> RawClient:
    raw = RawClient(client, home.base_url)
    raw.register({})
    return raw


def test_s6_7_new_orders_per_account_is_429_with_retry_after_and_shared_between_processes(home, session_factory):
    limited = with_limits(home, new_orders_per_account=2)
    # Two apps, each with its own Home and so its own engine and pool, as two processes have.
    first_process, second_process = create_app(limited).test_client(), create_app(Home(limited.path)).test_client()
    raw = registered_client(first_process, limited)
    assert raw.post(NEW_ORDER, ORDER).status_code == 201
    raw.client = second_process  # the same account at another process (host) of the authority
    assert raw.post(NEW_ORDER, ORDER).status_code == 201
    before = table_counts(session_factory)

    refused = raw.post(NEW_ORDER, ORDER)
    assert_rate_limited(refused, "new_orders_per_account")
    raw.client = first_process
    assert_rate_limited(raw.post(NEW_ORDER, ORDER), "new_orders_per_account")

    after = table_counts(session_factory)
    assert after["orders"] == before["orders"] == 2
    # Audited once per window, however often it is hit.
    (event,) = reached_events(session_factory)
    assert event.details["limit"] == "new_orders_per_account" and event.details["count"] == 2
    assert after["audit_events"] == before["audit_events"] + 1
    # Another account is not limited by this one's count.
    other = registered_client(second_process, limited)
    assert other.post(NEW_ORDER, ORDER).status_code == 201


def test_s6_7_new_orders_per_address_counts_every_account_of_the_address(home, session_factory):
    limited = with_limits(home, new_orders_per_address=2)
    client = create_app(limited).test_client()
    first, second = registered_client(client, limited), registered_client(client, limited)
    assert first.post(NEW_ORDER, ORDER).status_code == 201
    assert second.post(NEW_ORDER, ORDER).status_code == 201
    assert_rate_limited(second.post(NEW_ORDER, ORDER), "new_orders_per_address")
    assert_rate_limited(first.post(NEW_ORDER, ORDER), "new_orders_per_address")
    assert reached_events(session_factory)[0].details["key"] == "127.0.0.1"


def test_forwarded_for_is_believed_from_a_trusted_proxy_only(home, session_factory):
    """X-Forwarded-For is a header any client can send: without [server] trusted_proxies it is
    ignored; from a listed proxy its right-most untrusted entry is the client."""
    limited = with_limits(home, new_orders_per_address=1)
    client = create_app(limited).test_client()
    raw = registered_client(client, limited)
    spoofed = {"environ_base": {"HTTP_X_FORWARDED_FOR": "198.51.100.7"}}
    assert raw.post(NEW_ORDER, ORDER).status_code == 201
    # Not trusted: the header changes nothing, the socket's 127.0.0.1 is over its limit.
    response = raw.client.post("/acme/new-order", data=_jws_body(raw), content_type="application/jose+json", **spoofed)
    assert_rate_limited(response, "new_orders_per_address")

    config = limited.config_path.read_text()
    limited.config_path.write_text(config.replace("[server]", '[server]\ntrusted_proxies = ["127.0.0.1/32"]', 1))
    proxied = create_app(Home(limited.path)).test_client()
    raw.client = proxied
    for address in ("198.51.100.7", "198.51.100.8"):
        forwarded = {"environ_base": {"HTTP_X_FORWARDED_FOR": f"203.0.113.66, {address}"}}
        response = proxied.post("/acme/new-order", data=_jws_body(raw), content_type="application/jose+json", **forwarded)
        assert response.status_code == 201, response.get_data(as_text=True)
    again = proxied.post("/acme/new-order", data=_jws_body(raw), content_type="application/jose+json",
                         environ_base={"HTTP_X_FORWARDED_FOR": "198.51.100.7"})
    assert_rate_limited(again, "new_orders_per_address")
    assert {e.details["key"] for e in reached_events(session_factory)} == {"127.0.0.1", "198.51.100.7"}


def _jws_body(raw: RawClient) -> str:
    return json.dumps(raw.jws(NEW_ORDER, ORDER))


def test_s6_7_new_orders_per_delegate_counts_the_delegate_of_the_covering_delegation(home, authority, session_factory):
    limited = with_limits(home, new_orders_per_delegate=2)
    authority.delegate(DELEGATED_SCOPE)
    client = create_app(limited).test_client()
    accounts = [registered_client(client, limited) for _ in range(3)]
    assert accounts[0].post(NEW_ORDER, ORDER).status_code == 201
    assert accounts[1].post(NEW_ORDER, ORDER).status_code == 201
    before = table_counts(session_factory)
    assert_rate_limited(accounts[2].post(NEW_ORDER, ORDER), "new_orders_per_delegate")
    assert reached_events(session_factory)[0].details["key"] == "Example Enterprise"
    assert table_counts(session_factory)["orders"] == before["orders"]


def test_s6_7_failed_validations_per_account_refuses_further_answers(home, authority, session_factory):
    limited = with_limits(home, failed_validations_per_account=2)
    delegation_id = authority.delegate(DELEGATED_SCOPE)
    client = create_app(limited).test_client()
    raw = registered_client(client, limited)
    wrong_scope = DELEGATED_SCOPE  # a token for another scope than the order's: validation fails
    for _ in range(2):
        order = raw_new_order(raw, TN_SCOPE.to_identifier_value())
        answered = raw_answer(raw, order, authority.token(delegation_id, raw.jwk, wrong_scope))
        assert answered.get_json()["status"] == "invalid"
    order = raw_new_order(raw, TN_SCOPE.to_identifier_value())
    good_token = authority.token(delegation_id, raw.jwk, TN_SCOPE)
    refused = raw_answer(raw, order, good_token)
    assert_rate_limited(refused, "failed_validations_per_account")
    with session_factory() as session:
        challenge = session.scalars(select(Challenge).join(Challenge.authorization).where(
            Challenge.authorization.has(order_id=order.url.rsplit("/", 1)[1]))).one()
        assert challenge.status == "pending"  # not judged: the token was not spent
    # Another account is not limited by this one's failures.
    other = registered_client(client, limited)
    other_order = raw_new_order(other, TN_SCOPE.to_identifier_value())
    assert raw_answer(other, other_order, authority.token(delegation_id, other.jwk, TN_SCOPE)).get_json()["status"] == "valid"


def test_s6_7_new_accounts_per_address_counts_created_accounts_only(home, session_factory):
    limited = with_limits(home, new_accounts_per_address=2)
    client = create_app(limited).test_client()
    first = registered_client(client, limited)
    registered_client(client, limited)
    # Looking up an existing account creates nothing and counts nothing (RFC 8555 §7.3.1).
    assert first.post("/acme/new-account", {}, use_jwk=True).status_code == 200
    before = table_counts(session_factory)
    refused = RawClient(client, limited.base_url).post("/acme/new-account", {}, use_jwk=True)
    assert_rate_limited(refused, "new_accounts_per_address")
    after = table_counts(session_factory)
    assert after["accounts"] == before["accounts"] == 2


def test_sti_pa_logins_limit_for_the_login_endpoint(home, session_factory):
    """``ca.records.rate_limits.check`` as the STI-PA login endpoint calls it (per address and
    per login name); with a fixed clock: Retry-After is the time left in the window, a new window
    starts afresh, and ended windows are pruned."""
    limits = with_limits(home, sti_pa_logins=3).policy.rate_limits
    window = limits[policy.STI_PA_LOGINS].window
    # Windows are aligned to the Unix epoch: start at the beginning of one.
    start, _end = rate_limits.window_of(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc), window)
    clock = FixedClock(start)
    def login(key: str) -> None:
        with session_factory() as session:
            rate_limits.check(session, limits, policy.STI_PA_LOGINS, key, clock=clock)
            session.commit()

    for _ in range(3):
        login("user:spc-1234")
    clock.advance(dt.timedelta(days=1))
    for attempt in range(2):
        with pytest.raises(RateLimitedError) as caught:
            login("user:spc-1234")
        assert caught.value.retry_after == int((window - dt.timedelta(days=1)).total_seconds())
        assert caught.value.limit == policy.STI_PA_LOGINS
    assert len(reached_events(session_factory)) == 1
    # Another key is counted apart.
    login("addr:192.0.2.1")
    # The next window starts afresh, and the ended window's rows go.
    clock.advance(window)
    rate_limits._next_prune = 0.0
    login("user:spc-1234")
    with session_factory() as session:
        rows = session.execute(select(RateLimitCounter.key, RateLimitCounter.count)).all()
    assert rows == [("user:spc-1234", 1)]


def test_a_limit_of_zero_counts_nothing(home, session_factory):
    limited = with_limits(home, new_orders_per_account=0)
    client = create_app(limited).test_client()
    raw = registered_client(client, limited)
    for _ in range(3):
        assert raw.post(NEW_ORDER, ORDER).status_code == 201
    with session_factory() as session:
        names = set(session.scalars(select(RateLimitCounter.limit_name)))
        assert "new_orders_per_account" not in names
        assert session.scalar(select(func.count()).select_from(Order)) == 3


def test_address_keys_count_ipv6_per_64():
    assert rate_limits.address_key("2001:db8:1:2:3:4:5:6") == rate_limits.address_key("2001:db8:1:2::9") == "2001:db8:1:2::/64"
    assert rate_limits.address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert rate_limits.address_key("192.0.2.1") == "192.0.2.1"


@pytest.mark.parametrize(
    "peer, forwarded, trusted, expected",
    [
        ("192.0.2.9", ["198.51.100.7"], [], "192.0.2.9"),  # no proxy configured: the header is ignored
        ("192.0.2.9", ["198.51.100.7"], ["10.0.0.0/8"], "192.0.2.9"),  # the peer is not our proxy
        ("10.0.0.2", ["198.51.100.7"], ["10.0.0.0/8"], "198.51.100.7"),
        ("10.0.0.2", ["203.0.113.1, 198.51.100.7"], ["10.0.0.0/8"], "198.51.100.7"),  # left entries: the client's own
        ("10.0.0.2", ["198.51.100.7, 10.0.0.3"], ["10.0.0.0/8"], "198.51.100.7"),  # two proxies of ours
        ("10.0.0.2", ["198.51.100.7", "10.0.0.3"], ["10.0.0.0/8"], "198.51.100.7"),  # two header lines
        ("10.0.0.2", ["not-an-address"], ["10.0.0.0/8"], "10.0.0.2"),  # malformed: stop at the last trusted hop
        ("10.0.0.2", ["10.0.0.3"], ["10.0.0.0/8"], "10.0.0.3"),  # only proxies: the farthest one
        ("10.0.0.2", [], ["10.0.0.0/8"], "10.0.0.2"),
    ],
)
def test_client_address_from_a_trusted_proxys_forwarded_for(peer, forwarded, trusted, expected):
    assert resolve(peer, forwarded, [ipaddress.ip_network(n) for n in trusted]) == expected
