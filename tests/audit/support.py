"""Fixtures and helpers for the audit and API tests (import as ``from tests.audit.support import …``).

``authority``: a real home made by ``tnca init`` on the test database (SQLite or PostgreSQL),
with a :class:`FixedClock` so tests can say "at T". Delegations, certificates and revocations
are made with the same ``ca`` functions the CLI and the ACME server call, so every row comes
with its audit event exactly as in production.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from ca.lifecycle import certificate_revocation
from ca.records import api_tokens, delegations, users
from ca.clock import FixedClock
from ca.home import Home
from ca.issuing.issuance import IssuanceRequest, issue
from ca.lifecycle.reasons import CRLReason
from ca.records.models_authority import Certificate
from ca.numbers.tnauthlist import TNScope
from tnca.cli import cli
from tests.helpers import free_port

# tnca init's development scope: range 12025550000+10000 and SPC 1234.
DELEGATED = TNScope.parse(ranges=["12025550000:1000"], spcs=["1234"])
PASSWORD = "correct horse battery staple"


def utc_now_seconds() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


_CSR_KEY = ec.generate_private_key(ec.SECP256R1())


def make_csr(subject: str = "") -> x509.CertificateSigningRequest:
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name.from_rfc4514_string(subject))
            .sign(_CSR_KEY, hashes.SHA256()))


@dataclass
class Authority:
    """A home made by ``tnca init`` plus helpers that act as an operator would."""

    home: Home
    database_url: str
    port: int
    clock: FixedClock = field(default_factory=lambda: FixedClock(utc_now_seconds()))

    def __post_init__(self) -> None:
        self.home.clock = self.clock

    @property
    def path(self) -> Path:
        return self.home.path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def session(self) -> Session:
        return self.home.sessionmaker()

    def run(self, *args: str, input: str | None = None) -> Result:
        """``tnca --home HOME ARGS…`` in-process, as an operator types it."""
        return CliRunner().invoke(cli, ["--home", str(self.path), *args], input=input,
                                  env={"TNCA_DATABASE_URL": self.database_url}, catch_exceptions=False)

    def delegate(self, scope: TNScope = DELEGATED, *, delegate: str = "Acme Corp",
                 not_after: dt.datetime | None = None) -> str:
        with self.session() as session:
            row = delegations.create(
                session, delegate=delegate, scope=scope, issuer_scope=self.home.issuing_ca().scope,
                max_lifetime=dt.timedelta(days=7), clock=self.clock, actor="user:olivia", not_after=not_after)
            session.commit()
            return row.id

    def revoke_delegation(self, delegation_id: str) -> None:
        with self.session() as session:
            plan = delegations.plan_revoke(session, delegation_id, reason="contract ended", clock=self.clock)
            delegations.execute_revoke(session, plan, clock=self.clock, actor="user:olivia")
            session.commit()

    def issue(self, scope: TNScope, *, delegation_id: str, lifetime: dt.timedelta = dt.timedelta(hours=24),
              subject: str = "", actor: str = "acme:account") -> str:
        """Issue through ca.issuing.issuance.issue; returns the serial."""
        with self.session() as session:
            issued = issue(
                session,
                IssuanceRequest(csr=make_csr(subject), scope=scope, delegation_id=delegation_id, lifetime=lifetime,
                                actor=actor),
                issuer=self.home.issuing_ca(), policy=self.home.policy, clock=self.clock,
            )
            session.commit()
            return issued.serial

    def revoke(self, serial: str, reason: CRLReason | None = CRLReason.KEY_COMPROMISE) -> None:
        with self.session() as session:
            certificate = session.query(Certificate).filter_by(serial=serial).one()
            certificate_revocation.revoke_certificate(session, certificate, reason, actor="user:olivia", source="operator",
                                          clock=self.clock)
            session.commit()

    def add_user(self, name: str, role: str, password: str = PASSWORD) -> None:
        with self.session() as session:
            users.create_user(session, name=name, role=role, password=password, actor="test", clock=self.clock)
            session.commit()

    def api_token(self, name: str, role: str | None = None) -> str:
        with self.session() as session:
            _, token = api_tokens.create_api_token(session, name, label="test", role=role, actor="test", clock=self.clock)
            session.commit()
            return token

    def advance(self, **delta: Any) -> None:
        self.clock.advance(dt.timedelta(**delta))


@pytest.fixture
def authority(tmp_path: Path, session_factory: Any, database_url: str) -> Iterator[Authority]:
    """``tnca init`` into a temporary home on the test database (tables emptied before and after)."""
    port = free_port()
    path = tmp_path / "home"
    result = CliRunner().invoke(
        cli, ["--home", str(path), "init", "--base-url", f"http://127.0.0.1:{port}", "--database-url", database_url],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    home = Home(path)
    yield Authority(home=home, database_url=database_url, port=port)
    home.close()


@dataclass
class LiveServer:
    base_url: str
    app: Any


@pytest.fixture
def live_server(authority: Authority) -> Iterator[LiveServer]:
    """The real app on a loopback port in a thread (werkzeug, threaded)."""
    from acme_server import create_app

    app = create_app(authority.home)
    httpd = make_server("127.0.0.1", authority.port, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="audit-api-test-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(base_url=authority.base_url, app=app)
    finally:
        httpd.shutdown()
        thread.join(timeout=10)
