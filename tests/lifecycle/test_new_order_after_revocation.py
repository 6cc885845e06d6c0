"""newOrder for numbers whose delegation was revoked or has ended: refused at once with
``unauthorized`` naming the delegation (``ca.records.delegations.check_not_withdrawn``), nothing stored.
A scope an active delegation still covers, or that no delegation covers yet, is accepted: the
order may precede its delegation, and the tkauth-01 challenge decides (RFC 9448 §6).
"""

from __future__ import annotations

import datetime as dt

from ca.records import delegations
from ca.clock import FixedClock
from ca.numbers.tnauthlist import TNScope
from protocol.support import (  # noqa: F401  (fixtures)
    DELEGATED_SCOPE,
    TN_SCOPE,
    app,
    assert_problem,
    authority,
    client,
    home,
    port,
    registered,
    table_counts,
)


def new_order(raw, scope: TNScope):  # type: ignore[no-untyped-def]
    return raw.post("/acme/new-order", {"identifiers": [{"type": "TNAuthList", "value": scope.to_identifier_value()}]})


def test_new_order_under_a_revoked_delegation_is_unauthorized_naming_it(registered, authority, session_factory):  # noqa: F811
    delegation_id = authority.delegate(DELEGATED_SCOPE)
    authority.revoke(delegation_id)
    before = table_counts(session_factory)
    assert_problem(new_order(registered, TN_SCOPE), "unauthorized", 403,
                   f"TN scope TN 12025550100 is covered by no active delegation: delegation {delegation_id} was revoked at ")
    assert table_counts(session_factory) == before


def test_new_order_under_an_ended_delegation_is_unauthorized_naming_it(registered, home, session_factory):  # noqa: F811
    started = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=3)
    with session_factory() as session:
        ended = delegations.create(session, delegate="Example Enterprise", scope=DELEGATED_SCOPE,
                                   issuer_scope=home.issuing_ca().scope, max_lifetime=dt.timedelta(hours=1),
                                   clock=FixedClock(started), actor="test:operator",
                                   not_after=started + dt.timedelta(hours=1))
        session.commit()
    before = table_counts(session_factory)
    assert_problem(new_order(registered, TN_SCOPE), "unauthorized", 403,
                   f"delegation {ended.id} ended at {(started + dt.timedelta(hours=1)).isoformat()}")
    assert table_counts(session_factory) == before


def test_new_order_is_accepted_while_an_active_delegation_still_covers_the_scope(registered, authority):  # noqa: F811
    revoked = authority.delegate(DELEGATED_SCOPE)
    authority.revoke(revoked)
    authority.delegate(TNScope.parse(ranges=["12025550000:200"]), delegate="Successor")
    assert new_order(registered, TN_SCOPE).status_code == 201


def test_new_order_is_accepted_before_any_delegation_covers_the_scope(registered):  # noqa: F811
    assert new_order(registered, TN_SCOPE).status_code == 201


def test_a_revoked_delegation_that_only_overlaps_does_not_refuse(registered, authority):  # noqa: F811
    """Only delegations containing the whole scope speak for it (RFC 9060 §4 "encompassing")."""
    partial = authority.delegate(TNScope.parse(ranges=["12025550100:2"]))
    authority.revoke(partial)
    assert new_order(registered, TNScope.parse(ranges=["12025550100:10"])).status_code == 201
