"""Revocation by number (``plan_revoke_covering``, ``tnca revoke --covering/--range/--spc``).

The planner narrows candidates with the indexed ``certificate_scope_entries`` (span classes) and
decides with the scope algebra. Here it is checked against a brute-force model that knows neither:
every scope is expanded into the set of numbers (digit width and value: "2025550050" and
"12025550050" are different numbers, RFC 8226 §9) and SPCs it names, and a certificate must be
revoked exactly when its set meets the query's and it is issued, unexpired and not yet revoked.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json

import pytest
from sqlalchemy import event
from click.testing import CliRunner
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from ca.lifecycle import revocation
from ca.clock import FixedClock
from ca.lifecycle.reasons import CRLReason
from ca.records.models_authority import Certificate, CertificateScopeEntry, Issuer, Revocation
from ca.numbers.tn_entries import SPC, TN, TNRange
from ca.numbers.tnauthlist import TNScope
from tnca.cli import cli

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
HOUR = dt.timedelta(hours=1)

# A small number space so that random scopes overlap often: 11-digit and 10-digit numbers with
# the same trailing digits, and three SPCs.
PREFIXES = {11: "120255500", 10: "20255500"}  # + two digits: 00..99
SPCS = ("1234", "5678", "709J")


def number(width: int, value: int) -> str:
    return PREFIXES[width] + f"{value:02d}"


entries = st.one_of(
    st.builds(lambda w, v: TN(number(w, v)), st.sampled_from(sorted(PREFIXES)), st.integers(0, 99)),
    st.builds(
        lambda w, v, n: TNRange(number(w, v), min(n, 100 - v)),
        st.sampled_from(sorted(PREFIXES)), st.integers(0, 98), st.integers(2, 40),
    ),
    st.builds(SPC, st.sampled_from(SPCS)),
)
scopes = st.lists(entries, min_size=1, max_size=3).map(lambda e: TNScope(tuple(e)))
# issued | expired | revoked | precertificate
states = st.sampled_from(("issued", "issued", "issued", "expired", "revoked", "precertificate"))


def model(scope: TNScope) -> set[tuple]:
    """The brute-force expansion: ("n", width, value) per number, ("spc", code) per SPC."""
    names: set[tuple] = set()
    for entry in scope.entries:
        if isinstance(entry, SPC):
            names.add(("spc", entry.code))
        elif isinstance(entry, TNRange):
            start = int(entry.start)
            names.update(("n", len(entry.start), start + i) for i in range(entry.count))
        else:
            names.add(("n", len(entry.number), int(entry.number)))
    return names


def add_certificate(session, issuer_id: int, serial: str, scope: TNScope, state: str) -> Certificate:
    """A certificates row as ca.issuing.issuance writes it (scope entries from index_rows())."""
    row = Certificate(
        serial=serial,
        issuer_id=issuer_id,
        kind="end-entity",
        stage="precertificate" if state == "precertificate" else "issued",
        scope_der=scope.to_der(),
        subject="CN=Example",
        spki_sha256="00" * 32,
        not_before=NOW - 2 * HOUR,
        not_after=NOW - HOUR if state == "expired" else NOW + 20 * HOUR,
        created_at=NOW - 2 * HOUR,
    )
    row.scope_entries = [CertificateScopeEntry(**entry) for entry in scope.index_rows()]
    session.add(row)
    session.flush()
    if state == "revoked":
        session.add(Revocation(certificate_id=row.id, reason_code=1, revoked_at=NOW - HOUR, actor="test", source="operator"))
        session.flush()
    return row


def add_issuer(session) -> int:
    issuer = Issuer(name="issuing", certificate_der=b"\x30\x00", signer_uri="file:keys/issuing.key")
    session.add(issuer)
    session.flush()
    return issuer.id


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(certificates=st.lists(st.tuples(scopes, states), min_size=1, max_size=8), query=scopes)
def test_revocation_by_number_plans_exactly_the_certificates_the_brute_force_model_finds(
    session_factory, certificates, query
):
    with session_factory() as session:
        issuer_id = add_issuer(session)
        expected = set()
        for index, (scope, state) in enumerate(certificates):
            serial = format(index + 1, "x")
            add_certificate(session, issuer_id, serial, scope, state)
            if state == "issued" and model(scope) & model(query):
                expected.add(serial)
        plan = revocation.plan_revoke_covering(session, query, reason=CRLReason.PRIVILEGE_WITHDRAWN, clock=FixedClock(NOW))
        assert {c.serial for c in plan.certificates} == expected, (query.describe(), [s.describe() for s, _ in certificates])
        session.rollback()


@pytest.mark.parametrize(
    "certificate_scope, query, found",
    [
        # An entry of span class 4 starting 9999 numbers below the TN (the widest index probe).
        (TNScope.parse(ranges=["12025550000:10000"]), TNScope.parse(tns=["12025559999"]), True),
        (TNScope.parse(ranges=["12025550000:10000"]), TNScope.parse(tns=["12025560000"]), False),
        # RFC 8226 §9: digits are significant; a 10-digit number is not the 11-digit one.
        (TNScope.parse(tns=["2025550050"]), TNScope.parse(tns=["12025550050"]), False),
        # Ranges meeting in one number, and ranges that only touch.
        (TNScope.parse(ranges=["12025550100:50"]), TNScope.parse(ranges=["12025550149:10"]), True),
        (TNScope.parse(ranges=["12025550100:50"]), TNScope.parse(ranges=["12025550150:10"]), False),
        # RFC 9060 §4.1: an SPC is not known to cover any number, and a number no SPC.
        (TNScope.parse(spcs=["1234"]), TNScope.parse(tns=["12025550100"]), False),
        (TNScope.parse(tns=["12025550100"], spcs=["1234"]), TNScope.parse(spcs=["1234"]), True),
        # A number with '*' matches that literal TN only.
        (TNScope.parse(tns=["1202555*100"]), TNScope.parse(tns=["1202555*100"]), True),
    ],
)
def test_covering_query_edges(session, certificate_scope, query, found):
    issuer_id = add_issuer(session)
    add_certificate(session, issuer_id, "a1", certificate_scope, "issued")
    plan = revocation.plan_revoke_covering(session, query, reason=None, clock=FixedClock(NOW))
    assert [c.serial for c in plan.certificates] == (["a1"] if found else [])


def test_a_plan_for_1500_numbers_is_statements_of_bounded_size(session):
    """Every number of the scope became sixteen conditions of one statement: 400 numbers took 24 s,
    600 were refused by SQLite ("Expression tree is too large"). Candidates now come in chunks."""
    issuer_id = add_issuer(session)
    add_certificate(session, issuer_id, "c3", TNScope.parse(tns=["12025552001"]), "issued")
    add_certificate(session, issuer_id, "c4", TNScope.parse(ranges=["12025559000:10"]), "issued")
    add_certificate(session, issuer_id, "c5", TNScope.parse(tns=["12025550001"]), "revoked")
    # Every other number, so that normalization cannot merge them into ranges.
    query = TNScope.parse(tns=[str(12025550001 + 2 * i) for i in range(1500)])
    executed: list[str] = []
    engine = session.get_bind()
    listener = lambda *args: executed.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        plan = revocation.plan_revoke_covering(session, query, reason=None, clock=FixedClock(NOW))
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert [c.serial for c in plan.certificates] == ["c3"]
    # A chunk of 32 index rows, each a width and sixteen span classes of four bound values.
    assert max(sql.count("?") + sql.count("%(") for sql in executed) <= 32 * (1 + 16 * 4) + 10
    assert len(executed) <= 2 * (1500 // 32 + 1) + 10  # certificates, then delegations still granting


def test_plan_by_number_names_the_delegations_that_still_grant_the_number(session):
    """Revoking certificates leaves delegations alone; the plan says which still grant the number."""
    from ca.records import delegations

    issuer_id = add_issuer(session)
    clock = FixedClock(NOW - 3 * HOUR)
    granting = delegations.create(session, delegate="A", scope=TNScope.parse(ranges=["12025550000:1000"]),
                                  issuer_scope=TNScope.parse(ranges=["12025550000:10000"]), max_lifetime=24 * HOUR,
                                  clock=clock, actor="test")
    delegations.create(session, delegate="B", scope=TNScope.parse(ranges=["12025551000:1000"]),
                       issuer_scope=TNScope.parse(ranges=["12025550000:10000"]), max_lifetime=24 * HOUR,
                       clock=clock, actor="test")
    add_certificate(session, issuer_id, "b2", TNScope.parse(tns=["12025550123"]), "issued")
    plan = revocation.plan_revoke_covering(session, TNScope.parse(tns=["12025550123"]), reason=None, clock=FixedClock(NOW))
    assert plan.delegations_still_granting == (granting.id,)
    assert "still granted by active delegation(s) " + granting.id in plan.describe()


def test_tnca_revoke_covering_revokes_exactly_the_covering_certificates_and_lists_them_on_the_crl(dev_home):
    """`tnca revoke --covering TN --execute` on real certificates (``tnca cert issue``)."""
    covering = {}
    for name, args in (("tn", ["--tn", "12025550123"]), ("range", ["--range", "12025550100:100"]),
                       ("wide", ["--range", "12025550000:10000"])):
        _, chain = dev_home.issue(*args, name=name)
        covering[name] = format(x509.load_pem_x509_certificates(chain.read_bytes())[0].serial_number, "x")
    others = {}
    for name, args in (("neighbour", ["--tn", "12025550124"]), ("before", ["--range", "12025550000:123"]),
                       ("spc", ["--spc", "1234"])):
        _, chain = dev_home.issue(*args, name=name)
        others[name] = format(x509.load_pem_x509_certificates(chain.read_bytes())[0].serial_number, "x")

    result = dev_home.run("revoke", "--covering", "12025550123", "--reason", "keyCompromise", "--execute", "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert set(answer["result"]["revoked"]) == set(covering.values())
    with dev_home.sessionmaker() as session:
        revoked = {r.certificate.serial: (r.reason_code, r.source) for r in session.scalars(select(Revocation))}
    assert revoked == {serial: (1, "number") for serial in covering.values()}
    shown = CliRunner().invoke(cli, ["--home", str(dev_home.path), "crl", "show", "--pem"], env=dev_home.env())
    crl = x509.load_pem_x509_crl(shown.stdout.encode())
    assert {format(e.serial_number, "x") for e in crl} == set(covering.values())
    assert not set(others.values()) & {format(e.serial_number, "x") for e in crl}


def test_revoking_numbers_nothing_covers_changes_nothing(dev_home):
    before = dev_home.row_counts()
    result = dev_home.run("revoke", "--covering", "12025559999", "--execute")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("nothing to revoke: every certificate covering TN 12025559999")
    assert dev_home.row_counts() == before


def test_the_brute_force_model_agrees_with_hand_checked_cases():
    """The model is only as good as its own expansion: check it where the answer is known."""
    samples = [TNScope.parse(ranges=["12025550010:5"]), TNScope.parse(tns=["12025550014"]),
               TNScope.parse(tns=["2025550014"]), TNScope.parse(spcs=["1234"])]
    meets = {(0, 0), (0, 1), (1, 0), (1, 1), (2, 2), (3, 3)}  # by hand: the range holds ...014
    for (i, left), (j, right) in itertools.product(enumerate(samples), repeat=2):
        assert bool(model(left) & model(right)) == ((i, j) in meets), (left.describe(), right.describe())
