"""Authority tokens: fingerprints (RFC 9448 §5.4), validation (RFC 9448 §6), minting, single use.

Every negative test asserts the exact error class, the claim it names and a detail fragment;
those that touch the database also assert that nothing was written. Keys and certificates are
real (built here with cryptography); the one published token vector is core-standards.md
Appendix A.3, computed for that digest and verified here with our code.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import subprocess
from pathlib import Path

import josepy as jose
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from ca.records import delegations, models_acme, models_audit, models_authority, models_base
from ca.tokens import fingerprints, minting, trust_config, verification
from ca.clock import FixedClock
from ca.errors import DelegationError, PolicyError, ScopeError, SignerError, TokenError, UnavailableError
from ca.numbers.tnauthlist import TNScope
from ca.tokens.x5u import FetchPolicy, X5UError, X5UFetcher
from tests.helpers import certificate_with_bit_string_common_name, row_counts

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.timezone.utc)


TA_URL = "https://ta.example.net/token-authority.pem"

# --- core-standards.md §5.7: RFC 7638 §3.1 example RSA key and its thumbprint ----------------
RFC7638_JWK = {
    "e": "AQAB",
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZ"
    "CiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgn"
    "Yb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0"
    "Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
}
RFC7638_THUMBPRINT_B64URL = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
RFC7638_FINGERPRINT = (
    "SHA256 37:36:CB:B1:78:7C:B8:30:9C:77:EE:8C:37:05:C5:E1:6F:FB:9E:85:97:15:90:1F:1E:4C:59:B1:11:82:F5:7B"
)

# --- core-standards.md Appendix A.3: a signed authority token (computed for the digest) -------
A3_TA_CERT_PEM = b"""-----BEGIN CERTIFICATE-----
MIIBTzCB9qADAgECAgIwAzAKBggqhkjOPQQDAjAfMR0wGwYDVQQDDBRUZXN0IFRv
a2VuIEF1dGhvcml0eTAgFw0yNDAxMDEwMDAwMDBaGA8yMDk5MTIzMTAwMDAwMFow
HzEdMBsGA1UEAwwUVGVzdCBUb2tlbiBBdXRob3JpdHkwWTATBgcqhkjOPQIBBggq
hkjOPQMBBwNCAAQNYZvVbSVbP2wO8eHM38nZkMkuUS+FrR6dogo8LYf98TYrVmzv
W4gKwSMe71LDF7FXUreWmTW+q14REbaFDpmooyAwHjAMBgNVHRMBAf8EAjAAMA4G
A1UdDwEB/wQEAwIHgDAKBggqhkjOPQQDAgNIADBFAiEAwYZ7GowQ0q2f4i5PSWEV
CDtoCWug7jguTPT7y9pmyzQCIGUDinMPzBLl8vz3FZLbeo38U5TH7vnJRHr0ewSd
1Nwc
-----END CERTIFICATE-----
"""
A3_ACCOUNT_JWK = (
    '{"crv":"P-256","kty":"EC","x":"ixUDOxlMRTEI2H4jzzJTv1JGZJEsBfTiqJLCKEU4GVc",'
    '"y":"4oPXp9v1ji_hy5dxTCHPaxI0JHHcOT0dRi27Hjuxj4g"}'
)
A3_THUMBPRINT_B64URL = "65xbBlxKmCGDj5pabVJj3931WpHvDPIrSFB5hQVqq1s"
A3_FINGERPRINT = (
    "SHA256 EB:9C:5B:06:5C:4A:98:21:83:8F:9A:5A:6D:52:63:DF:DD:F5:5A:91:EF:0C:F2:2B:48:50:79:85:05:6A:AB:5B"
)
A3_TOKEN = (
    "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCIsIng1dSI6Imh0dHBzOi8vYXV0aG9yaXR5LmV4YW1wbGUub3JnL2NlcnQifQ."
    "eyJpc3MiOiJodHRwczovL2F1dGhvcml0eS5leGFtcGxlLm9yZyIsImV4cCI6NDEwMjQ0NDgwMCwianRpIjoiaWQ2MDk4MzY0OTIx"
    "IiwiYXRjIjp7InRrdHlwZSI6IlROQXV0aExpc3QiLCJ0a3ZhbHVlIjoiTUFpZ0JoWUVOekE1U2ciLCJjYSI6ZmFsc2UsImZpbmdl"
    "cnByaW50IjoiU0hBMjU2IEVCOjlDOjVCOjA2OjVDOjRBOjk4OjIxOjgzOjhGOjlBOjVBOjZEOjUyOjYzOkRGOkREOkY1OjVBOjkx"
    "OkVGOjBDOkYyOjJCOjQ4OjUwOjc5Ojg1OjA1OjZBOkFCOjVCIn19."
    "xfqsMspFcXjo_0M2-SbbN0RwBh5C72OpSeeE2e_AbyAlu41KM4oSIpm02PoKy4jbwRIKWQj5vJTzfsc7DS6QXg"
)
A3_X5U = "https://authority.example.org/cert"
A3_IDENTIFIER = "MAigBhYENzA5Sg"  # spc "709J"
A3_OTHER_IDENTIFIER = "MAigBhYEMTIzNA"  # spc "1234"
# The A.3 token expires 2100-01-01, so a trust that accepts it must allow a long lifetime.
A3_MAX_LIFETIME = dt.timedelta(days=365 * 80)


# ------------------------------------------------------------------------------------------
# Builders: real keys, real certificates, real signatures
# ------------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def build_cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    *,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None = None,
    ca: bool = False,
    not_before: dt.datetime = NOW - dt.timedelta(days=1),
    not_after: dt.datetime = NOW + dt.timedelta(days=365),
    key_usage_digital_signature: bool = True,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = (name, key) if issuer is None else (
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[0])]),
        issuer[1],
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
    else:
        usage = x509.KeyUsage(key_usage_digital_signature, False, True, False, False, False, False, False, False)
    builder = builder.add_extension(usage, critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


def sign_token(header: dict, payload: dict, key: ec.EllipticCurvePrivateKey) -> str:
    """A compact JWS signed ES256 (raw R||S) with ``key``: how a token authority does it."""
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(payload).encode())
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


class Authority:
    """A token authority built for one test: key, pinned certificate, fetcher serving it."""

    def __init__(self, name: str = "Test TA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.certificate = build_cert(name, self.key)

    def token(self, payload: dict, *, header: dict | None = None) -> str:
        return sign_token(header if header is not None else {"typ": "JWT", "alg": "ES256", "x5u": TA_URL}, payload, self.key)


class FileSigner:
    """The Signer interface (ca/issuing/signers) over an in-memory key: DER ECDSA out."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key
        self.public_key = key.public_key()
        self.hash_algorithm = hashes.SHA256()

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))


class AuthorityHandle:
    """What ``home.token_authority()`` returns: certificate, signer, x5u."""

    def __init__(self, authority: Authority) -> None:
        self.certificate = authority.certificate
        self.signer = FileSigner(authority.key)
        self.x5u = TA_URL


def account_key() -> jose.JWK:
    return jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1())).public_key()


SCOPE = TNScope.parse(ranges=["12025550000:100"])


def claims(account: jose.JWK, *, scope: TNScope = SCOPE, **overrides: object) -> dict:
    atc = {
        "tktype": "TNAuthList",
        "tkvalue": scope.to_identifier_value(),
        "ca": False,
        "fingerprint": fingerprints.account_fingerprint(account),
    }
    atc.update(overrides.pop("atc", {}))  # type: ignore[arg-type]
    payload = {"iss": "https://ta.example.net", "exp": int((NOW + dt.timedelta(minutes=10)).timestamp()), "jti": "j-1", "atc": atc}
    payload.update(overrides)
    return payload


@pytest.fixture
def authority() -> Authority:
    return Authority()


@pytest.fixture
def account() -> jose.JWK:
    return account_key()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


def trust_for(authority: Authority, **kwargs: object) -> trust_config.TokenTrust:
    return trust_config.TokenTrust(anchors=(authority.certificate,), **kwargs)  # type: ignore[arg-type]


def fetcher_for(*authorities: Authority, url: str = TA_URL) -> X5UFetcher:
    return X5UFetcher(overrides={url: [a.certificate for a in authorities]})


def verify(token: str, authority: Authority, account: jose.JWK, clock: FixedClock, **kwargs: object) -> verification.VerifiedToken:
    options: dict = {
        "identifier_scope": SCOPE,
        "account_jwk": account,
        "trust": trust_for(authority),
        "clock": clock,
        "fetcher": fetcher_for(authority),
    }
    options.update(kwargs)
    return verification.verify(token, **options)


def refused(claim: str, fragment: str, call, *args, **kwargs) -> TokenError:  # type: ignore[no-untyped-def]
    with pytest.raises(TokenError) as info:
        call(*args, **kwargs)
    assert info.value.claim == claim, info.value.detail
    assert fragment in info.value.detail, info.value.detail
    return info.value


# ------------------------------------------------------------------------------------------
# RFC 9448 §5.4 fingerprint
# ------------------------------------------------------------------------------------------


class TestFingerprint:
    def test_s5_4_fingerprint_is_rfc7638_thumbprint_rfc_vector(self) -> None:
        """RFC 9448 §5.4: "constructed as defined in RFC 8555 Section 8.1 ... the 'Thumbprint' step"."""
        fingerprint = fingerprints.account_fingerprint(RFC7638_JWK)
        assert fingerprint == RFC7638_FINGERPRINT
        digest = bytes.fromhex(fingerprint.removeprefix("SHA256 ").replace(":", ""))
        assert b64url(digest) == RFC7638_THUMBPRINT_B64URL

    def test_s5_4_fingerprint_appendix_a3_account_key(self) -> None:
        assert fingerprints.account_fingerprint(A3_ACCOUNT_JWK) == A3_FINGERPRINT
        assert fingerprints.account_fingerprint(json.loads(A3_ACCOUNT_JWK)) == A3_FINGERPRINT
        assert fingerprints.account_fingerprint(jose.JWK.json_loads(A3_ACCOUNT_JWK)) == A3_FINGERPRINT
        digest = bytes.fromhex(A3_FINGERPRINT.removeprefix("SHA256 ").replace(":", ""))
        assert b64url(digest) == A3_THUMBPRINT_B64URL

    def test_fingerprint_of_private_jwk_is_that_of_its_public_key(self) -> None:
        private = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        assert fingerprints.account_fingerprint(private) == fingerprints.account_fingerprint(private.public_key())

    def test_erratum_7565_ec_coordinates_keep_leading_zeros(self) -> None:
        """RFC 8555 erratum 7565: fixed-length EC fields are not stripped of leading zero octets."""
        while True:
            key = ec.generate_private_key(ec.SECP256R1())
            if key.public_key().public_numbers().x < 2 ** 248:
                break
        jwk = jose.JWKEC(key=key).public_key()
        numbers = key.public_key().public_numbers()
        canonical = json.dumps(
            {
                "crv": "P-256",
                "kty": "EC",
                "x": b64url(numbers.x.to_bytes(32, "big")),
                "y": b64url(numbers.y.to_bytes(32, "big")),
            },
            separators=(",", ":"),
        )
        expected = hashlib.sha256(canonical.encode()).digest()
        assert fingerprints.account_fingerprint(jwk) == "SHA256 " + ":".join(f"{b:02X}" for b in expected)

    def test_parse_fingerprint_accepts_lowercase_hex(self) -> None:
        assert fingerprints.parse_fingerprint(A3_FINGERPRINT.lower().replace("sha256", "SHA256")) == bytes.fromhex(
            A3_FINGERPRINT[7:].replace(":", "")
        )

    @pytest.mark.parametrize(
        "value",
        [
            A3_THUMBPRINT_B64URL,  # the base64url form used in key authorizations
            "SHA1 " + ":".join(["AB"] * 20),
            "SHA256 " + ":".join(["AB"] * 31),
            "SHA256 " + "AB" * 32,
            "SHA256  " + ":".join(["AB"] * 32),
        ],
    )
    def test_s5_4_malformed_fingerprint_is_refused(self, value: str) -> None:
        refused("atc.fingerprint", "32 colon-separated hex bytes", fingerprints.parse_fingerprint, value)


# ------------------------------------------------------------------------------------------
# RFC 9448 §6: the Appendix A.3 vector
# ------------------------------------------------------------------------------------------


class TestAppendixA3Vector:
    @pytest.fixture
    def ta(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(A3_TA_CERT_PEM)

    def run(self, ta: x509.Certificate, *, identifier: str = A3_IDENTIFIER, account: object = A3_ACCOUNT_JWK,
            token: str = A3_TOKEN, anchors: tuple = ()) -> verification.VerifiedToken:
        return verification.verify(
            token,
            identifier_scope=TNScope.from_identifier_value(identifier),
            account_jwk=account,
            trust=trust_config.TokenTrust(anchors=anchors or (ta,), max_lifetime=A3_MAX_LIFETIME),
            clock=FixedClock(NOW),
            fetcher=X5UFetcher(overrides={A3_X5U: [ta]}),
        )

    def test_s6_appendix_a3_token_is_valid(self, ta: x509.Certificate) -> None:
        verified = self.run(ta)
        assert verified.jti == "id6098364921"
        assert verified.expires == dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)
        assert verified.ca is False
        assert verified.scope == TNScope.from_identifier_value(A3_IDENTIFIER)
        assert verified.x5u == A3_X5U
        spki = ta.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        assert verified.issuer == hashlib.sha256(spki).hexdigest()
        assert verified.local is False

    def test_s6_step6_appendix_a3_other_identifier_is_refused(self, ta: x509.Certificate) -> None:
        refused("atc.tkvalue", "expected SPC 1234, got SPC 709J", self.run, ta, identifier=A3_OTHER_IDENTIFIER)

    def test_s6_step8_appendix_a3_other_account_is_refused(self, ta: x509.Certificate) -> None:
        other = account_key()
        error = refused("atc.fingerprint", "is for another account key", self.run, ta, account=other)
        assert fingerprints.account_fingerprint(other) in error.detail
        assert A3_FINGERPRINT in error.detail

    def test_s6_step2_appendix_a3_untrusted_authority_is_refused(self, ta: x509.Certificate) -> None:
        stranger = Authority("Stranger").certificate
        refused("x5u", "does not chain to a trusted token authority", self.run, ta, anchors=(stranger,))

    @pytest.mark.parametrize("position", [0, 20, 63])
    def test_s6_step4_appendix_a3_flipped_signature_byte_is_refused(self, ta: x509.Certificate, position: int) -> None:
        head, body, sig = A3_TOKEN.split(".")
        raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
        raw[position] ^= 0x01
        token = f"{head}.{body}.{b64url(bytes(raw))}"
        refused("signature", "does not verify", self.run, ta, token=token)


# ------------------------------------------------------------------------------------------
# RFC 9448 §6, claim by claim
# ------------------------------------------------------------------------------------------


class TestJWSShape:
    @pytest.mark.parametrize(
        "token, fragment",
        [
            ("a.b", "3 dot-separated parts"),
            ("a.b.c.d", "3 dot-separated parts"),
            ("eyJhbGciOiJFUzI1NiJ9==.e30.AA", "unpadded base64url"),
            ("eyJhbGciOiJFUzI1NiJ9.e3+.AA", "unpadded base64url"),
            ("eyJhbGciOiJFUzI1NiJ9.e30.", "unpadded base64url"),
        ],
    )
    def test_rfc7515_s7_1_compact_serialization_shape(self, authority, account, clock, token, fragment) -> None:
        refused("token", fragment, verify, token, authority, account, clock)

    def test_token_must_be_a_string(self, authority, account, clock) -> None:
        refused("token", "got an object", verify, {"tkauth": "x"}, authority, account, clock)

    def test_header_must_be_json_object(self, authority, account, clock) -> None:
        token = b64url(b"[1]") + "." + b64url(b"{}") + "." + b64url(b"\x00" * 64)
        refused("header", "must be a JSON object, got an array", verify, token, authority, account, clock)

    def test_payload_must_be_json(self, authority, account, clock) -> None:
        token = b64url(b'{"alg":"ES256","x5u":"%s"}' % TA_URL.encode()) + "." + b64url(b"not json") + "." + b64url(b"\x00" * 64)
        refused("payload", "not UTF-8 JSON", verify, token, authority, account, clock)

    def test_error_detail_never_echoes_the_token(self, authority, account, clock) -> None:
        token = authority.token(claims(account, atc={"tktype": "TnAuthList"}))
        error = refused("atc.tktype", "got 'TnAuthList'", verify, token, authority, account, clock)
        for part in token.split("."):
            assert part not in error.detail


class TestAlgorithm:
    def test_rfc8725_s3_1_alg_none_is_refused(self, authority, account, clock) -> None:
        header = {"typ": "JWT", "alg": "none", "x5u": TA_URL}
        token = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims(account)).encode()) + "." + b64url(b"x")
        refused("alg", "must be one of ['ES256'], got 'none'", verify, token, authority, account, clock)

    def test_rfc8725_s3_1_hs256_keyed_with_the_public_key_is_refused(self, authority, account, clock) -> None:
        """The classic algorithm confusion: an HMAC keyed with the TA's public certificate."""
        header = {"typ": "JWT", "alg": "HS256", "x5u": TA_URL}
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims(account)).encode())
        mac_key = authority.certificate.public_bytes(serialization.Encoding.PEM)
        mac = hmac.new(mac_key, signing_input.encode(), hashlib.sha256).digest()
        refused("alg", "got 'HS256'", verify, signing_input + "." + b64url(mac), authority, account, clock)

    def test_missing_alg_is_refused(self, authority, account, clock) -> None:
        token = authority.token(claims(account), header={"typ": "JWT", "x5u": TA_URL})
        refused("alg", "got null", verify, token, authority, account, clock)

    def test_algorithm_outside_the_policy_allowlist_is_refused(self, authority, account, clock) -> None:
        token = authority.token(claims(account))
        trust = trust_config.TokenTrust(anchors=(authority.certificate,), algorithms=frozenset({"ES384"}))
        refused("alg", "must be one of ['ES384'], got 'ES256'", verify, token, authority, account, clock, trust=trust)

    def test_es256_with_a_p384_authority_key_is_refused(self, account, clock) -> None:
        key = ec.generate_private_key(ec.SECP384R1())
        cert = build_cert("P-384 TA", key)
        signing_input = b64url(json.dumps({"alg": "ES256", "x5u": TA_URL}).encode()) + "." + b64url(
            json.dumps(claims(account)).encode()
        )
        token = signing_input + "." + b64url(b"\x01" * 64)
        with pytest.raises(TokenError) as info:
            verification.verify(
                token,
                identifier_scope=SCOPE,
                account_jwk=account,
                trust=trust_config.TokenTrust(anchors=(cert,)),
                clock=clock,
                fetcher=X5UFetcher(overrides={TA_URL: [cert]}),
            )
        assert info.value.claim == "alg"
        assert "EC secp384r1" in info.value.detail

    def test_rfc7518_s3_4_der_signature_instead_of_r_s_is_refused(self, authority, account, clock) -> None:
        token = authority.token(claims(account))
        head, body, _ = token.split(".")
        der = authority.key.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
        refused("signature", "must be 64 bytes R||S", verify, f"{head}.{body}.{b64url(der)}", authority, account, clock)

    def test_rfc7515_s4_1_11_crit_header_is_refused(self, authority, account, clock) -> None:
        token = authority.token(claims(account), header={"alg": "ES256", "x5u": TA_URL, "crit": ["exp"]})
        refused("crit", "does not support", verify, token, authority, account, clock)

    def test_rfc8725_s3_11_typ_other_than_jwt_is_refused(self, authority, account, clock) -> None:
        token = authority.token(claims(account), header={"alg": "ES256", "x5u": TA_URL, "typ": "passport"})
        refused("typ", "must be 'JWT'", verify, token, authority, account, clock)

    def test_typ_is_optional(self, authority, account, clock) -> None:
        token = authority.token(claims(account), header={"alg": "ES256", "x5u": TA_URL})
        assert verify(token, authority, account, clock).jti == "j-1"


class TestMandatoryClaims:
    @pytest.mark.parametrize("claim", ["exp", "jti", "atc"])
    def test_s5_3_missing_mandatory_claim_is_refused(self, authority, account, clock, claim) -> None:
        payload = claims(account)
        del payload[claim]
        refused(claim, f"missing the mandatory claim '{claim}'", verify, authority.token(payload), authority, account, clock)

    @pytest.mark.parametrize("key", ["tktype", "tkvalue", "fingerprint"])
    def test_s6_step1_atc_missing_mandatory_key_is_refused(self, authority, account, clock, key) -> None:
        payload = claims(account)
        del payload["atc"][key]
        refused(f"atc.{key}", f"missing the mandatory key '{key}'", verify, authority.token(payload), authority, account, clock)

    def test_s6_step1_atc_must_be_an_object(self, authority, account, clock) -> None:
        refused("atc", "must be a JSON object (RFC 9448 §6 step 1), got a string", verify, authority.token(claims(account) | {"atc": "x"}),
                authority, account, clock)

    def test_s6_step1_atc_values_must_be_strings(self, authority, account, clock) -> None:
        token = authority.token(claims(account, atc={"tkvalue": 7}))
        refused("atc.tkvalue", "must be a string, got a number", verify, token, authority, account, clock)

    def test_jti_must_be_a_non_empty_string(self, authority, account, clock) -> None:
        refused("jti", "non-empty string", verify, authority.token(claims(account, jti="")), authority, account, clock)
        refused("jti", "non-empty string", verify, authority.token(claims(account, jti=5)), authority, account, clock)

    def test_jti_longer_than_the_column_is_refused(self, authority, account, clock) -> None:
        refused("jti", "the limit is 255", verify, authority.token(claims(account, jti="j" * 256)), authority, account, clock)

    def test_rfc9447_s4_ca_must_be_boolean(self, authority, account, clock) -> None:
        token = authority.token(claims(account, atc={"ca": "true"}))
        refused("atc.ca", "must be a boolean, got a string", verify, token, authority, account, clock)

    def test_rfc9447_s4_absent_ca_means_false(self, authority, account, clock) -> None:
        payload = claims(account)
        del payload["atc"]["ca"]
        assert verify(authority.token(payload), authority, account, clock).ca is False

    def test_s6_step9_ca_flag_is_recorded_for_finalize(self, authority, account, clock) -> None:
        token = authority.token(claims(account, atc={"ca": True}))
        assert verify(token, authority, account, clock).ca is True


class TestTokenAuthority:
    def test_s6_step2_x5u_fetch_refusal_names_x5u(self, authority, account, clock) -> None:
        token = authority.token(claims(account), header={"alg": "ES256", "x5u": "http://ta.example.net/cert"})
        refused("x5u", "must be an https URL", verify, token, authority, account, clock, fetcher=X5UFetcher())

    @pytest.mark.parametrize("retry_after, expected", [(5.0, 5), (0.2, 1), (29.5, 30)])
    def test_s6_step2_x5u_fetch_that_may_pass_is_unavailable_not_a_token_error(
        self, authority, account, clock, retry_after, expected
    ) -> None:
        """Busy fetcher or no answer in time: nothing is known about the token yet."""
        class Busy:
            def fetch(self, url: str) -> None:
                raise X5UError("x5u ta.example.net: the fetcher is busy", retry_after=retry_after)

        with pytest.raises(UnavailableError) as info:
            verify(authority.token(claims(account)), authority, account, clock, fetcher=Busy())
        assert not isinstance(info.value, TokenError)
        assert info.value.field == "x5u" and info.value.retry_after == expected
        assert info.value.detail == "token header 'x5u': x5u ta.example.net: the fetcher is busy"

    @pytest.mark.parametrize(
        "overrides, claim",
        [
            ({"atc": {"tktype": "SPC"}}, "atc.tktype"),
            ({"atc": {"tkvalue": TNScope.parse(tns=["12025551234"]).to_identifier_value()}}, "atc.tkvalue"),
            ({"exp": int((NOW - dt.timedelta(hours=1)).timestamp())}, "exp"),
            ({"atc": {"fingerprint": "SHA256 " + ":".join(["00"] * 32)}}, "atc.fingerprint"),
            ({"atc": {"ca": "yes"}}, "atc.ca"),
        ],
        ids=["tktype", "tkvalue", "exp", "fingerprint", "ca"],
    )
    def test_claims_that_need_no_network_are_checked_before_any_x5u_fetch(
        self, authority, account, clock, overrides, claim
    ) -> None:
        """The fetch runs before the signature can be checked; a token failing steps 5-8 never costs one."""
        class MustNotFetch:
            def fetch(self, url: str) -> None:
                raise AssertionError(f"fetched {url}")

        token = authority.token(claims(account, **overrides))
        refused(claim, "", verify, token, authority, account, clock, fetcher=MustNotFetch())

    def test_x5u_must_be_a_string(self, authority, account, clock) -> None:
        token = authority.token(claims(account), header={"alg": "ES256", "x5u": ["x"]})
        refused("x5u", "must be a URL string, got an array", verify, token, authority, account, clock)

    def test_s6_untrusted_self_signed_signer_is_refused(self, authority, account, clock) -> None:
        impostor = Authority("Test TA")  # same name, different key
        token = impostor.token(claims(account))
        refused("x5u", "does not chain to a trusted token authority", verify, token, authority, account, clock,
                fetcher=fetcher_for(impostor))

    def test_s6_step4_trusted_certificate_but_other_signing_key_is_refused(self, authority, account, clock) -> None:
        impostor = Authority()
        token = sign_token({"alg": "ES256", "x5u": TA_URL}, claims(account), impostor.key)
        refused("signature", "does not verify", verify, token, authority, account, clock)

    def test_expired_token_authority_certificate_is_refused(self, account, clock) -> None:
        old = Authority()
        old.certificate = build_cert("Old TA", old.key, not_before=NOW - dt.timedelta(days=30), not_after=NOW - dt.timedelta(days=1))
        refused("x5u", "does not chain", verify, old.token(claims(account)), old, account, clock)

    def test_signer_without_digital_signature_key_usage_is_refused(self, account, clock) -> None:
        ta = Authority()
        ta.certificate = build_cert("KE only TA", ta.key, key_usage_digital_signature=False)
        refused("x5u", "keyUsage does not allow digitalSignature", verify, ta.token(claims(account)), ta, account, clock)

    def _chain(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, ec.EllipticCurvePrivateKey, x509.Certificate]:
        root_key = ec.generate_private_key(ec.SECP256R1())
        root = build_cert("TA Root", root_key, ca=True)
        ta_key = ec.generate_private_key(ec.SECP256R1())
        ta = build_cert("TA Signer", ta_key, issuer=("TA Root", root_key))
        return root_key, root, ta_key, ta

    def test_s6_step2_x5u_chain_to_a_trusted_root(self, account, clock) -> None:
        _, root, ta_key, ta = self._chain()
        token = sign_token({"typ": "JWT", "alg": "ES256", "x5u": TA_URL}, claims(account), ta_key)
        verified = verification.verify(
            token, identifier_scope=SCOPE, account_jwk=account, trust=trust_config.TokenTrust(anchors=(root,)),
            clock=clock, fetcher=X5UFetcher(overrides={TA_URL: [ta, root]}),
        )
        assert verified.certificate == ta
        assert verified.issuer == fingerprints.certificate_issuer_id(ta)

    def test_s6_step3_x5c_chain_to_a_trusted_root(self, account, clock) -> None:
        _, root, ta_key, ta = self._chain()
        x5c = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in (ta, root)]
        token = sign_token({"typ": "JWT", "alg": "ES256", "x5c": x5c}, claims(account), ta_key)
        verified = verification.verify(
            token, identifier_scope=SCOPE, account_jwk=account, trust=trust_config.TokenTrust(anchors=(root,)),
            clock=clock, fetcher=X5UFetcher(),
        )
        assert verified.x5u is None
        assert verified.certificate == ta

    def test_s6_step3_x5c_to_an_untrusted_root_is_refused(self, account, clock) -> None:
        _, root, ta_key, ta = self._chain()
        x5c = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in (ta, root)]
        token = sign_token({"alg": "ES256", "x5c": x5c}, claims(account), ta_key)
        other_root = build_cert("Other Root", ec.generate_private_key(ec.SECP256R1()), ca=True)
        with pytest.raises(TokenError) as info:
            verification.verify(token, identifier_scope=SCOPE, account_jwk=account,
                          trust=trust_config.TokenTrust(anchors=(other_root,)), clock=clock, fetcher=X5UFetcher())
        assert info.value.claim == "x5c"
        assert "does not chain to a trusted token authority" in info.value.detail

    def test_rfc7515_s4_1_6_x5c_must_be_standard_base64_der(self, authority, account, clock) -> None:
        token = authority.token(claims(account), header={"alg": "ES256", "x5c": ["-_-_"]})
        refused("x5c", "x5c[0]' is not a base64 DER certificate", verify, token, authority, account, clock)

    def test_x5c_certificate_whose_names_do_not_decode_is_refused(self, authority, account, clock) -> None:
        """A commonName typed BIT STRING: cryptography's TypeError is a refusal, not a crash."""
        x5c = [base64.b64encode(certificate_with_bit_string_common_name()).decode()]
        token = authority.token(claims(account), header={"alg": "ES256", "x5c": x5c})
        refused("x5c", "x5c[0]' is not a base64 DER certificate", verify, token, authority, account, clock)

    @pytest.mark.parametrize("x5c", [[], "MIIB", [1]])
    def test_x5c_must_be_non_empty_array_of_strings(self, authority, account, clock, x5c) -> None:
        token = authority.token(claims(account), header={"alg": "ES256", "x5c": x5c})
        refused("x5c", "non-empty array", verify, token, authority, account, clock)

    def test_header_with_neither_x5u_nor_x5c_is_refused(self, authority, account, clock) -> None:
        token = authority.token(claims(account), header={"alg": "ES256", "typ": "JWT"})
        refused("x5u", "got neither", verify, token, authority, account, clock)

    def test_header_with_both_x5u_and_x5c_is_refused(self, authority, account, clock) -> None:
        der = base64.b64encode(authority.certificate.public_bytes(serialization.Encoding.DER)).decode()
        token = authority.token(claims(account), header={"alg": "ES256", "x5u": TA_URL, "x5c": [der]})
        refused("x5u", "got both", verify, token, authority, account, clock)

    def test_empty_trust_is_a_configuration_error(self) -> None:
        with pytest.raises(ValueError, match="at least one trusted token authority"):
            trust_config.TokenTrust(anchors=())

    def test_trust_refuses_algorithms_it_cannot_verify(self, authority) -> None:
        with pytest.raises(ValueError, match="HS256"):
            trust_config.TokenTrust(anchors=(authority.certificate,), algorithms=frozenset({"HS256"}))


class TestIdentifierBinding:
    def test_s6_step5_wrong_tktype_is_refused(self, authority, account, clock) -> None:
        token = authority.token(claims(account, atc={"tktype": "TnAuthList"}))
        refused("atc.tktype", "must be 'TNAuthList' (RFC 9448 §6 step 5), got 'TnAuthList'", verify, token, authority,
                account, clock)

    def test_s6_step6_other_tnauthlist_is_refused(self, authority, account, clock) -> None:
        other = TNScope.parse(ranges=["12025550000:101"])
        token = authority.token(claims(account, scope=other))
        refused("atc.tkvalue", "expected range 12025550000+100, got range 12025550000+101", verify, token, authority,
                account, clock)

    def test_s6_step6_superset_token_is_not_the_identifier(self, authority, account, clock) -> None:
        """RFC 9448 §6 step 6 asks for the *equivalent* value, so a wider token does not validate."""
        token = authority.token(claims(account, scope=TNScope.parse(ranges=["12025550000:1000"])))
        refused("atc.tkvalue", "for another TNAuthList", verify, token, authority, account, clock)

    def test_s6_step6_padded_standard_base64_tkvalue_is_equivalent(self, authority, account, clock) -> None:
        """SHAKEN token authorities send padded base64; RFC 9448 §6 compares the value, not the text."""
        padded = base64.b64encode(SCOPE.to_der()).decode()
        assert padded.endswith("=")
        token = authority.token(claims(account, atc={"tkvalue": padded}))
        assert verify(token, authority, account, clock).scope == SCOPE

    @pytest.mark.parametrize("value", ["***", "MAigBhYENzA5Sg=", "MBWhEzARFgsxMjEy NTU1"])
    def test_s6_step6_tkvalue_not_base64_is_refused(self, authority, account, clock, value) -> None:
        token = authority.token(claims(account, atc={"tkvalue": value}))
        refused("atc.tkvalue", "not a base64url TNAuthList", verify, token, authority, account, clock)

    def test_s6_step6_tkvalue_not_a_tnauthlist_is_refused(self, authority, account, clock) -> None:
        token = authority.token(claims(account, atc={"tkvalue": b64url(b"\x30\x00")}))
        refused("atc.tkvalue", "got bytes that are not a DER TNAuthList", verify, token, authority, account, clock)

    def test_s6_step8_other_account_fingerprint_is_refused(self, authority, account, clock) -> None:
        token = authority.token(claims(account))
        other = account_key()
        error = refused("atc.fingerprint", "is for another account key", verify, token, authority, other, clock)
        assert f"expected {fingerprints.account_fingerprint(other)}, got {fingerprints.account_fingerprint(account)}" in error.detail

    def test_s6_step8_malformed_fingerprint_is_refused(self, authority, account, clock) -> None:
        token = authority.token(claims(account, atc={"fingerprint": A3_THUMBPRINT_B64URL}))
        refused("atc.fingerprint", "32 colon-separated hex bytes", verify, token, authority, account, clock)

    def test_s5_4_spki_fingerprint_is_refused_by_default_naming_the_switch(self, authority, account, clock) -> None:
        token = authority.token(claims(account, atc={"fingerprint": fingerprints.spki_fingerprint(account)}))
        refused("atc.fingerprint", "fingerprint_spki_sha256", verify, token, authority, account, clock)

    def test_compat_fingerprint_spki_sha256_accepts_the_spki_form(self, authority, account, clock) -> None:
        spki = account.key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        fingerprint = "SHA256 " + ":".join(f"{b:02X}" for b in hashlib.sha256(spki).digest())
        assert fingerprints.spki_fingerprint(account) == fingerprint
        token = authority.token(claims(account, atc={"fingerprint": fingerprint}))
        trust = trust_for(authority, compat=trust_config.TokenCompat(fingerprint_spki_sha256=True))
        assert verify(token, authority, account, clock, trust=trust).jti == "j-1"

    def test_compat_switch_does_not_accept_another_keys_spki(self, authority, account, clock) -> None:
        token = authority.token(claims(account, atc={"fingerprint": fingerprints.spki_fingerprint(account_key())}))
        trust = trust_for(authority, compat=trust_config.TokenCompat(fingerprint_spki_sha256=True))
        refused("atc.fingerprint", "is for another account key", verify, token, authority, account, clock, trust=trust)


class TestTimeClaims:
    def test_s6_step7_expired_token_is_refused(self, authority, account, clock) -> None:
        exp = NOW - dt.timedelta(minutes=2)
        token = authority.token(claims(account, exp=int(exp.timestamp())))
        refused("exp", "has passed", verify, token, authority, account, clock)

    def test_expiry_within_the_stated_leeway_is_accepted(self, authority, account, clock) -> None:
        exp = NOW - verification.CLOCK_SKEW_LEEWAY + dt.timedelta(seconds=1)
        token = authority.token(claims(account, exp=int(exp.timestamp())))
        assert verify(token, authority, account, clock).expires == exp

    def test_expiry_just_past_the_leeway_is_refused(self, authority, account, clock) -> None:
        exp = NOW - verification.CLOCK_SKEW_LEEWAY
        refused("exp", "has passed", verify, authority.token(claims(account, exp=int(exp.timestamp()))), authority,
                account, clock)

    def test_exp_beyond_the_policy_maximum_is_refused(self, authority, account, clock) -> None:
        exp = NOW + dt.timedelta(hours=2)
        trust = trust_for(authority, max_lifetime=dt.timedelta(hours=1))
        refused("exp", "too far in the future", verify, authority.token(claims(account, exp=int(exp.timestamp()))),
                authority, account, clock, trust=trust)

    def test_lifetime_from_iat_beyond_the_policy_maximum_is_refused(self, authority, account, clock) -> None:
        payload = claims(account, iat=int((NOW - dt.timedelta(hours=2)).timestamp()))
        trust = trust_for(authority, max_lifetime=dt.timedelta(hours=1))
        refused("exp", "lifetime from 'iat' to 'exp' is 2h10m", verify, authority.token(payload), authority, account,
                clock, trust=trust)

    @pytest.mark.parametrize("claim", ["iat", "nbf"])
    def test_iat_and_nbf_in_the_future_are_refused(self, authority, account, clock, claim) -> None:
        payload = claims(account, **{claim: int((NOW + dt.timedelta(minutes=5)).timestamp())})
        refused(claim, "is in the future", verify, authority.token(payload), authority, account, clock)

    @pytest.mark.parametrize("value", ["1700000000", True, None, 1e300])
    def test_rfc7519_s2_exp_must_be_a_numeric_date(self, authority, account, clock, value) -> None:
        refused("exp", "exp'", verify, authority.token(claims(account, exp=value)), authority, account, clock)

    def test_the_leeway_is_one_minute(self) -> None:
        assert verification.CLOCK_SKEW_LEEWAY == dt.timedelta(seconds=60)


# ------------------------------------------------------------------------------------------
# Minting, single use and revoked delegations (database)
# ------------------------------------------------------------------------------------------


ISSUER_SCOPE = TNScope.parse(ranges=["12025550000:1000"], spcs=["709J"])


def make_delegation(session, clock, *, scope=SCOPE, ca=False, not_after=None) -> models_authority.Delegation:  # type: ignore[no-untyped-def]
    delegation = delegations.create(
        session, delegate="Example Enterprise", scope=scope, issuer_scope=ISSUER_SCOPE,
        max_lifetime=dt.timedelta(hours=24), ca=ca, not_after=not_after, clock=clock, actor="test",
    )
    session.commit()
    return delegation


def mint(session, delegation, authority, account, clock, **overrides):  # type: ignore[no-untyped-def]
    options = {
        "delegation": delegation,
        "fingerprint": fingerprints.account_fingerprint(account),
        "scope": SCOPE,
        "ca": False,
        "ttl": dt.timedelta(minutes=10),
        "authority": AuthorityHandle(authority),
        "clock": clock,
        "actor": "test",
        "max_ttl": dt.timedelta(hours=1),
    }
    options.update(overrides)
    return minting.mint(session, **options)


def decode_part(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def challenge_rows(session) -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
    """An account and a challenge row, as the ACME server would have them."""
    acct = models_acme.Account(jwk="{}", jwk_thumbprint=models_base.random_id())
    session.add(acct)
    session.flush()
    order = models_acme.Order(account_id=acct.id, expires=NOW, identifiers=[], scope_der=SCOPE.to_der())
    session.add(order)
    session.flush()
    authz = models_acme.Authorization(order_id=order.id, account_id=acct.id, identifier_type="TNAuthList",
                                identifier_value=SCOPE.to_identifier_value(), scope_der=SCOPE.to_der(), expires=NOW)
    session.add(authz)
    session.flush()
    first = models_acme.Challenge(authorization_id=authz.id, type="tkauth-01")
    second = models_acme.Challenge(authorization_id=authz.id, type="tkauth-01")
    session.add_all([first, second])
    session.commit()
    return acct.id, first.id, second.id


class TestMint:
    def test_s5_minted_token_has_the_rfc9448_shape(self, session, authority, account, clock) -> None:
        delegation = make_delegation(session, clock)
        minted = mint(session, delegation, authority, account, clock)
        session.commit()
        header, payload, signature = minted.token.split(".")
        assert decode_part(header) == {"typ": "JWT", "alg": "ES256", "x5u": TA_URL}
        body = decode_part(payload)
        assert set(body) == {"iss", "exp", "jti", "atc"}
        assert body["iss"] == "https://ta.example.net"
        assert body["exp"] == int((NOW + dt.timedelta(minutes=10)).timestamp())
        assert body["jti"] == minted.jti
        assert body["atc"] == {
            "tktype": "TNAuthList",
            "tkvalue": SCOPE.to_identifier_value(),
            "ca": False,
            "fingerprint": fingerprints.account_fingerprint(account),
        }
        assert len(base64.urlsafe_b64decode(signature + "==")) == 64  # RFC 7518 §3.4 R||S

    def test_rfc7519_s4_1_7_jti_has_at_least_128_random_bits(self, session, authority, account, clock) -> None:
        delegation = make_delegation(session, clock)
        jtis = {mint(session, delegation, authority, account, clock).jti for _ in range(3)}
        assert len(jtis) == 3
        for jti in jtis:
            assert len(base64.urlsafe_b64decode(jti + "=" * (-len(jti) % 4))) >= 16

    def test_minted_token_verifies_and_records_row_and_audit_event(self, session, authority, account, clock) -> None:
        delegation = make_delegation(session, clock)
        before = row_counts(session)
        minted = mint(session, delegation, authority, account, clock)
        session.commit()
        after = row_counts(session)
        assert after["authority_tokens"] == before["authority_tokens"] + 1
        assert after["audit_events"] == before["audit_events"] + 1
        row = session.get(models_acme.AuthorityToken, minted.jti)
        assert (row.delegation_id, row.fingerprint, row.scope_der, row.ca, row.expires_at, row.created_by) == (
            delegation.id, fingerprints.account_fingerprint(account), SCOPE.to_der(), False, minted.expires, "test",
        )
        event = session.scalars(select(models_audit.AuditEvent).where(models_audit.AuditEvent.action == "token.mint")).one()
        assert event.subject_id == minted.jti
        assert event.details["delegation_id"] == delegation.id
        assert minted.token not in json.dumps(event.details)
        trust = trust_config.TokenTrust(anchors=(), local_authority=authority.certificate)
        verified = verify(minted.token, authority, account, clock, trust=trust, session=session)
        assert verified.local is True
        assert verified.jti == minted.jti

    def test_minted_signature_verifies_with_openssl(self, session, authority, account, clock, tmp_path: Path) -> None:
        """Cross-check by an outside implementation: openssl verifies the R||S signature as DER."""
        delegation = make_delegation(session, clock)
        minted = mint(session, delegation, authority, account, clock)
        head, body, sig = minted.token.split(".")
        raw = base64.urlsafe_b64decode(sig + "==")

        (tmp_path / "sig.der").write_bytes(encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")))
        (tmp_path / "input").write_bytes(f"{head}.{body}".encode())
        (tmp_path / "ta.pem").write_bytes(authority.certificate.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        result = subprocess.run(
            ["openssl", "dgst", "-sha256", "-verify", "ta.pem", "-signature", "sig.der", "input"],
            cwd=tmp_path, capture_output=True, text=True, check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "Verified OK" in result.stdout

    def test_ca_token_under_a_sub_delegating_delegation(self, session, authority, account, clock) -> None:
        delegation = make_delegation(session, clock, ca=True)
        minted = mint(session, delegation, authority, account, clock, ca=True)
        assert decode_part(minted.token.split(".")[1])["atc"]["ca"] is True
        trust = trust_config.TokenTrust(anchors=(authority.certificate,))
        assert verify(minted.token, authority, account, clock, trust=trust).ca is True

    def test_subset_scope_is_minted(self, session, authority, account, clock) -> None:
        delegation = make_delegation(session, clock)
        subset = TNScope.parse(tns=["12025550042"])
        minted = mint(session, delegation, authority, account, clock, scope=subset)
        assert decode_part(minted.token.split(".")[1])["atc"]["tkvalue"] == subset.to_identifier_value()

    def test_fingerprint_input_is_normalized_to_uppercase(self, session, authority, account, clock) -> None:
        delegation = make_delegation(session, clock)
        fingerprint = fingerprints.account_fingerprint(account)
        minted = mint(session, delegation, authority, account, clock, fingerprint="SHA256 " + fingerprint[7:].lower())
        assert minted.fingerprint == fingerprint

    # --- refusals: each writes nothing --------------------------------------------------------

    def assert_refused(self, session, error_type, field, fragment, call):  # type: ignore[no-untyped-def]
        before = row_counts(session)
        with pytest.raises(error_type) as info:
            call()
        session.rollback()
        assert info.value.field == field, info.value.detail
        assert fragment in info.value.detail, info.value.detail
        assert row_counts(session) == before

    def test_scope_outside_the_delegation_is_refused(self, session, authority, account, clock) -> None:
        delegation = make_delegation(session, clock)
        wider = TNScope.parse(ranges=["12025550000:200"])
        self.assert_refused(session, ScopeError, "scope", "is not inside delegation",
                            lambda: mint(session, delegation, authority, account, clock, scope=wider))

    def test_ca_is_refused_when_the_delegation_does_not_allow_it(self, session, authority, account, clock) -> None:
        delegation = make_delegation(session, clock, ca=False)
        self.assert_refused(session, PolicyError, "ca", "does not allow sub-delegation",
                            lambda: mint(session, delegation, authority, account, clock, ca=True))

    def test_ttl_beyond_the_policy_maximum_is_refused(self, session, authority, account, clock) -> None:
        delegation = make_delegation(session, clock)
        self.assert_refused(session, PolicyError, "ttl", "exceeds the policy maximum 1h",
                            lambda: mint(session, delegation, authority, account, clock, ttl=dt.timedelta(hours=2)))

    def test_non_positive_ttl_is_refused(self, session, authority, account, clock) -> None:
        delegation = make_delegation(session, clock)
        self.assert_refused(session, PolicyError, "ttl", "must be positive",
                            lambda: mint(session, delegation, authority, account, clock, ttl=dt.timedelta(0)))

    def test_ttl_beyond_the_delegation_end_is_refused(self, session, authority, account, clock) -> None:
        delegation = make_delegation(session, clock, not_after=NOW + dt.timedelta(minutes=5))
        self.assert_refused(session, PolicyError, "ttl", f"after delegation {delegation.id} ends",
                            lambda: mint(session, delegation, authority, account, clock))

    def test_revoked_delegation_is_refused(self, session, authority, account, clock) -> None:
        delegation = make_delegation(session, clock)
        delegations.execute_revoke(session, delegations.plan_revoke(session, delegation.id, reason="ended", clock=clock),
                                   clock=clock, actor="test")
        session.commit()
        self.assert_refused(session, DelegationError, "delegation", "is revoked",
                            lambda: mint(session, delegation, authority, account, clock))

    def test_ended_delegation_is_refused(self, session, authority, account, clock) -> None:
        delegation = make_delegation(session, clock, not_after=NOW + dt.timedelta(hours=1))
        clock.advance(dt.timedelta(hours=2))
        self.assert_refused(session, DelegationError, "delegation", "ended at",
                            lambda: mint(session, delegation, authority, account, clock))

    @pytest.mark.parametrize("fingerprint", ["", "SHA256 AB", A3_THUMBPRINT_B64URL])
    def test_malformed_fingerprint_is_refused(self, session, authority, account, clock, fingerprint) -> None:
        delegation = make_delegation(session, clock)
        self.assert_refused(session, TokenError, "fingerprint", "32 colon-separated hex bytes",
                            lambda: mint(session, delegation, authority, account, clock, fingerprint=fingerprint))

    def test_non_p256_token_authority_key_is_refused(self, session, account, clock) -> None:
        delegation = make_delegation(session, clock)
        ta = Authority()
        handle = AuthorityHandle(ta)
        handle.signer = FileSigner(ec.generate_private_key(ec.SECP384R1()))
        before = row_counts(session)
        with pytest.raises(SignerError, match="P-256"):
            minting.mint(session, delegation=delegation, fingerprint=fingerprints.account_fingerprint(account), scope=SCOPE,
                        ca=False, ttl=dt.timedelta(minutes=10), authority=handle, clock=clock, actor="test")
        session.rollback()
        assert row_counts(session) == before


class TestSingleUse:
    def test_record_use_inserts_the_jti(self, session, authority, account, clock) -> None:
        account_id, challenge_id, _ = challenge_rows(session)
        verified = verify(authority.token(claims(account)), authority, account, clock)
        assert verification.record_use(session, verified, account_id, challenge_id) is None
        session.commit()
        row = session.scalars(select(models_acme.UsedTokenJTI)).one()
        assert (row.issuer, row.jti, row.account_id, row.challenge_id, row.expires_at) == (
            verified.issuer, "j-1", account_id, challenge_id, verified.expires,
        )

    def test_replayed_jti_is_refused_and_nothing_is_written(self, session, authority, account, clock) -> None:
        """Authority tokens are single use (ca/tokens/authority_tokens.py); the unique constraint decides."""
        account_id, first, second = challenge_rows(session)
        verified = verify(authority.token(claims(account)), authority, account, clock)
        verification.record_use(session, verified, account_id, first)
        session.commit()
        before = row_counts(session)
        refused("jti", "token already used", verification.record_use, session, verified, account_id, second)
        # The savepoint rolled back alone: the caller's transaction can still record the failure.
        session.get(models_acme.Challenge, second).status = "invalid"
        session.commit()
        assert row_counts(session) == before
        assert session.get(models_acme.Challenge, second).status == "invalid"

    def test_replay_from_a_second_session_is_refused(self, session_factory, authority, account, clock) -> None:
        """Two server processes racing on one token: the database constraint serializes them."""
        with session_factory() as setup:
            account_id, first, second = challenge_rows(setup)
        verified = verify(authority.token(claims(account)), authority, account, clock)
        with session_factory() as one, session_factory() as two:
            verification.record_use(one, verified, account_id, first)
            one.commit()
            refused("jti", "token already used", verification.record_use, two, verified, account_id, second)

    def test_same_jti_from_two_token_authorities_are_distinct_tokens(self, session, account, clock) -> None:
        account_id, first, second = challenge_rows(session)
        ta_one, ta_two = Authority("TA one"), Authority("TA two")
        v1 = verify(ta_one.token(claims(account)), ta_one, account, clock)
        v2 = verify(ta_two.token(claims(account)), ta_two, account, clock)
        assert v1.jti == v2.jti and v1.issuer != v2.issuer
        verification.record_use(session, v1, account_id, first)
        verification.record_use(session, v2, account_id, second)
        session.commit()
        assert len(session.scalars(select(models_acme.UsedTokenJTI)).all()) == 2

    def test_record_use_returns_the_delegation_a_local_token_was_minted_under(self, session, authority, account, clock) -> None:
        delegation = make_delegation(session, clock)
        minted = mint(session, delegation, authority, account, clock)
        account_id, challenge_id, _ = challenge_rows(session)
        trust = trust_config.TokenTrust(anchors=(), local_authority=authority.certificate)
        verified = verify(minted.token, authority, account, clock, trust=trust)
        assert verification.record_use(session, verified, account_id, challenge_id) == delegation.id

    def test_local_token_of_a_revoked_delegation_is_refused(self, session, authority, account, clock) -> None:
        delegation = make_delegation(session, clock)
        minted = mint(session, delegation, authority, account, clock)
        account_id, challenge_id, _ = challenge_rows(session)
        delegations.execute_revoke(session, delegations.plan_revoke(session, delegation.id, reason="fraud", clock=clock),
                                   clock=clock, actor="test")
        session.commit()
        trust = trust_config.TokenTrust(anchors=(), local_authority=authority.certificate)
        refused("jti", f"minted under delegation {delegation.id}, which has been revoked",
                verify, minted.token, authority, account, clock, trust=trust, session=session)
        verified = verify(minted.token, authority, account, clock, trust=trust)
        before = row_counts(session)
        refused("jti", "which has been revoked", verification.record_use, session, verified, account_id, challenge_id)
        session.rollback()
        assert row_counts(session) == before

    def test_local_token_never_minted_is_refused(self, session, authority, account, clock) -> None:
        """Our token authority's key signed something mint() never recorded: not ours to honour."""
        account_id, challenge_id, _ = challenge_rows(session)
        trust = trust_config.TokenTrust(anchors=(), local_authority=authority.certificate)
        verified = verify(authority.token(claims(account)), authority, account, clock, trust=trust)
        assert verified.local is True
        before = row_counts(session)
        refused("jti", "was never minted by it", verification.record_use, session, verified, account_id, challenge_id)
        session.rollback()
        assert row_counts(session) == before


class TestTrustFromPolicy:
    def test_policy_anchors_and_local_authority_are_trusted(self, tmp_path: Path, authority) -> None:
        external = Authority("External TA")
        pem = tmp_path / "external.pem"
        pem.write_bytes(external.certificate.public_bytes(serialization.Encoding.PEM))

        class TokenPolicy:
            max_lifetime = dt.timedelta(hours=2)
            trusted_authorities = (pem,)
            allowed_algorithms = ("ES256",)

        trust = trust_config.trust_from_policy(TokenPolicy(), local_authority=authority.certificate)
        assert set(trust.anchors) == {external.certificate, authority.certificate}
        assert trust.max_lifetime == dt.timedelta(hours=2)
        assert trust.algorithms == frozenset({"ES256"})
        assert trust.compat == trust_config.TokenCompat()

    def test_compat_switches_default_to_false(self) -> None:
        import dataclasses

        for switch in dataclasses.fields(trust_config.TokenCompat):
            assert switch.default is False, switch.name


class TestCompatConfig:
    """tnca.toml [compat]: each switch a documented bool, off unless set, misspellings refused."""

    def test_empty_section_is_all_off(self) -> None:
        assert trust_config.TokenCompat.from_config({}) == trust_config.TokenCompat()

    def test_switch_is_turned_on_by_name(self) -> None:
        assert trust_config.TokenCompat.from_config({"fingerprint_spki_sha256": True}).fingerprint_spki_sha256 is True

    def test_unknown_switch_is_refused(self) -> None:
        with pytest.raises(PolicyError) as info:
            trust_config.TokenCompat.from_config({"fingerprint_spki": True})
        assert info.value.field == "[compat] fingerprint_spki"
        assert "fingerprint_spki_sha256" in info.value.detail

    def test_non_boolean_value_is_refused(self) -> None:
        with pytest.raises(PolicyError) as info:
            trust_config.TokenCompat.from_config({"fingerprint_spki_sha256": "yes"})
        assert info.value.field == "[compat] fingerprint_spki_sha256"


class TestOtherAlgorithms:
    """Policy may allow other RFC 7518 / RFC 8037 asymmetric algorithms; each verifies for real."""

    @staticmethod
    def _key_and_signature(alg: str):  # type: ignore[no-untyped-def]
        from cryptography.hazmat.primitives.asymmetric import ed25519, padding

        if alg.startswith("ES"):
            curve, size, digest = {"ES256": (ec.SECP256R1(), 32, hashes.SHA256()), "ES384": (ec.SECP384R1(), 48, hashes.SHA384()),
                                   "ES512": (ec.SECP521R1(), 66, hashes.SHA512())}[alg]
            key = ec.generate_private_key(curve)

            def sign(data: bytes) -> bytes:
                r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
                return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        elif alg.startswith(("RS", "PS")):
            digest = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}[alg[2:]]
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pad = padding.PKCS1v15() if alg.startswith("RS") else padding.PSS(
                mgf=padding.MGF1(digest), salt_length=digest.digest_size)

            def sign(data: bytes) -> bytes:
                return key.sign(data, pad, digest)
        else:
            key = ed25519.Ed25519PrivateKey.generate()

            def sign(data: bytes) -> bytes:
                return key.sign(data)
        return key, sign

    def _cert(self, key) -> x509.Certificate:  # type: ignore[no-untyped-def]
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Other-alg TA")])
        algorithm = None if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) else hashes.SHA256()
        return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=1))
                .sign(key, algorithm))

    @pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"])
    def test_rfc7518_s3_allowed_algorithm_verifies_and_a_flipped_bit_does_not(self, account, clock, alg) -> None:
        key, sign = self._key_and_signature(alg)
        cert = self._cert(key)
        signing_input = b64url(json.dumps({"alg": alg, "x5u": TA_URL}).encode()) + "." + b64url(json.dumps(claims(account)).encode())
        signature = sign(signing_input.encode())
        trust = trust_config.TokenTrust(anchors=(cert,), algorithms=frozenset({alg}))
        options = dict(identifier_scope=SCOPE, account_jwk=account, trust=trust, clock=clock,
                       fetcher=X5UFetcher(overrides={TA_URL: [cert]}))
        assert verification.verify(signing_input + "." + b64url(signature), **options).jti == "j-1"
        tampered = bytes([signature[0] ^ 1]) + signature[1:]
        refused("signature", "does not verify", verification.verify, signing_input + "." + b64url(tampered), **options)

    def test_rfc8555_s6_7_token_authority_rsa_key_with_exponent_3_is_refused(self, account, clock) -> None:
        """A token-signing RSA key must have public exponent 65537, as account and CSR keys must
        (an enormous exponent makes each verification costly); refused before verifying."""
        from cryptography.hazmat.primitives.asymmetric import padding

        key = rsa.generate_private_key(public_exponent=3, key_size=2048)
        cert = self._cert(key)
        signing_input = b64url(json.dumps({"alg": "RS256", "x5u": TA_URL}).encode()) + "." + b64url(json.dumps(claims(account)).encode())
        signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        trust = trust_config.TokenTrust(anchors=(cert,), algorithms=frozenset({"RS256"}))
        refused("alg", "RSA public exponent 3 is not accepted; only 65537 is", verification.verify,
                signing_input + "." + b64url(signature), identifier_scope=SCOPE, account_jwk=account, trust=trust,
                clock=clock, fetcher=X5UFetcher(overrides={TA_URL: [cert]}))

    @pytest.mark.parametrize("alg", ["RS256", "EdDSA", "ES384"])
    def test_algorithm_that_does_not_fit_the_key_is_refused(self, authority, account, clock, alg) -> None:
        token = authority.token(claims(account), header={"alg": alg, "x5u": TA_URL})
        trust = trust_config.TokenTrust(anchors=(authority.certificate,), algorithms=frozenset({alg}))
        refused("alg", f"'alg' {alg} does not fit the token authority key (EC secp256r1)", verify, token, authority,
                account, clock, trust=trust)


class TestJSONStrictness:
    def test_rfc7515_s4_duplicate_header_member_is_refused(self, authority, account, clock) -> None:
        header = b'{"alg":"ES256","x5u":"%s","alg":"none"}' % TA_URL.encode()
        payload = json.dumps(claims(account)).encode()
        signing_input = b64url(header) + "." + b64url(payload)
        r, s = decode_dss_signature(authority.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        token = signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        refused("header", "repeats the member 'alg'", verify, token, authority, account, clock)

    def test_rfc7519_s4_duplicate_claim_is_refused(self, authority, account, clock) -> None:
        body = json.dumps(claims(account))[:-1] + ', "jti": "j-2"}'
        signing_input = b64url(json.dumps({"alg": "ES256", "x5u": TA_URL}).encode()) + "." + b64url(body.encode())
        r, s = decode_dss_signature(authority.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        token = signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        refused("payload", "repeats the member 'jti'", verify, token, authority, account, clock)

    def test_rfc7519_s4_1_1_iss_must_be_a_string(self, authority, account, clock) -> None:
        refused("iss", "must be a string, got a number", verify, authority.token(claims(account, iss=7)), authority,
                account, clock)

    def test_unreadable_trusted_authority_file_is_a_policy_error(self, tmp_path: Path) -> None:
        class TokenPolicy:
            max_lifetime = dt.timedelta(hours=1)
            trusted_authorities = (tmp_path / "missing.pem",)
            allowed_algorithms = ("ES256",)

        with pytest.raises(PolicyError) as info:
            trust_config.trust_from_policy(TokenPolicy(), local_authority=None)  # type: ignore[arg-type]
        assert info.value.field == "[tokens] trusted_authorities"
        assert "missing.pem" in info.value.detail
