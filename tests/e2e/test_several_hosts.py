"""Several hosts on one PostgreSQL database (docs/deployment.md, "N hosts and workers").

Two ``tnca serve`` processes, each with its own copy of the home, on two loopback ports, behind a
load balancer the test plays itself: certbot's ``acme`` client talks to the authority's one base
URL, and a requests transport adapter sends each request to host A or host B (alternating, or
pinned for a step), keeping the ``Host`` the client addressed, as an HTTP load balancer does.

What must hold (DESIGN.md "Scaling out": front ends are stateless): a nonce handed out by A is
redeemed at B (RFC 8555 §6.5: nonces live in the database); an order created at A is answered and
finalized at B; a certificate issued through A is revoked at B; concurrent issuances through both
hosts give distinct serials and one ``certificate.issue`` audit event each; one account's orders
at A and at B add up to its rate limit (429 at both, audited once); and ``tnca audit verify``
accepts the chain. Renewal workers sharing the STAR renewals without doubling any are
tests/lifecycle/test_star_concurrency.py's (three worker processes racing on PostgreSQL).

SQLite is one file on one host: the test is skipped there.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import josepy as jose
import pytest
import requests
from acme import client as acme_client
from acme import messages
from click.testing import CliRunner
from cryptography import x509
from sqlalchemy import func, select

from ca.numbers.tnauthlist import TNScope
from ca.records.models_acme import Account
from ca.records.models_audit import AuditEvent
from ca.records.models_authority import Certificate, Revocation
from ca.records.statuses import CertificateStage
from protocol.support import (  # noqa: F401  (fixtures)
    DELEGATED_SCOPE,
    LiveServer,
    authority,
    free_port,
    home,
    make_csr,
    new_key,
    port,
)
from tests.e2e.test_acme_gunicorn import TNCA, wait_for_port
from tnca.acme_client import STIRClient
from tnca.cli import cli

pytestmark = pytest.mark.e2e

CONCURRENT_ISSUANCES = 6
# [rate_limits] new_orders_per_account for this test: the first client's third order is its last.
ORDERS_PER_ACCOUNT = 3


class Balancer(requests.adapters.HTTPAdapter):
    """Round-robin over the hosts for requests to the authority's base URL; ``pin`` one host for a step.

    Records, for every response, which host served it and which host issued the nonce the request
    spent (from the JWS protected header), so the test can show a nonce crossing hosts.
    """

    def __init__(self, base_netloc: str, hosts: dict[str, int]) -> None:
        super().__init__()
        self.base_netloc = base_netloc
        self.hosts = hosts
        self.names = sorted(hosts)
        self.turn = 0
        self.pinned: str | None = None
        self.lock = threading.Lock()
        self.nonce_issuer: dict[str, str] = {}
        self.served: list[tuple[str, str, str, str | None, int]] = []  # (host, method, path, nonce from, status)

    @contextmanager
    def pin(self, name: str) -> Iterator[None]:
        self.pinned = name
        try:
            yield
        finally:
            self.pinned = None

    def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
        parts = urlsplit(request.url)
        if parts.netloc != self.base_netloc:
            return super().send(request, **kwargs)
        with self.lock:
            name = self.pinned or self.names[self.turn % len(self.names)]
            self.turn += 1
        request.headers["Host"] = self.base_netloc
        request.url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{self.hosts[name]}"))
        nonce = _nonce_of(request.body)
        response = super().send(request, **kwargs)
        with self.lock:
            spent_from = self.nonce_issuer.get(nonce) if nonce else None
            if "Replay-Nonce" in response.headers:
                self.nonce_issuer[response.headers["Replay-Nonce"]] = name
            self.served.append((name, request.method, parts.path, spent_from, response.status_code))
        return response


def _nonce_of(body: bytes | str | None) -> str | None:
    if not body:
        return None
    try:
        protected = json.loads(body)["protected"]
        return json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4)))["nonce"]
    except (ValueError, KeyError, TypeError):
        return None


@pytest.fixture
def two_hosts(home, port, database_url, tmp_path) -> Iterator[tuple[LiveServer, Balancer]]:
    if not database_url.startswith("postgresql"):
        pytest.skip("several hosts share one PostgreSQL database; SQLite is one file on one host "
                    "(run with TNCA_TEST_DATABASE_URL naming PostgreSQL)")
    # The policy both hosts read: few enough orders per account to reach the limit in the test.
    policy_text = home.policy_path.read_text()
    home.policy_path.write_text(re.sub(r"(?m)^new_orders_per_account = .*$",
                                       f'new_orders_per_account = {{ count = {ORDERS_PER_ACCOUNT}, window = "30d" }}',
                                       policy_text))
    # Host B has its own copy of the home (same tnca.toml, policy and keys), as a second machine would.
    copies = {"A": home.path, "B": tmp_path / "host-b-home"}
    shutil.copytree(home.path, copies["B"])
    hosts = {name: free_port() for name in copies}
    processes = {
        name: subprocess.Popen(
            [str(TNCA), "--home", str(path), "serve", "--port", str(hosts[name]), "--workers", "1", "--threads", "4"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ},
        )
        for name, path in copies.items()
    }
    try:
        for name, process in processes.items():
            wait_for_port(hosts[name], process)
        balancer = Balancer(urlsplit(home.base_url).netloc, hosts)
        yield LiveServer(home=home, app=None, base_url=home.base_url), balancer
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
        for process in processes.values():
            process.wait(timeout=20)


def client_behind(balancer: Balancer, live: LiveServer) -> STIRClient:
    """certbot's client, its HTTP session going through the balancer (the directory included)."""
    key = new_key()
    net = acme_client.ClientNetwork(jose.JWKEC(key=key), alg=jose.ES256, user_agent="tnca-tests")
    net.session.mount("http://", balancer)
    client = STIRClient(acme_client.ClientV2(acme_client.ClientV2.get_directory(live.directory_url, net), net), key)
    client.public_jwk = jose.JWKEC(key=key).public_key()  # type: ignore[attr-defined]
    return client


def issue(subscriber: STIRClient, authority, delegation_id: str, number: str) -> x509.Certificate:  # type: ignore[no-untyped-def]
    scope = TNScope.parse(tns=[number])
    token = authority.token(delegation_id, subscriber.public_jwk, scope)
    csr, _key = make_csr(scope=scope)
    chain = subscriber.issue(scope.to_identifier_value(), token, csr)
    return x509.load_pem_x509_certificates(chain.encode())[0]


def test_two_hosts_share_nonces_orders_revocations_and_one_audit_chain(two_hosts, home, authority, session_factory):
    live, balancer = two_hosts
    delegation_id = authority.delegate(DELEGATED_SCOPE)
    subscriber = client_behind(balancer, live)
    subscriber.register()

    # An order created at A, answered and finalized at B.
    scope = TNScope.parse(tns=["12025550100"])
    with balancer.pin("A"):
        order = subscriber.new_order(scope.to_identifier_value())
    with balancer.pin("B"):
        subscriber.answer(order, authority.token(delegation_id, subscriber.public_jwk, scope))
        csr, _key = make_csr(scope=scope)
        finalized = subscriber.finalize(order, csr)
    assert "BEGIN CERTIFICATE" in finalized.fullchain_pem
    new_order_host = [h for h, m, path, _, s in balancer.served if path.endswith("/new-order") and s == 201]
    finalize_host = [h for h, m, path, _, s in balancer.served if path.endswith("/finalize")]
    assert new_order_host == ["A"] and set(finalize_host) == {"B"}

    # A certificate issued through A, revoked at B.
    with balancer.pin("A"):
        from_a = issue(subscriber, authority, delegation_id, "12025550101")
    with balancer.pin("B"):
        subscriber.acme.revoke(from_a, 1)
    with session_factory() as session:
        revoked = session.scalars(select(Certificate.serial).join(Revocation)).all()
    assert [int(serial, 16) for serial in revoked] == [from_a.serial_number]

    # Concurrent clients through both hosts, alternating request by request.
    clients = [client_behind(balancer, live) for _ in range(CONCURRENT_ISSUANCES)]
    for each in clients:
        each.register()
    numbers = [f"120255502{index:02d}" for index in range(CONCURRENT_ISSUANCES)]
    with ThreadPoolExecutor(max_workers=CONCURRENT_ISSUANCES) as pool:
        issued = list(pool.map(lambda pair: issue(pair[0], authority, delegation_id, pair[1]), zip(clients, numbers)))
    assert len({certificate.serial_number for certificate in issued}) == CONCURRENT_ISSUANCES

    # RFC 8555 §6.5: nonces handed out by one host were redeemed at the other, successfully.
    crossed = {(host, spent_from) for host, method, _, spent_from, status in balancer.served
               if method == "POST" and spent_from is not None and spent_from != host and status < 400}
    assert crossed == {("A", "B"), ("B", "A")}
    assert {host for host, *_ in balancer.served} == {"A", "B"}

    with session_factory() as session:
        serials = session.scalars(select(Certificate.serial).where(Certificate.stage == CertificateStage.ISSUED)).all()
        issue_events = session.scalars(select(AuditEvent.subject_id).where(AuditEvent.action == "certificate.issue")).all()
        revoke_events = session.scalar(select(func.count()).where(AuditEvent.action == "certificate.revoke"))
        accounts = session.scalar(select(func.count()).select_from(Account))
    # No duplicate serial, and every certificate has its issuance event (none lost to a race).
    assert len(serials) == len(set(serials)) == CONCURRENT_ISSUANCES + 2
    assert sorted(issue_events) == sorted(serials)
    assert revoke_events == 1 and accounts == CONCURRENT_ISSUANCES + 1

    # The rate limits are counted in the database: orders at A and at B add up to one account's limit.
    with balancer.pin("B"):
        subscriber.new_order(TNScope.parse(tns=["12025550102"]).to_identifier_value())  # the third
    for host in ("A", "B"):
        with balancer.pin(host), pytest.raises(messages.Error) as refused:
            subscriber.new_order(TNScope.parse(tns=["12025550103"]).to_identifier_value())
        assert refused.value.code == "rateLimited" and "new_orders_per_account" in refused.value.detail
    with session_factory() as session:
        reached = session.scalars(select(AuditEvent).where(AuditEvent.action == "rate_limit.reached")).all()
    assert [event.details["key"] for event in reached] == [subscriber.acme.net.account.uri.rsplit("/", 1)[1]]

    verified = CliRunner().invoke(cli, ["--home", str(home.path), "audit", "verify"], catch_exceptions=False)
    assert verified.exit_code == 0, verified.output
