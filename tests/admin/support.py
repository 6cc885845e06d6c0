"""Helpers for tests of the operator and auditor pages (``tests/admin`` and ``tests/browser``).

``PageClient`` is Flask's test client with a person signed in through the login form and the
CSRF token of their session at hand, so a test reads like what a browser sends. People are
created with ``ca.records.users`` as ``tnca user add`` creates them; certificates with
``ca.issuing.issuance.issue`` as ``tnca cert issue`` does.
"""

from __future__ import annotations

import datetime as dt
import functools
import html as html_lib
import re
from typing import Any
from unittest import mock

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy.orm import sessionmaker

from ca.records import delegations, users
from ca.home import Home
from ca.issuing.issuance import IssuanceRequest, issue
from ca.numbers.tnauthlist import TNScope
from tests.helpers import row_counts

# What each role's person is called in these tests, and the password they all sign in with.
PASSWORD = "page-test-password-1"
PEOPLE = {"admin": "ada", "operator": "olivia", "auditor": "audrey"}

_CSRF = re.compile(r'name="csrf_token"(?: type="hidden")? value="([^"]+)"')


_real_hash_password = users.hash_password


@functools.lru_cache(maxsize=1)
def _password_hash() -> str:
    """The argon2id hash of ``PASSWORD``, made once per test session by ``ca.users``."""
    return _real_hash_password(PASSWORD)


def _hash_password(password: str) -> str:
    return _password_hash() if password == PASSWORD else _real_hash_password(password)


def create_people(home: Home) -> dict[str, str]:
    """One person per role (role → name).

    argon2id is slow on purpose (~0.1 s a hash, far more on a loaded machine) and every page test
    makes three people: they get the one hash of ``PASSWORD`` made for the session (the same
    salt for all, a real argon2id string with ca.users' parameters; signing in verifies it as
    ever). Any other password is hashed as usual.
    """
    with home.sessionmaker() as session, mock.patch.object(users, "hash_password", _hash_password):
        for role, name in PEOPLE.items():
            users.create_user(session, name=name, role=role, password=PASSWORD, actor="test", clock=home.clock)
        session.commit()
    return dict(PEOPLE)


class PageClient:
    """A signed-in browser, as far as the server can tell: cookies, forms, CSRF tokens."""

    def __init__(self, app: Any, name: str | None = None) -> None:
        self.client = app.test_client()
        self.name = name
        if name is not None:
            self.sign_in(name)

    def sign_in(self, name: str, password: str = PASSWORD) -> None:
        token = csrf_token_of(self.client.get("/auth/login").get_data(as_text=True))
        response = self.client.post("/auth/login", data={"csrf_token": token, "name": name, "password": password})
        assert response.status_code == 302, response.get_data(as_text=True)

    def csrf_token(self) -> str:
        """A valid CSRF token of this session (from the login page's or any page's forms)."""
        return csrf_token_of(self.client.get("/admin/").get_data(as_text=True))

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, **kwargs)

    def post(self, path: str, data: dict[str, Any], *, csrf: bool = True) -> Any:
        form = {"csrf_token": self.csrf_token(), **data} if csrf else dict(data)
        return self.client.post(path, data=form)


def csrf_token_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match is not None, "no CSRF token on the page"
    return match.group(1)


def text_of(response: Any) -> str:
    return response.get_data(as_text=True)


def field_error(html: str, field_id: str) -> str | None:
    """The error message shown next to a field (``<p class="field-error" id="ID-error">``)."""
    match = re.search(rf'<p class="(?:field|group)-error"[^>]* id="{re.escape(field_id)}-error">(.*?)</p>', html, re.S)
    return html_lib.unescape(match.group(1).strip()) if match else None


def element(html: str, element_id: str) -> str:
    """The HTML of the element with this id (tables, lists, sections: no nesting of the same tag)."""
    match = re.search(rf'<(\w+)[^>]* id="{re.escape(element_id)}"[^>]*>(.*?)</\1>', html, re.S)
    assert match is not None, f"no element #{element_id} on the page"
    return html_lib.unescape(match.group(2))


def make_delegation(home: Home, scope: TNScope, *, delegate: str = "Example Enterprise", actor: str = "test",
                    **options: Any) -> str:
    with home.sessionmaker() as session:
        delegation = delegations.create(session, delegate=delegate, scope=scope, issuer_scope=home.issuing_ca().scope,
                                        max_lifetime=options.pop("max_lifetime", dt.timedelta(hours=24)),
                                        clock=home.clock, actor=actor, **options)
        session.commit()
        return delegation.id


def issue_certificate(home: Home, delegation_id: str, scope: TNScope, *, subject: str = "") -> str:
    """A certificate under the delegation, issued as ``tnca cert issue`` issues it; its serial."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)] if subject else []))
           .sign(key, hashes.SHA256()))
    with home.sessionmaker() as session:
        issued = issue(session, IssuanceRequest(csr=csr, scope=scope, delegation_id=delegation_id, actor="test"),
                       issuer=home.issuing_ca(), policy=home.policy, clock=home.clock)
        session.commit()
        return issued.serial


def counts(session_factory: sessionmaker) -> dict[str, int]:
    """Row counts, without the tables every signed-in request may touch (session last-seen times
    and login attempts are not what a refused change must leave alone)."""
    with session_factory() as session:
        result = row_counts(session)
    for volatile in ("spent_nonces", "server_secrets", "user_sessions", "login_attempts"):
        result.pop(volatile, None)
    return result
