"""RFC 8555 §6.5 and §7.2: anti-replay nonces, single use, shared through the database."""

from __future__ import annotations

import base64
import datetime as dt
import re

from sqlalchemy import select

from acme_server import create_app
from acme_server.nonces import NonceStore
from ca.clock import FixedClock
from ca.records.models_acme import SpentNonce
from protocol.support import RawClient, assert_problem, table_counts
from tests.helpers import row_counts

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


def test_s6_5_nonces_are_base64url_distinct_and_carry_80_random_bits(client):
    """RFC 8555 §6.5: nonces MUST be unique and unpredictable; Replay-Nonce is base64url.
    32 bytes: the time of issue (6), 80 random bits (10), a 128-bit MAC (16)."""
    nonces = {client.head("/acme/new-nonce").headers["Replay-Nonce"] for _ in range(20)}
    assert len(nonces) == 20
    assert all(BASE64URL.fullmatch(n) and len(n) == 43 for n in nonces)  # 32 bytes, unpadded
    randoms = {base64.urlsafe_b64decode(n + "=")[6:16] for n in nonces}
    assert len(randoms) == 20


def row_counts_all(session_factory) -> dict[str, int]:
    with session_factory() as session:
        return row_counts(session)


def test_s6_5_handing_out_nonces_writes_nothing(client, session_factory):
    """A nonce is stamped and MACed, not stored: only a spent one takes a row."""
    client.head("/acme/new-nonce")  # the first makes the shared key
    before = row_counts_all(session_factory)
    for _ in range(5):
        client.head("/acme/new-nonce")
    assert row_counts_all(session_factory) == before


def test_s6_5_a_nonce_with_a_forged_or_altered_mac_is_bad_nonce(registered):
    """A nonce is valid only if its MAC holds: an altered time, random part or tag is refused."""
    genuine = base64.urlsafe_b64decode(registered.nonce() + "=")
    for position in (0, 5, 8, 20, 31):
        altered = bytearray(genuine)
        altered[position] ^= 0x01
        forged = base64.urlsafe_b64encode(bytes(altered)).rstrip(b"=").decode()
        assert_problem(registered.post(NEW_ORDER, ORDER_PAYLOAD, nonce=forged), "badNonce", 400)


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


def test_s6_5_a_nonce_stamped_ahead_of_the_clock_is_bad_nonce(home):
    """Another host's clock may run a little ahead (a minute is allowed); a nonce stamped further
    in the future than that was not issued by a host of this authority's."""
    clock = FixedClock(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
    store = NonceStore(home.engine, lifetime=dt.timedelta(minutes=10), clock=clock)
    clock.advance(dt.timedelta(minutes=2))
    ahead = store.issue()
    clock.advance(dt.timedelta(minutes=-1, seconds=-30))
    slightly = store.issue()
    clock.advance(dt.timedelta(seconds=-30))
    assert store.redeem_and_issue(ahead)[0] is False
    assert store.redeem_and_issue(slightly)[0] is True


def test_s6_5_nonces_of_another_database_are_bad_nonce(home, tmp_path):
    """The MAC key is the database's: a nonce another authority's store issued is refused."""
    from ca.records.store import make_engine
    from ca.records.models_base import Base

    other_engine = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    Base.metadata.create_all(other_engine)
    clock = FixedClock(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
    try:
        foreign = NonceStore(other_engine, lifetime=dt.timedelta(minutes=10), clock=clock).issue()
    finally:
        other_engine.dispose()
    assert NonceStore(home.engine, lifetime=dt.timedelta(minutes=10), clock=clock).redeem_and_issue(foreign)[0] is False


def test_s6_5_expired_spent_nonce_rows_are_swept(home, session_factory):
    """The spent nonces do not grow without bound: a row goes at the first sweep after its nonce
    would have expired (until then it is what refuses a replay)."""
    clock = FixedClock(dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
    store = NonceStore(home.engine, lifetime=dt.timedelta(minutes=10), clock=clock, purge_interval_seconds=0)
    stale = store.issue()
    assert store.redeem_and_issue(stale)[0] is True
    clock.advance(dt.timedelta(minutes=9))
    kept = store.issue()
    assert store.redeem_and_issue(kept)[0] is True
    with session_factory() as session:
        assert {stale, kept} <= set(session.scalars(select(SpentNonce.value)))
    clock.advance(dt.timedelta(minutes=2))
    assert store.redeem_and_issue(store.issue())[0] is True
    with session_factory() as session:
        values = set(session.scalars(select(SpentNonce.value)))
    assert stale not in values and kept in values
