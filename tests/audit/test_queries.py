"""Audit queries (ca/records/queries.py): who could sign for a number at time T, and the other questions.

The scenario tests issue real certificates through ca.issuing.issuance.issue on a home made by
``tnca init``; the containment tests compare the indexed span-class query with a brute-force
answer over thousands of stored intervals.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import random
import re

import pytest
from sqlalchemy import insert, select

from ca.records import exports, queries, query_filters
from ca.errors import QueryError
from ca.lifecycle.reasons import CRLReason
from ca.records.models_authority import Certificate, CertificateScopeEntry, Issuer, span_digits
from ca.numbers.tnauthlist import TNScope
from tests.audit.support import Authority

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


def _q(authority: Authority, **params: str) -> list[dict]:
    with authority.session() as session:
        return queries.certificates(session, query_filters.parse_certificate_filter(params), now=authority.clock.now()).items


def _serials(authority: Authority, **params: str) -> list[str]:
    return [item["serial"] for item in _q(authority, **params)]


def _iso(value: dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@dataclasses.dataclass
class Scenario:
    t0: dt.datetime
    delegation: str
    tn_cert: str  # TN 12025550100, issued at t0 for 24h, revoked at t0 + 2h
    range_cert: str  # range 12025550100+10, issued at t0 + 2d
    spc_cert: str  # SPC 1234, issued at t0
    other_cert: str  # TN 12025550200 under another delegate, issued at t0


@pytest.fixture
def scenario(authority: Authority) -> Scenario:
    t0 = authority.clock.now()
    acme = authority.delegate(TNScope.parse(ranges=["12025550000:1000"], spcs=["1234"]), delegate="Acme Corp")
    other = authority.delegate(TNScope.parse(ranges=["12025550200:10"]), delegate="Globex")
    tn_cert = authority.issue(TNScope.parse(tns=["12025550100"]), delegation_id=acme)
    spc_cert = authority.issue(TNScope.parse(spcs=["1234"]), delegation_id=acme)
    other_cert = authority.issue(TNScope.parse(tns=["12025550200"]), delegation_id=other, subject="CN=Globex")
    authority.advance(hours=2)
    authority.revoke(tn_cert, CRLReason.KEY_COMPROMISE)
    authority.advance(days=2, hours=-2)
    range_cert = authority.issue(TNScope.parse(ranges=["12025550100:10"]), delegation_id=acme)
    authority.advance(hours=1)
    return Scenario(t0, acme, tn_cert, range_cert, spc_cert, other_cert)


# ---- who covered this number at T ------------------------------------------------------------


def test_by_tn_at_time_finds_exactly_the_certificates_valid_then(authority, scenario):
    assert _serials(authority, tn="12025550100", at=_iso(scenario.t0 + HOUR)) == [scenario.tn_cert]
    assert _serials(authority, tn="12025550105", at=_iso(scenario.t0 + HOUR)) == []
    assert _serials(authority, tn="12025550105", at=_iso(scenario.t0 + 2 * DAY + HOUR)) == [scenario.range_cert]
    assert _serials(authority, tn="12025550100") == [scenario.range_cert, scenario.tn_cert]  # any time, newest first


def test_validity_is_inclusive_at_both_ends_rfc5280_4_1_2_5(authority, scenario):
    """RFC 5280 §4.1.2.5: the validity period is notBefore through notAfter, inclusive."""
    item = _q(authority, serial=scenario.tn_cert)[0]
    not_before = dt.datetime.fromisoformat(item["not_before"])
    not_after = dt.datetime.fromisoformat(item["not_after"])
    second = dt.timedelta(seconds=1)
    assert _serials(authority, tn="12025550100", at=_iso(not_before)) == [scenario.tn_cert]
    assert _serials(authority, tn="12025550100", at=_iso(not_after)) == [scenario.tn_cert]
    assert _serials(authority, tn="12025550100", at=_iso(not_before - second)) == []
    assert _serials(authority, tn="12025550100", at=_iso(not_after + second)) == []


def test_revocation_state_is_as_of_the_time_asked(authority, scenario):
    before = _iso(scenario.t0 + HOUR)  # revoked at t0 + 2h
    after = _iso(scenario.t0 + 3 * HOUR)
    assert _serials(authority, tn="12025550100", at=before, revocation="unrevoked") == [scenario.tn_cert]
    assert _serials(authority, tn="12025550100", at=before, revocation="revoked") == []
    assert _serials(authority, tn="12025550100", at=after, revocation="unrevoked") == []
    assert _serials(authority, tn="12025550100", at=after, revocation="revoked") == [scenario.tn_cert]


def test_item_says_who_said_so_delegation_issuance_event_and_revocation(authority, scenario):
    (item,) = _q(authority, tn="12025550100", at=_iso(scenario.t0 + HOUR))
    assert item["scope"] == {
        "description": "TN 12025550100",
        "tnauthlist": TNScope.parse(tns=["12025550100"]).to_identifier_value(),
        "entries": [{"type": "tn", "number": "12025550100"}],
    }
    assert item["delegation"] == {"id": scenario.delegation, "delegate": "Acme Corp", "created_by": "user:olivia",
                                  "status": "active"}
    assert item["issue_event"]["actor"] == "acme:account"
    assert item["revocation"]["reason"] == "key-compromise" and item["revocation"]["reason_code"] == 1
    assert item["revocation"]["actor"] == "user:olivia"
    assert item["issuer"] == "issuing" and item["stage"] == "issued" and item["kind"] == "end-entity"
    with authority.session() as session:
        events = queries.events(session, query_filters.parse_event_filter({"subject_id": scenario.tn_cert})).items
    assert {e["action"] for e in events} == {"certificate.issue", "certificate.revoke"}
    assert item["issue_event"]["seq"] in {e["seq"] for e in events}


def test_a_tn_query_never_matches_an_spc_entry_rfc9060_4_1(authority, scenario):
    """RFC 9060 §4.1: which numbers an SPC holds needs outside data; query by spc instead."""
    assert scenario.spc_cert not in _serials(authority, tn="12025550100")
    assert _serials(authority, spc="1234") == [scenario.spc_cert]
    assert _serials(authority, spc="12345") == []


def test_numbers_of_another_width_are_other_numbers(authority, scenario):
    assert _serials(authority, tn="2025550100") == []
    assert _serials(authority, tn="012025550100") == []


def test_range_query_finds_every_certificate_sharing_a_number(authority, scenario):
    assert _serials(authority, range="12025550095:6") == [scenario.range_cert, scenario.tn_cert]
    assert _serials(authority, range="12025550101:3") == [scenario.range_cert]
    assert _serials(authority, range="12025550110:90") == []
    assert set(_serials(authority, range="12025550000:1000")) == {scenario.range_cert, scenario.tn_cert,
                                                                 scenario.other_cert}
    # A query range may run past the width; it ends at 99999999999.
    assert _serials(authority, range="99999999990:100") == []


def test_filters_by_delegate_delegation_serial_and_issue_window(authority, scenario):
    assert _serials(authority, delegate="Globex") == [scenario.other_cert]
    assert set(_serials(authority, delegation=scenario.delegation)) == {scenario.tn_cert, scenario.range_cert,
                                                                       scenario.spc_cert}
    assert _serials(authority, serial=scenario.spc_cert) == [scenario.spc_cert]
    assert _serials(authority, issued_after=_iso(scenario.t0 + DAY)) == [scenario.range_cert]
    assert set(_serials(authority, issued_before=_iso(scenario.t0 + DAY))) == {scenario.tn_cert, scenario.spc_cert,
                                                                              scenario.other_cert}
    assert _serials(authority, delegate="Nobody") == []


def test_revocations_by_number_reason_and_window(authority, scenario):
    with authority.session() as session:
        def run(**params):
            return queries.revocations(session, query_filters.parse_revocation_filter(params)).items
        (item,) = run(tn="12025550100")
        assert item["serial"] == scenario.tn_cert
        assert item["certificate"]["serial"] == scenario.tn_cert
        assert item["revoke_event"]["actor"] == "user:olivia"
        assert run(reason="key-compromise") == [item]
        assert run(reason="superseded") == []
        assert run(revoked_after=_iso(scenario.t0 + 3 * HOUR)) == []
        assert run(revoked_before=_iso(scenario.t0 + 3 * HOUR), source="operator") == [item]
        assert run(delegate="Globex") == []


def test_delegations_in_force_for_a_number_at_a_time(authority, scenario):
    authority.revoke_delegation(scenario.delegation)  # now = t0 + 2d + 1h
    with authority.session() as session:
        def ids(**params):
            return [d["id"] for d in queries.delegations(session, query_filters.parse_delegation_filter(params)).items]
        assert ids(tn="12025550100", at=_iso(scenario.t0 + HOUR)) == [scenario.delegation]
        assert ids(tn="12025550100", at=_iso(scenario.t0 + 3 * DAY)) == []
        assert ids(tn="12025550205") != [] and ids(status="revoked") == [scenario.delegation]
        (item,) = queries.delegations(session, query_filters.parse_delegation_filter({"status": "revoked"})).items
        assert item["create_event"]["actor"] == "user:olivia" and item["revoke_event"]["actor"] == "user:olivia"


# ---- paging ------------------------------------------------------------------------------------


def test_keyset_pages_are_disjoint_complete_and_stable_while_rows_are_added(authority):
    delegation = authority.delegate()
    serials = [authority.issue(TNScope.parse(tns=[f"120255500{i:02d}"]), delegation_id=delegation) for i in range(7)]
    seen: list[str] = []
    with authority.session() as session:
        flt = query_filters.parse_certificate_filter({"range": "12025550000:100", "limit": "3"})
        page = queries.certificates(session, flt)
        seen += [i["serial"] for i in page.items]
        # A certificate issued between two page reads lands before page one, not on a later page.
        authority.issue(TNScope.parse(tns=["12025550050"]), delegation_id=delegation)
        while page.next_cursor is not None:
            flt = query_filters.parse_certificate_filter({"range": "12025550000:100", "limit": "3",
                                                    "cursor": page.next_cursor})
            page = queries.certificates(session, flt)
            seen += [i["serial"] for i in page.items]
    assert seen == list(reversed(serials))
    with authority.session() as session:
        everything = list(exports.iter_all(functools.partial(queries.certificates, session),
                                           query_filters.parse_certificate_filter({"range": "12025550000:100"}), batch=2))
    assert len(everything) == 8


def test_the_cursor_is_the_key_of_the_last_item_seen(authority):
    delegation = authority.delegate()
    for i in range(3):
        authority.issue(TNScope.parse(tns=[f"1202555001{i}"]), delegation_id=delegation)
    with authority.session() as session:
        everything = queries.certificates(session, query_filters.parse_certificate_filter({})).items
        page = queries.certificates(session, query_filters.parse_certificate_filter({"limit": "1"}))
        rest = queries.certificates(session, query_filters.parse_certificate_filter({"cursor": page.next_cursor})).items
        delegation_page = queries.delegations(session, query_filters.parse_delegation_filter({}))
        assert queries.certificates(session, query_filters.parse_certificate_filter({"cursor": "0"})).items == []
        # Regression (found by schemathesis on PostgreSQL): a cursor beyond a 32-bit id column
        # was bound as INTEGER and failed; it means "everything below".
        huge = query_filters.parse_certificate_filter({"cursor": "9" * 18})
        assert queries.certificates(session, huge).items == everything
    assert page.items + rest == everything
    assert page.next_cursor.isdigit() and delegation_page.next_cursor is None
    with pytest.raises(QueryError, match="is not a next_cursor of delegations") as caught:
        query_filters.parse_delegation_filter({"cursor": page.next_cursor})
    assert caught.value.field == "cursor"


def test_tn_range_and_spc_combine_with_and(authority, scenario):
    assert _serials(authority, tn="12025550100", range="12025550105:2") == [scenario.range_cert]
    assert _serials(authority, tn="12025550100", spc="1234") == []
    assert _serials(authority, range="12025550000:1000", delegate="Globex") == [scenario.other_cert]


# ---- parameters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("params", "field", "detail"), [
    ({"tn": "+12025550100"}, "tn", "without '+'"),
    ({"tn": "1202555010a"}, "tn", "only digits"),
    ({"tn": "1" * 16}, "tn", "at most 15"),
    ({"tn": ""}, "tn", "is empty"),
    ({"range": "12025550100"}, "range", "START:COUNT"),
    ({"range": "12025550100:0"}, "range", "START:COUNT"),
    ({"spc": "12 34"}, "spc", "visible ASCII"),
    ({"at": "yesterday"}, "at", "RFC 3339"),
    ({"at": "2026-02-30T00:00:00Z"}, "at", "not a real time"),
    ({"at": "2026-03-01T12:00:00"}, "at", "RFC 3339"),  # no offset: ambiguous
    ({"at": "2026-03-01T12:00:60Z"}, "at", "a leap second (:60) is 23:59:60 UTC"),
    ({"serial": "00ab"}, "serial", "without leading zeros"),
    ({"serial": "ABCD"}, "serial", "lower-case hex"),
    ({"limit": "0"}, "limit", "from 1 to 500"),
    ({"limit": "501"}, "limit", "from 1 to 500"),
    ({"limit": "ten"}, "limit", "from 1 to 500"),
    ({"stage": "draft"}, "stage", "one of issued, precertificate, failed, any"),
    ({"revocation": "maybe"}, "revocation", "one of any, revoked, unrevoked"),
    ({"delegate": "Acme\x00"}, "delegate", "control characters"),
    ({"delegation": "../etc"}, "delegation", "is not an id"),
    ({"cursor": "!!"}, "cursor", "not a next_cursor"),
    ({"cursor": "1" * 19}, "cursor", "not a next_cursor"),
    ({"colour": "blue"}, "colour", "unknown parameter 'colour'"),
])
def test_malformed_parameters_are_refused_naming_the_parameter(params, field, detail):
    with pytest.raises(QueryError, match=re.escape(detail)) as caught:
        query_filters.parse_certificate_filter(params)
    assert caught.value.field == field


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-03-01", dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)),
    ("2026-03-01T12:00:00Z", dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc)),
    ("2026-03-01T14:00:00+02:00", dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc)),
    ("2026-03-01T12:00:00.5Z", dt.datetime(2026, 3, 1, 12, 0, 0, 500000, tzinfo=dt.timezone.utc)),
    # RFC 3339 §5.6: "T" and "Z" may be lower case; any number of fraction digits.
    ("2026-03-01t12:00:00.1234567z", dt.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)),
    # RFC 3339 §5.7: a leap second is the last instant of its minute here.
    ("2016-12-31T23:59:60Z", dt.datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone.utc)),
    ("2017-01-01T00:59:60+01:00", dt.datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone.utc)),
    # Times that cannot shift into UTC within datetime's range are clamped, not refused.
    ("0001-01-01T00:00:00+23:59", dt.datetime.min.replace(tzinfo=dt.timezone.utc)),
    ("9999-12-31T23:59:59-23:59", dt.datetime.max.replace(tzinfo=dt.timezone.utc)),
])
def test_times_are_rfc3339_or_a_date_and_become_utc(text, expected):
    assert query_filters.parse_time(text, field="at") == expected


def test_events_by_action_prefix_actor_and_subject(authority, scenario):
    authority.add_user("alice", "auditor")
    with authority.session() as session:
        def actions(**params):
            return [e["action"] for e in queries.events(session, query_filters.parse_event_filter(params)).items]
        assert actions(action="user.") == ["user.create"]
        assert set(actions(action="certificate.")) == {"certificate.issue", "certificate.revoke"}
        assert actions(action="certificate.revoke", actor="user:olivia") == ["certificate.revoke"]
        assert actions(subject_type="delegation", subject_id=scenario.delegation) == ["delegation.create"]
        assert actions(action="user.login") == []  # exact unless it ends in "."


# ---- the span-class containment against brute force --------------------------------------------


def _store_intervals(authority: Authority, intervals: list[tuple[int, int, int]]) -> dict[int, tuple[int, int, int]]:
    """One synthetic certificate per (width, lo, hi) interval; returns certificate id -> interval."""
    now = authority.clock.now()
    with authority.session() as session:
        issuer_id = session.scalar(select(Issuer.id).where(Issuer.name == "issuing"))
        der = TNScope.parse(tns=["12025550100"]).to_der()  # the shown scope is irrelevant here
        rows = [{"serial": f"{index + 1:x}", "issuer_id": issuer_id, "kind": "end-entity", "stage": "issued",
                 "scope_der": der, "subject": "CN=x", "spki_sha256": "0" * 64, "not_before": now,
                 "not_after": now + DAY, "created_at": now} for index in range(len(intervals))]
        session.execute(insert(Certificate), rows)
        ids = session.scalars(select(Certificate.id).order_by(Certificate.id)).all()
        session.execute(insert(CertificateScopeEntry), [
            {"certificate_id": cid, "width": w, "lo": lo, "hi": hi} for cid, (w, lo, hi) in zip(ids, intervals)])
        session.commit()
    return dict(zip(ids, intervals))


def test_span_class_query_equals_brute_force_containment_and_overlap(authority):
    rng = random.Random(20260301)
    intervals = []
    for _ in range(3000):
        width = rng.choice([4, 11, 11, 11, 15])
        span = min(rng.choice([0, 0, 0, 1, 9, 10, 99, 100, 999, 5000, 10**6, 10**width - 1]), 10**width - 1)
        lo = rng.randrange(0, 10**width - span)
        intervals.append((width, lo, min(lo + span, 10**width - 1)))
    stored = _store_intervals(authority, intervals)
    with authority.session() as session:
        stored_digits = session.execute(select(CertificateScopeEntry.lo, CertificateScopeEntry.hi,
                                               CertificateScopeEntry.span_digits)).all()
    assert all(d == span_digits(lo, hi) for lo, hi, d in stored_digits)

    probes: list[tuple[int, int, int]] = []
    for width, lo, hi in rng.sample(intervals, 150):
        for n in (lo, hi, lo - 1, hi + 1, (lo + hi) // 2):
            if 0 <= n < 10**width:
                probes.append((width, n, n))
    probes += [(11, rng.randrange(10**11), 0) for _ in range(50)]
    probes = [(w, n, n) for w, n, _ in probes]
    probes += [(w, lo, min(lo + rng.choice([1, 50, 10**5]), 10**w - 1)) for w, lo, _ in rng.sample(probes, 60)]

    with authority.session() as session:
        for width, lo, hi in probes:
            if lo == hi:
                params = {"tn": str(lo).zfill(width)}
            else:
                params = {"range": f"{str(lo).zfill(width)}:{hi - lo + 1}"}
            flt = dataclasses.replace(query_filters.parse_certificate_filter(params), limit=query_filters.MAX_LIMIT)
            found = {item["serial"] for item in exports.iter_all(functools.partial(queries.certificates, session), flt)}
            expected = {f"{cid:x}" for cid, (w, a, b) in stored.items() if w == width and a <= hi and b >= lo}
            assert found == expected, (params, len(found), len(expected))


def test_literal_numbers_with_star_or_hash_match_only_themselves(authority):
    """A TelephoneNumber with '*' or '#' (RFC 8226 §9) is no integer: it is stored and matched as text."""
    stored = _store_intervals(authority, [(11, 12025555100, 12025555100)])
    literal_scope = TNScope.parse(tns=["1202555#100"])
    with authority.session() as session:
        (cid,) = stored
        session.execute(insert(CertificateScopeEntry), [{"certificate_id": cid, **row}
                                                        for row in literal_scope.index_rows()])
        session.commit()
    assert _serials(authority, tn="1202555#100") == [f"{cid:x}"]
    assert _serials(authority, tn="1202555*100") == []
    assert _serials(authority, tn="12025555100") == [f"{cid:x}"]  # the numeric entry, not the literal


def test_candidates_are_read_in_growing_chunks_until_enough_match(authority):
    """1,500 certificates cover one number; only the three oldest were valid at T. Finding them
    takes the probe past its first chunks (256, then 1,024 more), newest first throughout."""
    count = 1500
    stored = _store_intervals(authority, [(11, 12025550100, 12025550100)] * count)
    ids = sorted(stored)
    long_ago = authority.clock.now() - dt.timedelta(days=400)
    with authority.session() as session:
        session.execute(
            Certificate.__table__.update().where(Certificate.id.in_(ids[:3]))
            .values(not_before=long_ago - DAY, not_after=long_ago + DAY))
        session.commit()
    at = _iso(long_ago)
    assert queries.FIRST_CANDIDATE_CHUNK < count - 3
    assert _serials(authority, tn="12025550100", at=at) == [f"{i:x}" for i in reversed(ids[:3])]
    with authority.session() as session:
        first = queries.certificates(session, query_filters.parse_certificate_filter(
            {"tn": "12025550100", "at": at, "limit": "2"}))
        rest = queries.certificates(session, query_filters.parse_certificate_filter(
            {"tn": "12025550100", "at": at, "limit": "2", "cursor": first.next_cursor}))
    assert [i["serial"] for i in first.items + rest.items] == [f"{i:x}" for i in reversed(ids[:3])]
    assert rest.next_cursor is None
