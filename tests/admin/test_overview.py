"""The dashboard's numbers (``ca.records.overview``) and its chart (``acme_server.admin.chart``).

Counts follow RFC 5280 §4.1.2.5 for "valid" (notBefore <= now <= notAfter, both inclusive) and
leave revoked certificates out; days are UTC days, zero-filled, oldest first.
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from acme_server import create_app
from acme_server.admin.chart import activity_chart, tick_step
from ca.lifecycle import certificate_revocation
from ca.records import delegations, overview
from ca.tokens import fingerprints, minting
from ca.clock import FixedClock
from ca.home import Home
from ca.records.overview import DayCount
from ca.records.models_authority import Certificate
from ca.numbers.tnauthlist import TNScope
from tests.admin.support import PageClient, issue_certificate, make_delegation

# Tomorrow 09:00 UTC: inside the validity of the home's certificates, which tokens are minted under.
START = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
DAY = dt.timedelta(days=1)


@pytest.fixture
def clock(home) -> FixedClock:  # type: ignore[no-untyped-def]
    home.clock = FixedClock(START)
    return home.clock


def authority_id(home) -> str:  # type: ignore[no-untyped-def]
    return fingerprints.certificate_issuer_id(home.token_authority().certificate)


def test_counts_leave_out_what_is_revoked_expired_or_ended(home, clock, session_factory):
    kept = make_delegation(home, TNScope.parse(ranges=["12025550100:100"]))
    ended = make_delegation(home, TNScope.parse(tns=["12025550300"]), not_after=START + dt.timedelta(hours=2))
    withdrawn = make_delegation(home, TNScope.parse(tns=["12025550400"]))
    valid = issue_certificate(home, kept, TNScope.parse(tns=["12025550101"]))
    revoked = issue_certificate(home, kept, TNScope.parse(tns=["12025550102"]))
    with session_factory() as session:
        row = session.query(Certificate).filter_by(serial=revoked).one()
        certificate_revocation.revoke_certificate(session, row, None, actor="test", source="operator", clock=clock)
        plan = delegations.plan_revoke(session, withdrawn, reason="test", clock=clock)
        delegations.execute_revoke(session, plan, clock=clock, actor="test")
        minting.mint(session, delegation=delegations.get(session, kept), fingerprint="SHA256 " + ":".join(["AB"] * 32),
                    scope=TNScope.parse(tns=["12025550150"]), ca=False, ttl=dt.timedelta(hours=5),
                    authority=home.token_authority(), clock=clock, actor="test")
        session.commit()

    clock.advance(dt.timedelta(hours=3))  # `ended` has ended; the certificates are still valid
    with session_factory() as session:
        counts = overview.counts(session, now=clock.now(), token_authority=authority_id(home))
        assert (counts.delegations_active, counts.delegations_revoked) == (1, 1)
        assert (counts.certificates_valid, counts.certificates_issued, counts.certificates_revoked) == (1, 2, 1)
        assert counts.tokens_outstanding == 1
        assert [d.id for d in overview.delegations_ending(session, now=START)] == [ended]
        assert [c.serial for c in overview.certificates_expiring(session, now=clock.now(), within=2 * DAY)] == [valid]
        assert overview.valid_certificate_counts(session, [kept, ended], now=clock.now()) == {kept: 1}

    clock.advance(2 * DAY)  # past every notAfter (24 h lifetimes)
    with session_factory() as session:
        counts = overview.counts(session, now=clock.now(), token_authority=authority_id(home))
        assert (counts.certificates_valid, counts.tokens_outstanding) == (0, 0)


def test_activity_is_counted_per_utc_day_with_empty_days_included(home, clock, session_factory):
    delegation_id = make_delegation(home, TNScope.parse(ranges=["12025550100:100"]))
    issue_certificate(home, delegation_id, TNScope.parse(tns=["12025550101"]))
    clock.advance(DAY + dt.timedelta(hours=14, minutes=59))  # the next day, 23:59 UTC
    second = issue_certificate(home, delegation_id, TNScope.parse(tns=["12025550102"]))
    issue_certificate(home, delegation_id, TNScope.parse(tns=["12025550103"]))
    clock.advance(dt.timedelta(minutes=2))  # the day after, 00:01 UTC
    with session_factory() as session:
        row = session.query(Certificate).filter_by(serial=second).one()
        certificate_revocation.revoke_certificate(session, row, None, actor="test", source="operator", clock=clock)
        session.commit()
        days = overview.activity_by_day(session, now=clock.now() + DAY, days=4)
    assert days == [
        DayCount(START.date() + 0 * DAY, 1, 0),
        DayCount(START.date() + 1 * DAY, 2, 0),
        DayCount(START.date() + 2 * DAY, 0, 1),
        DayCount(START.date() + 3 * DAY, 0, 0),
    ]
    with pytest.raises(ValueError, match="days must be 1 to 366"):
        overview.activity_by_day(session_factory(), now=START, days=0)


@pytest.mark.parametrize(("maximum", "step"), [(0, 1), (1, 1), (4, 1), (5, 2), (8, 2), (9, 5), (20, 5), (21, 10),
                                               (399, 100), (401, 200), (12345, 5000)])
def test_gridlines_are_whole_numbers_reaching_the_largest_day(maximum, step):
    assert tick_step(maximum) == step
    assert 4 * step >= maximum


def test_bars_are_proportional_and_each_has_a_title():
    days = [DayCount(dt.date(2026, 3, 1) + dt.timedelta(days=i), issued, revoked)
            for i, (issued, revoked) in enumerate([(0, 0), (4, 1), (8, 0), (2, 2)])]
    chart = activity_chart(days)
    plot_height = chart.plot_bottom - chart.plot_top
    assert [tick.label for tick in chart.y_ticks] == ["0", "2", "4", "6", "8"]
    assert [bar.height for bar in chart.issued] == [0, plot_height / 2, plot_height, plot_height / 4]
    assert all(bar.y + bar.height == pytest.approx(chart.plot_bottom) for bar in chart.issued + chart.revoked)
    assert chart.issued[1].title == "2026-03-02: 4 certificates issued"
    assert chart.revoked[1].title == "2026-03-02: 1 certificate revoked"
    # Revoked bars sit right of the issued bar of the same day.
    assert chart.revoked[1].x == pytest.approx(chart.issued[1].x + chart.issued[1].width)
    assert chart.summary.endswith("14 issued, 3 revoked, at most 8 on one day.")
    # The last day (today) is labelled, and every seventh day before it.
    assert [tick.label for tick in chart.x_ticks] == ["Mar 04"]


def test_dashboard_says_transparency_is_off_when_the_policy_requires_no_scts(auditor, home):
    """What ``tnca init`` writes requires no SCT: the dashboard says so, and why."""
    page = auditor.get("/admin/").get_data(as_text=True)
    assert 'id="transparency-off"' in page
    assert "Transparency is off." in page and "[ct] required_scts = 0 in policy.toml" in page


def test_dashboard_has_no_transparency_warning_when_the_policy_requires_scts(home, people):
    key = home.path / "log.pem"
    key.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    entry = f'{{ name = "one", url = "http://127.0.0.1:9", public_key = "{key}" }}'
    policy = home.policy_path.read_text().replace("\nlogs = []\n", f"\nlogs = [{entry}]\n")
    home.policy_path.write_text(policy.replace("\nrequired_scts = 0\n", "\nrequired_scts = 1\n"))
    page = PageClient(create_app(Home(home.path)), people["auditor"]).get("/admin/").get_data(as_text=True)
    assert "Dashboard" in page and 'id="transparency-off"' not in page
