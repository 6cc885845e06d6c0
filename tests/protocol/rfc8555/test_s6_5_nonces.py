"""RFC 8555 §6.5 and §7.2: anti-replay nonces, single use, shared through the database."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select

from acme_server import create_app
from acme_server.nonces import NonceStore
from ca.clock import FixedClock
from ca.records.models_acme import Nonce
from protocol.support import RawClient, assert_problem, table_counts

NEW_ORDER = "/acme/new-order"
ORDER_PAYLOAD = {"identifiers": [{"type": "TNAuthList", "value": "MA-iDRYLMTIwMjU1NTAxMDA"}]}
BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


def test_s7_2_head_new_nonce_is_200_with_replay_nonce_and_no_store(client):
    """RFC 8555 §7.2: HEAD newNonce SHOULD be 200; the response MUST carry Cache-Control no-store."""
    response = client.head("/acme/new-nonce")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert BASE64URL.fullmatch(response.headers["Replay-Nonce"])


def test_s7_2_get_new_nonce_is_204_with_empty_body(client):
    """RFC 8555 §7.2: "The server MUST also respond to GET requests ... 204 (No Content)"."""
    response = client.get("/acme/new-nonce")
    assert response.status_code == 204
    assert response.get_data() == b""
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Replay-Nonce"]


def test_s6_5_nonces_are_128_bit_base64url_and_distinct(client):
    """RFC 8555 §6.5: nonces MUST be unique and unpredictable; Replay-Nonce is base64url."""
    nonces = {client.head("/acme/new-nonce").headers["Replay-Nonce"] for _ in range(20)}
    assert len(nonces) == 20
    assert all(BASE64URL.fullmatch(n) and len(n) == 22 for n in nonces)  # 16 bytes, unpadded


def test_s6_5_every_response_carries_a_replay_nonce_errors_included(client, registered):
    """RFC 8555 §6.5: every successful POST response MUST, error responses SHOULD carry one."""
    for response in (
        client.get("/acme/directory"),
        client.get("/acme/no-such-resource"),
        client.get("/acme/new-account"),
        registered.post(NEW_ORDER, ORDER_PAYLOAD),
        registered.post(NEW_ORDER, {"identifiers": []}),
    ):
        assert response.headers.get("Replay-Nonce"), response.status_code


def test_s6_5_replayed_nonce_is_bad_nonce(registered, session_factory):
    """RFC 8555 §6.5: "... the server MUST ... check that the nonce ... has not been used"."""
    nonce = registered.nonce()
    first = registered.post(NEW_ORDER, ORDER_PAYLOAD, nonce=nonce)
    assert first.status_code == 201
    before = table_counts(session_factory)
    replay = registered.post(NEW_ORDER, ORDER_PAYLOAD, nonce=nonce)
    assert_problem(replay, "badNonce", 400, "already used")
    assert table_counts(session_factory) == before


def test_s6_5_nonce_spent_by_a_rejected_request_stays_spent(registered, session_factory):
    """A request refused after the nonce check has still used its nonce: no second try with it."""
    nonce = registered.nonce()
    refused = registered.post(NEW_ORDER, {"identifiers": "not a list"}, nonce=nonce)
    assert_problem(refused, "malformed", 400, "'identifiers'")
    assert_problem(registered.post(NEW_ORDER, ORDER_PAYLOAD, nonce=nonce), "badNonce", 400)


def test_s6_5_unknown_nonce_is_bad_nonce_and_the_answer_carries_a_usable_one(registered):
    """RFC 8555 §6.5: a badNonce response MUST include a fresh Replay-Nonce, usable for the retry."""
    refused = registered.post(NEW_ORDER, ORDER_PAYLOAD, nonce="AAAAAAAAAAAAAAAAAAAAAA")
    assert_problem(refused, "badNonce", 400)
    retry = registered.post(NEW_ORDER, ORDER_PAYLOAD, nonce=refused.headers["Replay-Nonce"])
    assert retry.status_code == 201


def test_s6_5_missing_nonce_is_bad_nonce(registered):
    assert_problem(registered.post(NEW_ORDER, ORDER_PAYLOAD, protected={"nonce": None}), "badNonce", 400, "lacks 'nonce'")


def test_s6_5_2_nonce_that_is_not_base64url_is_malformed(registered):
    """RFC 8555 §6.5.2: a "nonce" that is not base64url makes the JWS malformed."""
    assert_problem(registered.post(NEW_ORDER, ORDER_PAYLOAD, nonce="not/base64+url="), "malformed", 400, "nonce")


def test_s6_5_nonces_are_shared_between_server_processes(home, registered):
    """Nonces live in the database: one app instance redeems what another issued (any worker)."""
    other_process = create_app(home).test_client()
    nonce = other_process.head("/acme/new-nonce").headers["Replay-Nonce"]
    assert registered.post(NEW_ORDER, ORDER_PAYLOAD, nonce=nonce).status_code == 201
    # ...and spent there means spent everywhere.
    other = RawClient(other_process, home.base_url, key=registered.key)
    other.kid = registered.kid
    assert_problem(other.post(NEW_ORDER, ORDER_PAYLOAD, nonce=nonce), "badNonce", 400)


def test_s6_5_expired_nonce_is_bad_nonce(home):
    clock = FixedClock(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
    store = NonceStore(home.engine, lifetime=dt.timedelta(minutes=10), clock=clock)
    stale, fresh = store.issue(), store.issue()
    clock.advance(dt.timedelta(minutes=10))
    assert store.redeem_and_issue(stale)[0] is False
    clock.advance(dt.timedelta(seconds=-1))
    assert store.redeem_and_issue(fresh)[0] is True


def test_s6_5_expired_nonce_rows_are_swept(home, session_factory):
    """The table does not grow without bound: expired rows go at the next sweep."""
    clock = FixedClock(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
    store = NonceStore(home.engine, lifetime=dt.timedelta(minutes=10), clock=clock, purge_interval_seconds=0)
    stale = store.issue()
    clock.advance(dt.timedelta(minutes=9))
    kept = store.issue()
    with session_factory() as session:
        assert {stale, kept} <= set(session.scalars(select(Nonce.value)))
    clock.advance(dt.timedelta(minutes=2))
    store.issue()
    with session_factory() as session:
        values = set(session.scalars(select(Nonce.value)))
    assert stale not in values and kept in values
