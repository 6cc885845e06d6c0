"""Editing a delegation (``ca.records.delegations.update``): what may change, what may not, and the audit
record of before and after.

RFC 9060 §4: a delegate's TNAuthList must be encompassed by its parent's, so the scope is what a
delegation *is*; changing it would silently re-grant numbers under an old audit trail. Only the
delegate's name, the certificate lifetime, the end of the delegation and the claim constraints
(RFC 8226 §8 / RFC 9118) can be edited. Refusals assert the error class, the field it names, a
detail fragment and that no row changed.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from ca.records import delegations, models_audit, models_authority
from ca.numbers.claims import ClaimConstraints
from ca.clock import FixedClock
from ca.errors import NotFoundError, PolicyError
from ca.numbers.tnauthlist import TNScope
from tests.helpers import row_counts

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
ISSUER_SCOPE = TNScope.parse(ranges=["12025550000:1000"], spcs=["709J"])
DAY = dt.timedelta(hours=24)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def delegation(session, clock) -> models_authority.Delegation:
    created = delegations.create(
        session,
        delegate="Example Enterprise",
        scope=TNScope.parse(ranges=["12025550100:100"]),
        issuer_scope=ISSUER_SCOPE,
        max_lifetime=DAY,
        clock=clock,
        actor="user:olivia",
        not_after=NOW + dt.timedelta(days=90),
    )
    session.commit()
    return created


def update_events(session, delegation_id: str) -> list[models_audit.AuditEvent]:
    return list(session.scalars(
        select(models_audit.AuditEvent)
        .where(models_audit.AuditEvent.action == "delegation.update", models_audit.AuditEvent.subject_id == delegation_id)
        .order_by(models_audit.AuditEvent.seq)
    ))


def test_update_records_before_and_after_of_every_changed_field(session, clock, delegation):
    constraints = ClaimConstraints(must_include=("rcd",), permitted_values=(("orig", ("12025550100",)),))
    delegations.update(
        session, delegation.id, clock=clock, actor="user:olivia",
        delegate="Example Enterprise Ltd", max_lifetime=dt.timedelta(hours=12),
        not_after=NOW + dt.timedelta(days=30), constraints=constraints,
    )
    session.commit()

    row = session.get(models_authority.Delegation, delegation.id)
    assert (row.delegate, row.max_lifetime_seconds, row.not_after) == (
        "Example Enterprise Ltd", 12 * 3600, NOW + dt.timedelta(days=30))
    assert ClaimConstraints.from_der(row.constraints_der, row.constraints_kind) == constraints
    (event,) = update_events(session, delegation.id)
    assert event.actor == "user:olivia"
    assert event.details["changed"] == ["constraints", "delegate", "max_lifetime_seconds", "not_after"]
    before, after = event.details["before"], event.details["after"]
    assert (before["delegate"], after["delegate"]) == ("Example Enterprise", "Example Enterprise Ltd")
    assert (before["max_lifetime_seconds"], after["max_lifetime_seconds"]) == (86400, 43200)
    assert (before["constraints"], after["constraints"]) == (None, constraints.to_json())
    assert before["not_after"] == (NOW + dt.timedelta(days=90)).isoformat()
    assert after["not_after"] == (NOW + dt.timedelta(days=30)).isoformat()
    # The scope is reported, unchanged, on both sides.
    assert before["scope"]["tnauthlist"] == after["scope"]["tnauthlist"]


def test_update_can_remove_the_end_and_the_constraints(session, clock):
    created = delegations.create(
        session, delegate="Example", scope=TNScope.parse(tns=["12025550100"]), issuer_scope=ISSUER_SCOPE,
        max_lifetime=DAY, clock=clock, actor="test", not_after=NOW + DAY,
        constraints=ClaimConstraints(must_include=("rcd",)),
    )
    delegations.update(session, created.id, clock=clock, actor="test", not_after=None, constraints=None)
    session.commit()
    row = session.get(models_authority.Delegation, created.id)
    assert (row.not_after, row.constraints_der, row.constraints_kind) == (None, None, None)
    (event,) = update_events(session, created.id)
    assert event.details["changed"] == ["constraints", "not_after"]


def test_update_only_names_the_fields_that_changed(session, clock, delegation):
    delegations.update(session, delegation.id, clock=clock, actor="test",
                       delegate=delegation.delegate, max_lifetime=dt.timedelta(hours=6))
    (event,) = update_events(session, delegation.id)
    assert event.details["changed"] == ["max_lifetime_seconds"]


def test_the_scope_and_the_ca_flag_are_not_editable():
    """A changed scope is a new delegation (RFC 9060 §4): update() has no argument for it."""
    assert delegations.EDITABLE_FIELDS == ("delegate", "max_lifetime_seconds", "not_after", "constraints")
    with pytest.raises(TypeError):
        delegations.update(None, "x", clock=None, actor="t", scope=TNScope.parse(tns=["12025550100"]))  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        delegations.update(None, "x", clock=None, actor="t", ca=True)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"delegate": "  "}, "delegate", "must not be empty"),
        ({"delegate": "x" * 256}, "delegate", "256 characters"),
        ({"max_lifetime": dt.timedelta(minutes=4)}, "max_lifetime", "below the minimum 5m"),
        ({"max_lifetime": dt.timedelta(hours=25), "max_lifetime_ceiling": DAY}, "max_lifetime", "exceeds the policy's 1d"),
        ({"not_after": NOW - dt.timedelta(seconds=1)}, "not_after", "must be later than"),
        ({"not_after": NOW}, "not_after", "must be later than"),
        ({"not_after": dt.datetime(2025, 7, 1)}, "not_after", "time zone"),
        ({}, "delegation", "nothing to change"),
        ({"delegate": "Example Enterprise", "max_lifetime": DAY}, "delegation", "nothing to change"),
    ],
)
def test_update_refuses_bad_values_and_writes_nothing(session, clock, delegation, changes, field, fragment):
    before = row_counts(session)
    with pytest.raises(PolicyError) as raised:
        delegations.update(session, delegation.id, clock=clock, actor="test", **changes)
    session.rollback()
    assert raised.value.field == field
    assert fragment in raised.value.detail
    assert row_counts(session) == before
    assert session.get(models_authority.Delegation, delegation.id).delegate == "Example Enterprise"


def test_a_revoked_delegation_cannot_change(session, clock, delegation):
    plan = delegations.plan_revoke(session, delegation.id, reason="contract ended", clock=clock)
    delegations.execute_revoke(session, plan, clock=clock, actor="test")
    session.commit()
    before = row_counts(session)
    with pytest.raises(PolicyError) as raised:
        delegations.update(session, delegation.id, clock=clock, actor="test", delegate="Other")
    assert (raised.value.field, "is revoked; it cannot change" in raised.value.detail) == ("delegation", True)
    session.rollback()
    assert row_counts(session) == before


def test_an_ended_delegation_cannot_be_extended(session, clock, delegation):
    """Extending an ended grant would re-grant numbers; that is a new delegation."""
    later = FixedClock(NOW + dt.timedelta(days=91))
    with pytest.raises(PolicyError) as raised:
        delegations.update(session, delegation.id, clock=later, actor="test", not_after=NOW + dt.timedelta(days=365))
    assert raised.value.field == "delegation"
    assert "create a new delegation instead" in raised.value.detail


def test_update_of_an_unknown_delegation_is_not_found(session, clock):
    with pytest.raises(NotFoundError) as raised:
        delegations.update(session, "no-such-id", clock=clock, actor="test", delegate="x")
    assert raised.value.field == "delegation"
