"""Fixtures and helpers for ACME tests: a real authority home, the app, a server on loopback.

Shared by ``tests/protocol`` (through its conftest) and ``tests/e2e/test_acme_*.py`` (which
import the fixtures they use from here).

``home``: ``tnca init`` into a temporary directory, on the test database (tests/conftest.py).
``app``/``client``: the Flask app and its test client, for JWS and problem-document checks.
``server``: the same app served by a real werkzeug HTTP server in a thread on a free loopback
port, for flows driven by certbot's ``acme`` client over real HTTP.
``authority``: delegations and authority tokens made with the ``ca`` functions an operator uses.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import josepy as jose
import pytest
from acme import client as acme_client
from acme import messages
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from werkzeug.serving import make_server

from acme_server import create_app
from tests.helpers import free_port, row_counts
from ca.records import delegations
from ca.tokens import fingerprints, minting
from ca.numbers.claims import ClaimConstraints
from ca.home import Home
from ca.numbers.tnauthlist import TNScope
from tnca.acme_client import ATCResponse, STIRClient, TKAuth01, TKAuth01Response, tnauthlist_identifier  # noqa: F401
from tnca.cli import cli

# The issuing CA of the test home covers range 12025550000+10000 and SPC 1234 (tnca init's
# development scope). The test delegation grants a part of it.
DELEGATE = "Example Enterprise"
DELEGATED_SCOPE = TNScope.parse(ranges=["12025550000:1000"], spcs=["1234"])
TN_SCOPE = TNScope.parse(tns=["12025550100"])
RANGE_SCOPE = TNScope.parse(ranges=["12025550200:100"])
SPC_SCOPE = TNScope.parse(spcs=["1234"])
OUTSIDE_DELEGATION_SCOPE = TNScope.parse(tns=["12025559999"])  # inside the issuing CA, not delegated


def padded_base64(scope: TNScope) -> str:
    """The SHAKEN spelling of an identifier value: standard base64 with padding."""
    return base64.b64encode(scope.to_der()).decode("ascii")


def free_port_pair(avoid: int) -> int:
    """A port N with N and N + 1 both free and neither ``avoid`` (the server's port, free too
    until the server binds it), for ``tnca dev --ct-port N``: its two logs listen on N and
    N + 1."""
    for _ in range(100):
        first = free_port()
        if avoid in (first, first + 1):
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", first + 1))
            except OSError:
                continue
        return first
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def home(tmp_path, session_factory, database_url, port) -> Iterator[Home]:
    """A fresh authority home (``tnca init``) whose base URL is the live server's."""
    path = tmp_path / "home"
    result = CliRunner().invoke(
        cli,
        ["--home", str(path), "init", "--base-url", f"http://127.0.0.1:{port}", "--database-url", database_url],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    home = Home(path)
    yield home
    home.close()


@pytest.fixture
def app(home):
    return create_app(home)


@pytest.fixture
def client(app):
    return app.test_client()


@dataclass
class LiveServer:
    home: Home
    app: Any
    base_url: str

    @property
    def directory_url(self) -> str:
        return self.base_url + "/acme/directory"


@contextlib.contextmanager
def serving(app: Any, home: Home, port: int) -> Iterator[LiveServer]:
    """``app`` on a real werkzeug HTTP server (threaded) at 127.0.0.1:``port``."""
    httpd = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="acme-test-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(home=home, app=app, base_url=home.base_url)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture
def server(app, home, port) -> Iterator[LiveServer]:
    with serving(app, home, port) as live:
        yield live


# --------------------------------------------------------------------------------------------
# Keys, CSRs
# --------------------------------------------------------------------------------------------


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(
    key: Any = None,
    *,
    scope: TNScope | None = None,
    ca: bool | None = None,
    subject: str = "",
) -> tuple[bytes, Any]:
    """(PEM CSR, private key). ``scope`` adds a TNAuthList request; ``ca`` a basicConstraints one.
    ``subject`` is a commonName; empty by default: the certificate's subject comes from the
    delegation's record (ca/issuing/subjects.py), which a CSR may only repeat."""
    key = key or new_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)] if subject else [])
    )
    if scope is not None:
        builder = builder.add_extension(scope.to_extension(), critical=False)
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    csr = builder.sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM), key


# --------------------------------------------------------------------------------------------
# The operator side: delegations and authority tokens
# --------------------------------------------------------------------------------------------


class Authority:
    """Delegations and tokens, made with the same ``ca`` functions the CLI uses."""

    def __init__(self, home: Home, session_factory) -> None:
        self.home = home
        self.session_factory = session_factory

    def delegate(
        self,
        scope: TNScope = DELEGATED_SCOPE,
        *,
        delegate: str = DELEGATE,
        ca: bool = False,
        max_lifetime: dt.timedelta = dt.timedelta(hours=24),
        not_after: dt.datetime | None = None,
        constraints: ClaimConstraints | None = None,
    ) -> str:
        with self.session_factory() as session:
            delegation = delegations.create(
                session,
                delegate=delegate,
                scope=scope,
                issuer_scope=self.home.issuing_ca().scope,
                max_lifetime=max_lifetime,
                clock=self.home.clock,
                actor="test:operator",
                ca=ca,
                not_after=not_after,
                constraints=constraints,
            )
            session.commit()
            return delegation.id

    def revoke(self, delegation_id: str) -> None:
        with self.session_factory() as session:
            plan = delegations.plan_revoke(session, delegation_id, reason="test: delegate left", clock=self.home.clock)
            delegations.execute_revoke(session, plan, actor="test:operator", clock=self.home.clock)
            session.commit()

    def token(
        self,
        delegation_id: str,
        account_key: jose.JWK,
        scope: TNScope,
        *,
        ca: bool = False,
        ttl: dt.timedelta = dt.timedelta(hours=1),
    ) -> str:
        with self.session_factory() as session:
            delegation = delegations.get(session, delegation_id)
            minted = minting.mint(
                session,
                delegation=delegation,
                fingerprint=fingerprints.account_fingerprint(account_key),
                scope=scope,
                ca=ca,
                ttl=ttl,
                authority=self.home.token_authority(),
                clock=self.home.clock,
                actor="test:operator",
            )
            session.commit()
            return minted.token


@pytest.fixture
def authority(home, session_factory) -> Authority:
    return Authority(home, session_factory)


# --------------------------------------------------------------------------------------------
# The subscriber side: certbot's acme client over real HTTP
# --------------------------------------------------------------------------------------------


class Subscriber(STIRClient):
    """An ACME client (certbot's ``ClientV2``) with the steps a STIR delegate takes."""

    def __init__(self, server: LiveServer, key: ec.EllipticCurvePrivateKey | None = None) -> None:
        key = key or new_key()
        connected = STIRClient.connect(server.directory_url, key, user_agent="tnca-tests")
        super().__init__(connected.acme, key)
        self.jwk = jose.JWKEC(key=key)
        self.net = self.acme.net

    @property
    def public_jwk(self) -> jose.JWK:
        return self.jwk.public_key()


@pytest.fixture
def subscriber(server) -> Subscriber:
    return Subscriber(server)


# --------------------------------------------------------------------------------------------
# Hand-made requests: the JWS mistakes certbot's client never makes
# --------------------------------------------------------------------------------------------

JOSE = "application/jose+json"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_es256(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """A JWS ES256 signature (raw r||s, RFC 7518 §3.4), made by josepy as clients make it."""
    return jose.ES256.sign(key, data)


def public_jwk(key: Any) -> dict[str, Any]:
    """The public JWK of a private key: EC and RSA by josepy, Ed25519 (RFC 8037) by hand."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
    return jose.JWK.load(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())).public_key().to_partial_json()


def default_algorithm(key: Any) -> str:
    """The JWS alg a key signs with (RFC 7518 §3.1, RFC 8037 §3.1)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    return "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"


def table_counts(session_factory) -> dict[str, int]:
    """``tests.helpers.row_counts`` of every table except ``spent_nonces`` and ``server_secrets``
    (every signed request spends a nonce; the first nonce makes the nonces' key) and ``rate_limit_counters`` (a failed validation is counted by design,
    policy ``failed_validations_per_account``; tests/protocol/rfc8555/test_s6_7_rate_limits.py
    checks the counters), in a fresh session each time: a long-lived one would keep reading its
    first snapshot."""
    with session_factory() as session:
        counts = row_counts(session)
    counts.pop("spent_nonces")
    counts.pop("server_secrets")
    counts.pop("rate_limit_counters")
    return counts


class RawClient:
    """Builds flattened JWS requests field by field and sends them with the Flask test client."""

    def __init__(self, client, base_url: str, key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self.client = client
        self.base_url = base_url
        self.key = key or new_key()
        self.jwk = jose.JWKEC(key=self.key).public_key()
        self.kid: str | None = None

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base_url + path

    def path(self, url: str) -> str:
        return url[len(self.base_url) :] if url.startswith(self.base_url) else url

    def nonce(self) -> str:
        return self.client.head("/acme/new-nonce").headers["Replay-Nonce"]

    def jws(
        self,
        url: str,
        payload: Any = None,
        *,
        nonce: str | None = None,
        alg: str | None = None,
        use_jwk: bool | None = None,
        protected: dict[str, Any] | None = None,
        key: Any = None,
        jwk: dict[str, Any] | None = None,
        signature: bytes | None = None,
    ) -> dict[str, str]:
        """A flattened JWS. ``payload`` None is POST-as-GET; a str/bytes payload is sent as is."""
        key = key or self.key
        alg = alg or default_algorithm(key)
        header: dict[str, Any] = {"alg": alg, "nonce": nonce or self.nonce(), "url": self.url(url)}
        if use_jwk is None:
            use_jwk = self.kid is None
        if use_jwk:
            header["jwk"] = jwk or public_jwk(key)
        else:
            header["kid"] = self.kid
        header.update(protected or {})
        header = {k: v for k, v in header.items() if v is not None}
        protected_b64 = b64url(json.dumps(header).encode())
        if payload is None:
            payload_b64 = ""
        elif isinstance(payload, bytes | str):
            payload_b64 = b64url(payload.encode() if isinstance(payload, str) else payload)
        else:
            payload_b64 = b64url(json.dumps(payload).encode())
        signing_input = f"{protected_b64}.{payload_b64}".encode()
        if signature is None:
            if alg == "ES256":
                signature = sign_es256(key, signing_input)
            elif alg == "RS256":
                signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
            elif alg == "EdDSA":
                signature = key.sign(signing_input)
            elif alg.startswith("HS"):
                signature = hmac.new(b"k" * 32, signing_input, hashlib.sha256).digest()
            else:
                signature = b""
        return {"protected": protected_b64, "payload": payload_b64, "signature": b64url(signature)}

    def post(self, url: str, payload: Any = None, *, body: Any = None, content_type: str = JOSE, **kwargs: Any):
        data = body if body is not None else self.jws(url, payload, **kwargs)
        if not isinstance(data, bytes | str):
            data = json.dumps(data)
        return self.client.post(self.path(self.url(url)), data=data, content_type=content_type)

    def register(self, payload: dict[str, Any] | None = None):
        response = self.post("/acme/new-account", payload if payload is not None else {}, use_jwk=True)
        assert response.status_code == 201, response.get_data(as_text=True)
        self.kid = response.headers["Location"]
        return response


def problem(response) -> messages.Error:
    """The problem document of a response, parsed as a client parses it; checks the media type."""
    assert response.status_code >= 400, (response.status_code, response.get_data(as_text=True))
    assert response.headers["Content-Type"] == "application/problem+json"
    error = messages.Error.from_json(json.loads(response.get_data(as_text=True)))
    return error


def assert_problem(response, code: str, status: int, detail_fragment: str = "") -> messages.Error:
    """The RFC 8555 §6.7 triple every negative test checks: type, status, a detail naming the fault."""
    error = problem(response)
    assert (error.typ, response.status_code) == ("urn:ietf:params:acme:error:" + code, status), error
    assert detail_fragment in (error.detail or ""), error.detail
    # RFC 8555 §6.5: a fresh nonce on error responses too, so the client can retry.
    assert response.headers.get("Replay-Nonce")
    return error


@pytest.fixture
def raw(client, home) -> RawClient:
    """A hand-made-JWS client with a fresh P-256 key (no account yet)."""
    return RawClient(client, home.base_url)


@pytest.fixture
def registered(client, home) -> RawClient:
    """A hand-made-JWS client whose key has an account (``kid`` set)."""
    raw_client = RawClient(client, home.base_url)
    raw_client.register({"termsOfServiceAgreed": True})
    return raw_client


# --------------------------------------------------------------------------------------------
# Protocol steps with hand-made requests
# --------------------------------------------------------------------------------------------


def csr_b64(key: Any = None, **kwargs: Any) -> tuple[str, Any]:
    """(base64url DER CSR for finalize, private key)."""
    pem, key = make_csr(key, **kwargs)
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    return b64url(der), key


@dataclass
class RawOrder:
    url: str
    body: dict[str, Any]

    @property
    def authz_url(self) -> str:
        (url,) = self.body["authorizations"]
        return url


def raw_new_order(raw: RawClient, value: str, **fields: Any) -> RawOrder:
    response = raw.post("/acme/new-order", {"identifiers": [{"type": "TNAuthList", "value": value}], **fields})
    assert response.status_code == 201, response.get_data(as_text=True)
    return RawOrder(response.headers["Location"], response.get_json())


def raw_challenge_url(raw: RawClient, order: RawOrder) -> str:
    (challenge,) = raw.post(order.authz_url, None).get_json()["challenges"]
    return challenge["url"]


def raw_answer(raw: RawClient, order: RawOrder, token: str, *, field: str = "tkauth"):
    return raw.post(raw_challenge_url(raw, order), {field: token})


def raw_ready_order(raw: RawClient, authority: Authority, scope: TNScope = TN_SCOPE, *, ca: bool = False,
                    delegation_id: str | None = None, **order_fields: Any) -> RawOrder:
    """An order whose authorization was validated with a fresh token: status "ready"."""
    delegation_id = delegation_id or authority.delegate(ca=ca)
    order = raw_new_order(raw, scope.to_identifier_value(), **order_fields)
    answered = raw_answer(raw, order, authority.token(delegation_id, raw.jwk, scope, ca=ca))
    assert answered.get_json()["status"] == "valid", answered.get_json()
    order.body = raw.post(order.url, None).get_json()
    assert order.body["status"] == "ready", order.body
    return order


def raw_issue(raw: RawClient, authority: Authority, scope: TNScope = TN_SCOPE) -> tuple[x509.Certificate, Any]:
    """(leaf certificate, its private key) issued to ``raw`` for ``scope``: order to download."""
    order = raw_ready_order(raw, authority, scope)
    csr, key = csr_b64()
    certificate_url = raw.post(order.body["finalize"], {"csr": csr}).get_json()["certificate"]
    return x509.load_pem_x509_certificates(raw.post(certificate_url, None).get_data())[0], key


# --------------------------------------------------------------------------------------------
# Policy edits and token authorities other than the home's own
# --------------------------------------------------------------------------------------------


def with_policy(home: Home, section: str, **settings: Any) -> Home:
    """The same home with keys of one policy.toml section changed, as an operator edits it."""
    lines, current = [], None
    for line in home.policy_path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1]
        key = stripped.split("=", 1)[0].strip() if "=" in stripped and not stripped.startswith("#") else None
        if current == section and key in settings:
            line = f"{key} = {json.dumps(settings[key])}"
        lines.append(line)
    home.policy_path.write_text("\n".join(lines) + "\n")
    return Home(home.path)


def with_compat(home: Home, **switches: bool) -> Home:
    """The same home with ``[compat]`` switches appended to its tnca.toml, as an operator sets them."""
    lines = "".join(f"{key} = {'true' if value else 'false'}\n" for key, value in switches.items())
    home.config_path.write_text(home.config_path.read_text() + "\n[compat]\n" + lines)
    return Home(home.path)


def sign_compact(header: dict[str, Any], payload: dict[str, Any], key: ec.EllipticCurvePrivateKey) -> str:
    """A compact ES256 JWS (RFC 7515 §7.1): how a token authority signs an authority token."""
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(payload).encode())
    return signing_input + "." + b64url(sign_es256(key, signing_input.encode()))


def atc_claims(account_key: jose.JWK, scope: TNScope, *, ca: bool = False, exp: dt.datetime | None = None,
               jti: str | None = None) -> dict[str, Any]:
    """RFC 9448 §5.4 authority token claims."""
    exp = exp or dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    return {
        "iss": "https://ta.example",
        "exp": int(exp.timestamp()),
        "jti": jti or secrets.token_urlsafe(12),
        "atc": {"tktype": "TNAuthList", "tkvalue": scope.to_identifier_value(), "ca": ca,
                "fingerprint": fingerprints.account_fingerprint(account_key)},
    }


class ExternalTokenAuthority:
    """A token authority of another organisation: its own key and self-signed certificate."""

    def __init__(self, name: str = "External Token Authority") -> None:
        self.key = new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.timezone.utc)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def token(self, account_key: jose.JWK, scope: TNScope, **claims: Any) -> str:
        x5c = [base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)).decode()]
        return sign_compact({"typ": "JWT", "alg": "ES256", "x5c": x5c}, atc_claims(account_key, scope, **claims), self.key)


def trusting(home: Home, authority: ExternalTokenAuthority) -> Home:
    """The home with ``authority`` added to ``[tokens] trusted_authorities``."""
    (home.path / "external-ta.pem").write_bytes(authority.pem())
    return with_policy(home, "tokens", trusted_authorities=["external-ta.pem"])


def home_token(home: Home, account_key: jose.JWK, scope: TNScope, **claims: Any) -> str:
    """A token signed with the home's own token authority key but never minted (not recorded)."""
    authority = home.token_authority()
    signing_input = (
        b64url(json.dumps({"typ": "JWT", "alg": "ES256", "x5u": authority.x5u}).encode())
        + "."
        + b64url(json.dumps(atc_claims(account_key, scope, **claims)).encode())
    )
    r, s = decode_dss_signature(authority.signer.sign(signing_input.encode()))
    return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
