"""Delegations: creation inside the issuing CA's scope (RFC 9060 §4), lookup, revocation.

Refusals assert the error class, the field it names, a detail fragment and unchanged row counts.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event, func, select

from ca.records import audit, delegations, models_acme, models_audit, models_authority, record_json
from ca.numbers.claims import ClaimConstraints
from ca.clock import FixedClock
from ca.errors import DelegationError, NotFoundError, PolicyError, RevocationError, ScopeError
from ca.numbers.tnauthlist import TNScope
from tests.helpers import row_counts

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.timezone.utc)


ISSUER_SCOPE = TNScope.parse(ranges=["12125551000:1000", "12025550000:1000", "0123:10"], spcs=["709J"])
DAY = dt.timedelta(hours=24)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


def create(session, clock, scope: TNScope, **kwargs) -> models_authority.Delegation:  # type: ignore[no-untyped-def]
    options = {
        "delegate": "Example Enterprise",
        "scope": scope,
        "issuer_scope": ISSUER_SCOPE,
        "max_lifetime": DAY,
        "clock": clock,
        "actor": "operator",
    }
    options.update(kwargs)
    delegation = delegations.create(session, **options)
    session.commit()
    return delegation


def scope(*, tns=(), ranges=(), spcs=()) -> TNScope:  # type: ignore[no-untyped-def]
    return TNScope.parse(tns=tns, ranges=ranges, spcs=spcs)


def statements_during(session, call):  # type: ignore[no-untyped-def]
    """(call's result, SQL statements it ran)."""
    executed: list[str] = []
    engine = session.get_bind()
    listener = lambda *args: executed.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        return call(), executed
    finally:
        event.remove(engine, "before_cursor_execute", listener)


def refused(session, error_type, field, fragment, call):  # type: ignore[no-untyped-def]
    before = row_counts(session)
    with pytest.raises(error_type) as info:
        call()
    session.rollback()
    assert info.value.field == field, info.value.detail
    assert fragment in info.value.detail, info.value.detail
    assert row_counts(session) == before
    return info.value


class TestCreate:
    def test_creates_active_delegation_with_index_rows_and_audit_event(self, session, clock) -> None:
        requested = scope(ranges=["12025550100:50", "12025550150:50"], spcs=["709J"])
        delegation = create(session, clock, requested, ca=True, not_after=NOW + dt.timedelta(days=30))
        row = session.get(models_authority.Delegation, delegation.id)
        assert row.status == "active"
        assert row.delegate == "Example Enterprise"
        assert row.ca_allowed is True
        assert row.max_lifetime_seconds == 86400
        assert row.not_before == NOW and row.not_after == NOW + dt.timedelta(days=30)
        assert row.created_by == "operator"
        # Stored normalized: the two adjacent ranges become one.
        assert TNScope.from_der(row.scope_der) == requested.normalized()
        entries = session.scalars(
            select(models_authority.DelegationScopeEntry).where(models_authority.DelegationScopeEntry.delegation_id == row.id)
        ).all()
        assert sorted((e.width, e.lo, e.hi, e.spc) for e in entries if e.spc is None) == [(11, 12025550100, 12025550199, None)]
        assert [e.spc for e in entries if e.spc is not None] == ["709J"]
        event = session.scalars(select(models_audit.AuditEvent).where(models_audit.AuditEvent.action == "delegation.create")).one()
        assert (event.subject_type, event.subject_id, event.actor) == ("delegation", row.id, "operator")
        assert event.details["after"]["scope"]["description"] == "SPC 709J, range 12025550100+100"
        audit.verify(session)

    def test_claim_constraints_are_stored_as_der_of_their_kind(self, session, clock) -> None:
        constraints = ClaimConstraints.from_json({"mustInclude": ["rcd"], "mustExclude": ["div"]})
        delegation = create(session, clock, scope(tns=["12025550100"]), constraints=constraints)
        assert delegation.constraints_kind == "enhanced"
        assert ClaimConstraints.from_der(delegation.constraints_der, "enhanced") == constraints
        assert record_json.delegation_fields(delegation)["constraints"] == constraints.to_json()

    def test_rfc9060_s4_scope_outside_the_issuing_ca_is_refused(self, session, clock) -> None:
        """RFC 9060 §4: a delegate's TNAuthList must be "equal to or a subset of" its parent's."""
        error = refused(session, ScopeError, "scope", "is not inside the issuing CA's scope",
                        lambda: create(session, clock, scope(ranges=["12025550900:200"])))
        assert "range 12025551000+100 is outside it" in error.detail

    def test_rfc9060_s4_1_spc_parent_does_not_encompass_numbers(self, session, clock) -> None:
        """RFC 9060 §4.1: an SPC covers numbers only through industry data, which we do not have."""
        refused(session, ScopeError, "scope", "is not inside", lambda: create(
            session, clock, scope(tns=["14155550100"]), issuer_scope=TNScope.parse(spcs=["709J"])))

    @pytest.mark.parametrize("name", ["", "   "])
    def test_empty_delegate_is_refused(self, session, clock, name) -> None:
        refused(session, PolicyError, "delegate", "must not be empty",
                lambda: create(session, clock, scope(tns=["12025550100"]), delegate=name))

    def test_lifetime_below_the_floor_is_refused(self, session, clock) -> None:
        refused(session, PolicyError, "max_lifetime", "below the minimum 5m",
                lambda: create(session, clock, scope(tns=["12025550100"]), max_lifetime=dt.timedelta(seconds=30)))

    def test_lifetime_above_the_policy_ceiling_is_refused(self, session, clock) -> None:
        refused(session, PolicyError, "max_lifetime", "exceeds the policy's 1d", lambda: create(
            session, clock, scope(tns=["12025550100"]), max_lifetime=dt.timedelta(days=2), max_lifetime_ceiling=DAY))

    def test_not_after_in_the_past_is_refused(self, session, clock) -> None:
        refused(session, PolicyError, "not_after", "must be later than", lambda: create(
            session, clock, scope(tns=["12025550100"]), not_after=NOW - dt.timedelta(seconds=1)))

    def test_not_after_before_not_before_is_refused(self, session, clock) -> None:
        refused(session, PolicyError, "not_after", "must be later than", lambda: create(
            session, clock, scope(tns=["12025550100"]), not_before=NOW + dt.timedelta(days=2),
            not_after=NOW + dt.timedelta(days=1)))

    def test_naive_datetime_is_refused(self, session, clock) -> None:
        refused(session, PolicyError, "not_after", "time zone", lambda: create(
            session, clock, scope(tns=["12025550100"]), not_after=dt.datetime(2030, 1, 1)))


class TestFindCovering:
    """RFC 9060 §4 "encompassing", answered through the delegation_scope_entries index."""

    @pytest.mark.parametrize(
        "delegated, requested",
        [
            (scope(ranges=["12125551000:1000"]), scope(ranges=["12125551500:100"])),  # core-standards §3.7 case 1
            (scope(ranges=["12125551000:1000"]), scope(tns=["12125551824"])),  # case 2
            (scope(ranges=["12125551000:500", "12125551500:500"]), scope(ranges=["12125551400:200"])),  # case 4
            (scope(spcs=["709J"]), scope(spcs=["709J"])),  # case 6
            (scope(ranges=["12125551000:1000"]), scope(ranges=["12125551000:1000"], tns=["12125551999"])),  # case 10
            (scope(ranges=["12125551000:1000"], spcs=["709J"]), scope(tns=["12125551001"], spcs=["709J"])),
        ],
    )
    def test_rfc9060_s4_encompassed_scope_finds_its_delegation(self, session, clock, delegated, requested) -> None:
        delegation = create(session, clock, delegated)
        assert delegations.find_covering(session, requested, clock=clock).id == delegation.id

    @pytest.mark.parametrize(
        "delegated, requested",
        [
            (scope(ranges=["12125551000:1000"]), scope(ranges=["12125551950:100"])),  # case 3
            (scope(tns=["12125551824"]), scope(tns=["12125551825"])),  # case 5
            (scope(spcs=["709J"]), scope(tns=["12125551000"])),  # case 8: needs industry data
            (scope(ranges=["0123:10"]), scope(tns=["123"])),  # case 9: width differs
            (scope(ranges=["12125551000:1000"]), scope(ranges=["12125551500:10"], spcs=["709J"])),
        ],
    )
    def test_rfc9060_s4_scope_not_encompassed_is_refused(self, session, clock, delegated, requested) -> None:
        create(session, clock, delegated)
        with pytest.raises(DelegationError) as info:
            delegations.find_covering(session, requested, clock=clock)
        assert info.value.field == "scope"
        assert info.value.detail == f"TN scope {requested.describe()} is not covered by any active delegation"

    def test_scope_spanning_two_delegations_is_not_covered(self, session, clock) -> None:
        """Each certificate is issued under one delegation, so a union across delegations is no cover."""
        create(session, clock, scope(ranges=["12125551000:500"]))
        create(session, clock, scope(ranges=["12125551500:500"]))
        with pytest.raises(DelegationError):
            delegations.find_covering(session, scope(ranges=["12125551400:200"]), clock=clock)

    def test_revoked_delegation_covers_nothing_and_the_detail_says_so(self, session, clock) -> None:
        delegation = create(session, clock, scope(ranges=["12125551000:1000"]))
        delegations.execute_revoke(session, delegations.plan_revoke(session, delegation.id, reason="x", clock=clock),
                                   clock=clock, actor="operator")
        with pytest.raises(DelegationError) as info:
            delegations.find_covering(session, scope(tns=["12125551824"]), clock=clock)
        assert info.value.detail == (
            f"TN scope TN 12125551824 is not covered by any active delegation ({delegation.id} is revoked)"
        )

    def test_ended_delegation_covers_nothing(self, session, clock) -> None:
        delegation = create(session, clock, scope(ranges=["12125551000:1000"]), not_after=NOW + dt.timedelta(hours=1))
        clock.advance(dt.timedelta(hours=1))
        with pytest.raises(DelegationError, match=f"{delegation.id} ended"):
            delegations.find_covering(session, scope(tns=["12125551824"]), clock=clock)

    def test_delegation_not_yet_valid_covers_nothing(self, session, clock) -> None:
        delegation = create(session, clock, scope(ranges=["12125551000:1000"]), not_before=NOW + dt.timedelta(days=1))
        with pytest.raises(DelegationError, match=f"{delegation.id} starts"):
            delegations.find_covering(session, scope(tns=["12125551824"]), clock=clock)

    def test_oldest_covering_delegation_wins(self, session, clock) -> None:
        first = create(session, clock, scope(ranges=["12125551000:1000"]))
        clock.advance(dt.timedelta(seconds=1))
        create(session, clock, scope(ranges=["12125551800:100"]))
        assert delegations.find_covering(session, scope(tns=["12125551824"]), clock=clock).id == first.id

    def test_active_delegation_is_found_past_a_revoked_one(self, session, clock) -> None:
        revoked = create(session, clock, scope(ranges=["12125551000:1000"]))
        delegations.execute_revoke(session, delegations.plan_revoke(session, revoked.id, reason="x", clock=clock),
                                   clock=clock, actor="operator")
        clock.advance(dt.timedelta(seconds=1))
        active = create(session, clock, scope(ranges=["12125551800:100"]))
        assert delegations.find_covering(session, scope(tns=["12125551824"]), clock=clock).id == active.id

    def test_delegation_id_restricts_the_search(self, session, clock) -> None:
        first = create(session, clock, scope(ranges=["12125551000:1000"]))
        second = create(session, clock, scope(ranges=["12125551800:100"]))
        found = delegations.find_covering(session, scope(tns=["12125551824"]), clock=clock, delegation_id=second.id)
        assert found.id == second.id
        with pytest.raises(DelegationError, match=f"not covered by delegation {second.id}"):
            delegations.find_covering(session, scope(tns=["12125551001"]), clock=clock, delegation_id=second.id)
        assert first.id != second.id

    def test_literal_number_is_matched_exactly(self, session, clock) -> None:
        delegation = create(session, clock, scope(tns=["1202555*100"]),
                            issuer_scope=TNScope.parse(tns=["1202555*100"]))
        assert delegations.find_covering(session, scope(tns=["1202555*100"]), clock=clock).id == delegation.id
        with pytest.raises(DelegationError):
            delegations.find_covering(session, scope(tns=["1202555#100"]), clock=clock)

    def test_empty_scope_is_refused(self, session, clock) -> None:
        with pytest.raises(DelegationError, match="empty TN scope"):
            delegations.find_covering(session, TNScope(()), clock=clock)


class TestListAndGet:
    def test_list_is_oldest_first_and_filters_by_status(self, session, clock) -> None:
        first = create(session, clock, scope(tns=["12025550100"]))
        clock.advance(dt.timedelta(seconds=1))
        second = create(session, clock, scope(tns=["12025550101"]), delegate="Other")
        delegations.execute_revoke(session, delegations.plan_revoke(session, first.id, reason="x", clock=clock),
                                   clock=clock, actor="operator")
        assert [d.id for d in delegations.list_delegations(session)] == [first.id, second.id]
        assert [d.id for d in delegations.list_delegations(session, status="active")] == [second.id]
        assert [d.id for d in delegations.list_delegations(session, delegate="Other")] == [second.id]

    def test_get_unknown_id_names_it(self, session) -> None:
        with pytest.raises(NotFoundError) as info:
            delegations.get(session, "nope")
        assert info.value.field == "delegation"
        assert "'nope'" in info.value.detail


class TestLargeScopes:
    """A TNAuthList of thousands of entries costs one bounded statement, not one per entry (a scope
    of ~1,000 entries was a 500 on SQLite: "Expression tree is too large")."""

    def numbers(self, count: int, start: int = 12125551000) -> TNScope:
        # Every other number, so normalization cannot merge them into ranges.
        return scope(tns=[str(start + 2 * i) for i in range(count)])

    def test_find_covering_a_scope_of_2000_entries_is_one_statement(self, session, clock) -> None:
        wide = ISSUER_SCOPE_WIDE
        delegation = create(session, clock, scope(ranges=["12125550000:10000"]), issuer_scope=wide)
        create(session, clock, scope(ranges=["12125559000:10"]), issuer_scope=wide)  # overlaps, does not contain
        requested = self.numbers(2000, start=12125550001)
        session.expire_all()
        found, executed = statements_during(session, lambda: delegations.find_covering(session, requested, clock=clock))
        assert found.id == delegation.id
        assert len(executed) == 1 and all(len(sql) < 4000 for sql in executed)

    def test_a_scope_one_number_outside_every_delegation_is_not_covered(self, session, clock) -> None:
        create(session, clock, scope(ranges=["12125550000:10000"]), issuer_scope=ISSUER_SCOPE_WIDE)
        requested = TNScope.parse(tns=[str(12125550001 + 2 * i) for i in range(1500)] + ["12125569999"])
        with pytest.raises(DelegationError):
            delegations.find_covering(session, requested, clock=clock)

    def test_check_not_withdrawn_with_2000_entries_is_one_statement(self, session, clock) -> None:
        revoked = create(session, clock, scope(ranges=["12125550000:10000"]), issuer_scope=ISSUER_SCOPE_WIDE)
        plan = delegations.plan_revoke(session, revoked.id, reason="left", clock=clock)
        delegations.execute_revoke(session, plan, clock=clock, actor="operator")
        session.commit()
        requested = self.numbers(2000, start=12125550001)

        def check() -> str:
            with pytest.raises(DelegationError) as info:
                delegations.check_not_withdrawn(session, requested, clock=clock)
            return info.value.detail

        detail, executed = statements_during(session, check)
        assert f"delegation {revoked.id} was revoked" in detail
        assert len(executed) == 1


ISSUER_SCOPE_WIDE = TNScope.parse(ranges=["12125550000:20000"])


class TestRevoke:
    def test_plan_writes_nothing(self, session, clock) -> None:
        delegation = create(session, clock, scope(ranges=["12025550000:100"]))
        before = row_counts(session)
        plan = delegations.plan_revoke(session, delegation.id, reason=" contract ended ", clock=clock)
        session.commit()
        assert row_counts(session) == before
        assert session.get(models_authority.Delegation, delegation.id).status == "active"
        assert plan == delegations.RevocationPlan(
            delegation_id=delegation.id, delegate="Example Enterprise", scope="range 12025550000+100",
            status_before="active", status_after="revoked", reason="contract ended",
            unexpired_tokens=0, unexpired_certificates=0,
        )

    def test_execute_revokes_and_audits_before_and_after(self, session, clock) -> None:
        delegation = create(session, clock, scope(ranges=["12025550000:100"]))
        plan = delegations.plan_revoke(session, delegation.id, reason="contract ended", clock=clock)
        clock.advance(dt.timedelta(minutes=1))
        delegations.execute_revoke(session, plan, clock=clock, actor="alice")
        session.commit()
        row = session.get(models_authority.Delegation, delegation.id)
        assert (row.status, row.revoked_at, row.revocation_reason) == ("revoked", clock.now(), "contract ended")
        event = session.scalars(select(models_audit.AuditEvent).where(models_audit.AuditEvent.action == "delegation.revoke")).one()
        assert event.actor == "alice"
        assert event.details["before"]["status"] == "active"
        assert event.details["after"]["status"] == "revoked"
        assert event.details["plan"]["reason"] == "contract ended"
        audit.verify(session)

    def test_already_revoked_is_refused(self, session, clock) -> None:
        delegation = create(session, clock, scope(tns=["12025550100"]))
        delegations.execute_revoke(session, delegations.plan_revoke(session, delegation.id, reason="x", clock=clock),
                                   clock=clock, actor="operator")
        session.commit()
        refused(session, RevocationError, "delegation", "is already revoked",
                lambda: delegations.plan_revoke(session, delegation.id, reason="again", clock=clock))

    def test_stale_plan_is_refused(self, session, clock) -> None:
        """What the operator saw is what happens: a plan made before another revocation is void."""
        delegation = create(session, clock, scope(tns=["12025550100"]))
        plan = delegations.plan_revoke(session, delegation.id, reason="x", clock=clock)
        delegations.execute_revoke(session, plan, clock=clock, actor="operator")
        session.commit()
        refused(session, RevocationError, "delegation", "plan again",
                lambda: delegations.execute_revoke(session, plan, clock=clock, actor="operator"))

    @pytest.mark.parametrize("reason", ["", "  "])
    def test_reason_is_required(self, session, clock, reason) -> None:
        delegation = create(session, clock, scope(tns=["12025550100"]))
        refused(session, RevocationError, "reason", "reason is required",
                lambda: delegations.plan_revoke(session, delegation.id, reason=reason, clock=clock))

    def test_unknown_delegation_is_not_found(self, session, clock) -> None:
        refused(session, NotFoundError, "delegation", "no delegation with id 'missing'",
                lambda: delegations.plan_revoke(session, "missing", reason="x", clock=clock))

    def test_plan_counts_unexpired_tokens(self, session, clock) -> None:
        delegation = create(session, clock, scope(tns=["12025550100"]))
        for jti, expires in (("live", NOW + dt.timedelta(minutes=5)), ("dead", NOW - dt.timedelta(minutes=5))):
            session.add(models_acme.AuthorityToken(jti=jti, delegation_id=delegation.id, fingerprint="SHA256 00",
                                             scope_der=delegation.scope_der, expires_at=expires))
        session.commit()
        assert delegations.plan_revoke(session, delegation.id, reason="x", clock=clock).unexpired_tokens == 1

    def test_plan_counts_unexpired_unrevoked_certificates_it_leaves_alone(self, session, clock) -> None:
        """The cascade to certificates is a later step; the plan says how many it leaves valid."""
        delegation = create(session, clock, scope(tns=["12025550100"]))
        issuer = models_authority.Issuer(name="issuing", certificate_der=b"\x30\x00", signer_uri="file:keys/issuing.key")
        session.add(issuer)
        session.flush()

        def certificate(serial: str, not_after: dt.datetime, stage: str = "issued") -> models_authority.Certificate:
            row = models_authority.Certificate(serial=serial, issuer_id=issuer.id, delegation_id=delegation.id, kind="end-entity",
                                    stage=stage, scope_der=delegation.scope_der, subject="CN=x", spki_sha256="00" * 32,
                                    not_before=NOW - DAY, not_after=not_after)
            session.add(row)
            session.flush()
            return row

        live = certificate("01", NOW + DAY)  # counts
        certificate("02", NOW - dt.timedelta(seconds=1))  # expired
        certificate("03", NOW + DAY, stage="precertificate")  # never issued
        revoked = certificate("04", NOW + DAY)
        session.add(models_authority.Revocation(certificate_id=revoked.id, actor="operator", source="operator", revoked_at=NOW))
        session.commit()
        plan = delegations.plan_revoke(session, delegation.id, reason="x", clock=clock)
        assert plan.unexpired_certificates == 1
        delegations.execute_revoke(session, plan, clock=clock, actor="operator")
        session.commit()
        assert session.get(models_authority.Certificate, live.id).revocation is None  # left for the cascade
