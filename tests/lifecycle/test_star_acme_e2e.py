"""STAR end to end (RFC 8739): certbot's ``acme`` client over real HTTP, a real CT log
(``tnca ctlog serve``), the renewal worker in-process on a clock the test moves.

A STAR order yields a run of certificates, each with a verified SCT, each served in turn at the
order's star-certificate URL; the client's cancellation stops the run; the operator's revocation
of the delegation (``tnca delegation revoke --execute``) cancels the order; a cancellation that
arrives while a renewal is being logged waits for it; a log that is down delays a renewal, which
is retried.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import pytest
from acme import messages
from click.testing import CliRunner
from cryptography import x509
from sqlalchemy import event, select

from acme_server import create_app
from ca.lifecycle import renewal, renewal_worker
from ca.clock import FixedClock
from ca.home import Home
from ca.records.models_acme import Order
from ca.records.models_audit import AuditEvent
from ca.records.models_authority import Certificate
from ca.issuing.transparency import verify_embedded_scts
from protocol.rfc8739.star_support import (
    HOUR,
    STATUS_CANCELED,
    AutoRenewalObject,
    STARSubscriber,
    Worker,
    issued_certificates,
    plain_get,
    utcnow,
)
from protocol.support import TN_SCOPE, authority, home, make_csr, port, serving  # noqa: F401  (fixtures)
from tests.ct.ct_helpers import RunningLog, postgres_database, start_log, stop_log
from tnca.cli import cli

pytestmark = pytest.mark.e2e


@pytest.fixture
def ct_database() -> Iterator[str | None]:
    postgres = postgres_database("star")
    yield postgres[0] if postgres else None
    if postgres:
        postgres[1]()


@pytest.fixture
def ct_log(home, tmp_path, ct_database) -> Iterator[RunningLog]:  # noqa: F811
    """A log that accepts the home's root."""
    (tmp_path / "ct").mkdir()
    running = start_log(tmp_path / "ct", "star-ct", home.path / "certs" / "root.pem", database_url=ct_database)
    yield running
    stop_log(running)


def require_scts_from(home: Home, log: RunningLog) -> Home:  # noqa: F811
    """The home with its policy asking for one SCT from ``log`` (as an operator edits policy.toml)."""
    entry = f'logs = [{{ name = "{log.name}", url = "{log.url}", public_key = "{log.public_key_file}" }}]'
    lines = []
    for line in home.policy_path.read_text().splitlines():
        if line.startswith("logs = "):
            line = entry
        elif line.startswith("required_scts = "):
            line = "required_scts = 1"
        elif line.startswith("submission_deadline = "):
            line = 'submission_deadline = "3s"'
        lines.append(line)
    home.policy_path.write_text("\n".join(lines) + "\n")
    return Home(home.path)


@pytest.fixture
def ct_home(home, ct_log) -> Iterator[Home]:  # noqa: F811
    configured = require_scts_from(home, ct_log)
    yield configured
    configured.close()


class Star:
    """One STAR order placed by certbot's client against the live server."""

    def __init__(self, server, authority, *, end: dt.datetime, lifetime: dt.timedelta = HOUR) -> None:  # noqa: F811
        self.subscriber = STARSubscriber(server)
        self.subscriber.register()
        self.delegation_id = authority.delegate()
        self.orderr = self.subscriber.new_star_order(
            TN_SCOPE.to_identifier_value(),
            AutoRenewalObject(end_date=end, lifetime=int(lifetime.total_seconds()), allow_certificate_get=True),
        )
        self.subscriber.answer(self.orderr, authority.token(
            self.delegation_id, self.subscriber.public_jwk, TN_SCOPE, ttl=end - utcnow() + HOUR))
        csr_pem, _key = make_csr()
        self.order = self.subscriber.finalize_star(self.orderr, csr_pem)
        self.order_id = self.orderr.uri.rsplit("/", 1)[1]

    def fetch(self):
        return self.subscriber.fetch(self.order.star_certificate)


def verified_sct(leaf: x509.Certificate, issuing: x509.Certificate, log: RunningLog) -> None:
    (sct,) = verify_embedded_scts(leaf, issuing, [log.client()], required=1)
    assert sct.log_id.hex() == log.log_id_hex


def test_star_order_yields_successive_certificates_each_with_a_verified_sct(ct_home, ct_log, authority, port, session_factory):  # noqa: F811
    """The issue's demonstration: certbot's client places one STAR order and finalizes it once;
    the worker then publishes each next certificate, through the whole pipeline (precertificate,
    SCT, audit), at the same star-certificate URL."""
    end = utcnow() + 4 * HOUR
    with serving(create_app(ct_home), ct_home, port) as server:
        star = Star(server, authority, end=end)
        assert star.order.status == messages.STATUS_VALID
        assert star.order.auto_renewal.lifetime_adjust == 1800 and star.order.auto_renewal.allow_certificate_get
        worker = Worker(ct_home, session_factory, FixedClock(utcnow()))
        served = []
        while True:
            fetched = star.fetch()
            leaf, issuing = fetched.chain
            verified_sct(leaf, issuing, ct_log)
            assert fetched.headers["Cert-Not-After"] == leaf.not_valid_after_utc.strftime("%a, %d %b %Y %H:%M:%S GMT")
            # RFC 8739 §3.4: the delegated party without the account key reads the same chain.
            public = plain_get(star.order.star_certificate)
            assert public.status_code == 200 and x509.load_pem_x509_certificates(public.content)[0] == leaf
            served.append(leaf)
            due = worker.next_renewal_at(star.order_id)
            if due is None:
                break
            assert worker.at(due) == 1
            assert star.subscriber.star_order(star.orderr).status == messages.STATUS_VALID

    assert len(served) == 4 and len({leaf.serial_number for leaf in served}) == 4
    assert served[-1].not_valid_after_utc == end
    for current, following in zip(served, served[1:]):
        assert following.not_valid_before_utc < current.not_valid_after_utc  # published while the current is valid
        assert following.public_key() == current.public_key()  # RFC 8739 §2.2: the same CSR
    with session_factory() as session:
        issued = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "certificate.issue").order_by(AuditEvent.seq)
        ).all()
    assert [event.details["scts"] for event in issued] == [1, 1, 1, 1]
    assert [event.actor for event in issued][1:] == [renewal.RENEWAL_ACTOR] * 3


def test_client_cancellation_stops_the_renewals(ct_home, ct_log, authority, port, session_factory):  # noqa: F811
    """RFC 8739 §3.1.2: "After a successful cancellation, the server MUST NOT issue any additional
    certificates for this Order"; the star-certificate then answers 403 autoRenewalCanceled."""
    with serving(create_app(ct_home), ct_home, port) as server:
        star = Star(server, authority, end=utcnow() + 4 * HOUR)
        worker = Worker(ct_home, session_factory, FixedClock(utcnow()))
        assert worker.at(worker.next_renewal_at(star.order_id)) == 1
        canceled = star.subscriber.cancel(star.orderr)
        assert canceled.status == STATUS_CANCELED
        with pytest.raises(messages.Error) as raised:
            star.fetch()
        assert raised.value.typ == "urn:ietf:params:acme:error:autoRenewalCanceled"
        assert plain_get(star.order.star_certificate).status_code == 403
        for hours in (1, 2, 3, 5):
            assert worker.at(utcnow() + hours * HOUR) == 0
    assert len(issued_certificates(session_factory, star.order_id)) == 2


def test_operator_revoking_the_delegation_cancels_the_star_order(ct_home, ct_log, authority, port, session_factory, database_url):  # noqa: F811
    with serving(create_app(ct_home), ct_home, port) as server:
        star = Star(server, authority, end=utcnow() + 4 * HOUR)
        worker = Worker(ct_home, session_factory, FixedClock(utcnow()))
        assert worker.at(worker.next_renewal_at(star.order_id)) == 1
        revoked = CliRunner().invoke(cli, [
            "--home", str(ct_home.path), "delegation", "revoke", star.delegation_id,
            "--reason", "the enterprise left", "--execute",
        ], env={"TNCA_DATABASE_URL": database_url}, catch_exceptions=False)
        assert revoked.exit_code == 0, revoked.output
        worker.tick()  # the next tick at the latest; a revocation cascade may have canceled it already
        order = star.subscriber.star_order(star.orderr)
        assert order.status == STATUS_CANCELED
        assert order.error.typ == "urn:ietf:params:acme:error:autoRenewalCanceled"
        assert star.delegation_id in order.error.detail
        with pytest.raises(messages.Error) as raised:
            star.fetch()
        assert raised.value.typ == "urn:ietf:params:acme:error:autoRenewalCanceled"
        for hours in (1, 2, 3):
            assert worker.at(utcnow() + hours * HOUR) == 0
    assert len(issued_certificates(session_factory, star.order_id)) == 2


class PausingTransparency:
    """The home's real CT client, held at the door of the logs until the test lets it through."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.at_the_logs = threading.Event()
        self.go_on = threading.Event()

    def submit(self, precertificate_der, issuer):
        self.at_the_logs.set()
        assert self.go_on.wait(timeout=30)
        return self.inner.submit(precertificate_der, issuer)


def test_a_cancellation_during_a_renewal_waits_for_it_to_commit(ct_home, ct_log, authority, port, session_factory):  # noqa: F811
    """The worker holds the order (its row on PostgreSQL, the write lock on SQLite) from after the
    precertificate is recorded until the certificate is committed: a cancellation arriving while
    the precertificate is at the logs takes effect after that certificate, never between the
    precertificate and it."""
    with serving(create_app(ct_home), ct_home, port) as server:
        star = Star(server, authority, end=utcnow() + 4 * HOUR)
    due = Worker(ct_home, session_factory, FixedClock(utcnow())).next_renewal_at(star.order_id)
    pausing = PausingTransparency(ct_home.transparency())
    ct_home.transparency = lambda: pausing  # the seam issue() takes its CT client through
    renewed: list[int] = []
    renewing = threading.Thread(target=lambda: renewed.append(Worker(ct_home, session_factory, FixedClock(due)).tick()))
    renewing.start()
    assert pausing.at_the_logs.wait(timeout=30)

    canceled = threading.Event()

    def cancel() -> None:
        with session_factory() as session:
            renewal.cancel(session, session.get(Order, star.order_id), actor="test:client", by=renewal.CANCELED_BY_CLIENT,
                           clock=FixedClock(due))
            session.commit()
        canceled.set()

    canceling = threading.Thread(target=cancel)
    canceling.start()
    assert not canceled.wait(timeout=1.0)  # blocked behind the renewal
    pausing.go_on.set()
    renewing.join(timeout=60)
    canceling.join(timeout=60)
    assert renewed == [1] and canceled.is_set()
    with session_factory() as session:
        issue_seq = session.scalars(select(AuditEvent.seq).where(AuditEvent.action == "certificate.issue")
                                    .order_by(AuditEvent.seq.desc())).first()
        cancel_seq = session.scalars(select(AuditEvent.seq).where(AuditEvent.action == "order.cancel")).one()
        assert session.get(Order, star.order_id).status == "canceled"
    assert issue_seq < cancel_seq
    assert len(issued_certificates(session_factory, star.order_id)) == 2


def test_a_log_that_is_down_delays_the_renewal_which_is_retried(ct_home, ct_log, ct_database, authority, port,  # noqa: F811
                                                                 session_factory, tmp_path):
    """Fail closed (no certificate without its SCT), keep the record of the precertificate, and
    try again after the retry delay; once the log is back, the renewal goes through."""
    with serving(create_app(ct_home), ct_home, port) as server:
        star = Star(server, authority, end=utcnow() + 4 * HOUR)
    due = Worker(ct_home, session_factory, FixedClock(utcnow())).next_renewal_at(star.order_id)
    stop_log(ct_log)
    assert Worker(ct_home, session_factory, FixedClock(due)).tick() == 0
    with session_factory() as session:
        failed = session.scalars(select(Certificate).where(Certificate.order_id == star.order_id,
                                                           Certificate.stage == "failed")).one()
        order = session.get(Order, star.order_id)
    assert star.subscriber is not None and failed.precertificate_der is not None and "star-ct" in failed.error
    assert (order.status, order.next_renewal_at, order.renewal_claim) == ("valid", due + renewal_worker.RETRY_DELAY, None)

    restarted = start_log(tmp_path / "ct", "star-ct", ct_home.path / "certs" / "root.pem", database_url=ct_database)
    try:
        back = require_scts_from(ct_home, restarted)
        assert Worker(back, session_factory, FixedClock(due + renewal_worker.RETRY_DELAY)).tick() == 1
        _first, second = issued_certificates(session_factory, star.order_id)
        issuing = back.issuing_ca().certificate
        verified_sct(x509.load_der_x509_certificate(second.der), issuing, restarted)
        back.close()
    finally:
        stop_log(restarted)


class CountingTransparency:
    """The home's real CT client, counting the precertificates it is handed."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.submitted = 0

    def submit(self, precertificate_der, issuer):
        self.submitted += 1
        return self.inner.submit(precertificate_der, issuer)


def test_a_cancellation_right_after_the_precertificate_is_recorded_keeps_it_from_the_logs(  # noqa: F811
        ct_home, ct_log, authority, port, session_factory):
    """The precertificate is committed before any log sees it (RFC 6962 §3.1 via ca.issuing.issuance);
    a cancellation that commits in that instant is seen by the renewal's fence, which then stops
    before the logs: no SCT is asked for, and the record says why the precertificate went nowhere."""
    with serving(create_app(ct_home), ct_home, port) as server:
        star = Star(server, authority, end=utcnow() + 4 * HOUR)
    due = Worker(ct_home, session_factory, FixedClock(utcnow())).next_renewal_at(star.order_id)
    counting = CountingTransparency(ct_home.transparency())
    ct_home.transparency = lambda: counting
    client_side = type(session_factory)(bind=session_factory.kw["bind"], expire_on_commit=False)

    def cancel_once_the_precertificate_is_committed(_session) -> None:
        with client_side() as session:
            recorded = session.scalars(select(Certificate).where(
                Certificate.order_id == star.order_id, Certificate.stage == "precertificate")).first()
            order = session.get(Order, star.order_id)
            if recorded is None or order.status != "valid":
                return
            session.commit()
            renewal.cancel(session, order, actor="test:client", by=renewal.CANCELED_BY_CLIENT, clock=FixedClock(due))
            session.commit()

    event.listen(session_factory, "after_commit", cancel_once_the_precertificate_is_committed)
    try:
        assert Worker(ct_home, session_factory, FixedClock(due)).tick() == 0
    finally:
        event.remove(session_factory, "after_commit", cancel_once_the_precertificate_is_committed)
    assert counting.submitted == 0
    with session_factory() as session:
        rows = session.scalars(select(Certificate).where(Certificate.order_id == star.order_id)
                               .order_by(Certificate.id)).all()
        assert session.get(Order, star.order_id).status == "canceled"
    assert [row.stage for row in rows] == ["issued", "failed"]
    assert rows[1].error == "the order was canceled before the precertificate was submitted"
