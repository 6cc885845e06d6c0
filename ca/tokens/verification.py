"""Authority token validation (RFC 9448 §6) and single use: what a ``tkauth-01`` answer is checked by.

An authority token (RFC 9447 §4, profiled for TNAuthList by RFC 9448 §5) is a JWT signed by a
token authority, asserting a TN scope for one ACME account key::

    header  {"typ": "JWT", "alg": "ES256", "x5u": "https://…/token-authority.pem"}
    payload {"iss": …, "exp": …, "jti": …,
             "atc": {"tktype": "TNAuthList", "tkvalue": <base64url DER>, "ca": false,
                     "fingerprint": "SHA256 AB:CD:…"}}

:func:`verify` makes the checks of RFC 9448 §6, those that need no network (steps 5-8) before
the ``x5u`` fetch of step 2; every failure is a :class:`~ca.errors.TokenError` whose ``claim``
names the header parameter or claim at fault and whose detail says what was expected and what
arrived, without echoing the token. Step 9 (``ca``
against the CSR's basicConstraints) cannot run before the CSR exists: :class:`VerifiedToken`
carries ``ca`` so that finalize enforces it.

Single use: the caller records the ``jti`` with :func:`record_use` in the same transaction as the
challenge result; a unique constraint on ``used_token_jtis`` (issuer, jti) makes a second use
fail even across processes. RFC 9447 §3.3 would allow an account-bound token to be reused by the
same account until it expires; this authority chooses single use.
:func:`check_minted_here` and :func:`record_use` live here, not with minting, because they are
the last steps of accepting a token and take the :class:`VerifiedToken` that :func:`verify` made.

Implementation choices recorded here (also in docs/rfc-support.md):

- ``atc.fingerprint`` is the RFC 8555 §8.1 "Thumbprint" of the account key
  (:mod:`ca.tokens.fingerprints`); the SubjectPublicKeyInfo form some token authorities use is
  accepted only with :attr:`ca.tokens.trust_config.TokenCompat.fingerprint_spki_sha256`.
- The protected header "MUST comply with Request Authentication (RFC 8555 §6.2)" (RFC 9448 §5.3)
  is read as its applicable parts: an asymmetric allow-listed ``alg``, never ``none`` or a MAC,
  and a key located through ``x5u``/``x5c``. ``nonce``/``url``/``jwk``/``kid`` are not required
  because no token authority sends them (RFC 9448's own example has none).
- ``tkvalue`` is compared as DER bytes with the identifier; both base64url (RFC 9448 §5.4) and
  padded standard base64 (SHAKEN practice) are decoded.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import josepy as jose
from cryptography import x509
from cryptography.x509 import verification as x509_verification
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ca.clock import Clock
from ca.errors import ScopeError, TokenError, UnavailableError
from ca.numbers.tnauthlist import TNScope
from ca.numbers.tnauthlist_der import decode_identifier_value
from ca.policy import format_duration
from ca.records import models_acme, models_authority, store
from ca.tokens.fingerprints import certificate_issuer_id, check_account_fingerprint
from ca.tokens.jws import check_signature, excerpt, json_type, parse_compact_jws
from ca.tokens.trust_config import TokenTrust
from ca.tokens.x5u import X5UError
from ca.x509util import MALFORMED_X509_ERRORS, with_names_decoded
from ca.records.statuses import DelegationStatus

# RFC 7519 §4.1.4 allows "some small leeway, usually no more than a few minutes, to account for
# clock skew". One minute, in both directions (exp in the past, nbf in the future).
CLOCK_SKEW_LEEWAY = dt.timedelta(seconds=60)
# A token authority chain deeper than this is not a token authority chain.
MAX_CHAIN_DEPTH = 4
# The longest jti the used_token_jtis / authority_tokens columns hold.
MAX_JTI_CHARS = 255

TKTYPE_TNAUTHLIST = "TNAuthList"


class Fetcher(Protocol):
    """Fetches the certificates an ``x5u`` URL points at (:class:`ca.tokens.x5u.X5UFetcher`)."""

    def fetch(self, url: str) -> Sequence[x509.Certificate]: ...


@dataclasses.dataclass(frozen=True)
class VerifiedToken:
    """What a valid authority token asserted, as the challenge handler and finalize need it."""

    jti: str
    expires: dt.datetime
    ca: bool  # RFC 9448 §6 step 9: enforced against the CSR at finalize
    scope: TNScope
    issuer: str  # SHA-256 hex of the signing certificate's SubjectPublicKeyInfo
    certificate: x509.Certificate  # the token authority certificate that signed it
    x5u: str | None  # None when the chain came in x5c
    local: bool  # signed by this authority's own token authority


# ------------------------------------------------------------------------------------------
# Validation (RFC 9448 §6)
# ------------------------------------------------------------------------------------------


def verify(
    token: str,
    *,
    identifier_scope: TNScope,
    account_jwk: jose.JWK | Mapping[str, Any] | str,
    trust: TokenTrust,
    clock: Clock,
    fetcher: Fetcher,
    session: Session | None = None,
) -> VerifiedToken:
    """Validate an authority token for ``identifier_scope`` presented by ``account_jwk``.

    Makes the checks of RFC 9448 §6 (after the JWS itself is parsed), in the order 1, 5-8, 2-4:
    steps 5-8 need no network, so a token that fails them never causes an ``x5u`` fetch (which
    runs before the signature can be checked). A token is accepted only if every step passes, so
    the order changes which error a token with several faults gets, never whether it passes.

    1. ``atc`` is a JSON object with the mandatory keys; ``exp`` and ``jti`` are present.
    2. ``x5u``, when present, is an https URL whose certificate chains to a trusted token authority.
    3. ``x5c``, when present, holds a chain to a trusted token authority.
    4. The signature verifies with that certificate's key.
    5. ``atc.tktype`` is ``"TNAuthList"``.
    6. ``atc.tkvalue`` is the same DER TNAuthList as the identifier.
    7. The remaining claims: ``exp`` not passed, not further away than the policy allows; ``nbf``.
    8. ``atc.fingerprint`` is the requesting account key's.
    9. (``atc.ca`` against the CSR: at finalize, from :attr:`VerifiedToken.ca`.)

    With ``session``, a token signed by this authority's own token authority is also checked
    against what :func:`ca.tokens.minting.mint` recorded (it must exist; its delegation must not be revoked).
    :func:`record_use` repeats that check in any case. Raises :class:`TokenError`, or
    :class:`~ca.errors.UnavailableError` when the ``x5u`` chain could not be fetched for a
    reason that may pass (fetcher busy, no complete answer in time): that says nothing about the
    token, which may be presented again.
    """
    header, payload, signing_input, signature = parse_compact_jws(token)
    alg = _check_header(header, trust)
    atc = _check_mandatory_claims(payload)  # step 1
    now = clock.now()
    # Steps 5-8 need no network, so they run before step 2 may fetch x5u: a token that would
    # fail them costs no fetch. They read claims that are not authenticated yet, so they only
    # refuse; nothing is recorded or trusted until the signature has verified (step 4).
    _check_tktype(atc)  # step 5
    scope = _check_tkvalue(atc, identifier_scope)  # step 6
    expires = _check_time_claims(payload, trust, now)  # step 7
    _check_fingerprint(atc, account_jwk, trust)  # step 8
    ca = _check_ca_flag(atc)
    chain, x5u = _signing_chain(header, fetcher)  # steps 2 and 3
    signer_cert = _check_trusted(chain, trust, now, claim="x5u" if x5u is not None else "x5c")
    check_signature(signer_cert, alg, signing_input, signature)  # step 4
    issuer = certificate_issuer_id(signer_cert)
    verified = VerifiedToken(
        jti=payload["jti"],
        expires=expires,
        ca=ca,
        scope=scope,
        issuer=issuer,
        certificate=signer_cert,
        x5u=x5u,
        local=trust.local_authority is not None and issuer == certificate_issuer_id(trust.local_authority),
    )
    if session is not None:
        check_minted_here(session, verified)
    return verified


def _check_header(header: dict[str, Any], trust: TokenTrust) -> str:
    alg = header.get("alg")
    if alg not in trust.algorithms:
        # RFC 8725 §3.1 and §3.2: "none" and MACs are never acceptable for a token whose key is
        # located through a certificate; the allowlist keeps anything unexpected out as well.
        raise TokenError(
            f"token header 'alg' must be one of {sorted(trust.algorithms)}, got {excerpt(alg)}", claim="alg"
        )
    if "crit" in header:
        # RFC 7515 §4.1.11: a recipient that does not understand a listed extension MUST reject.
        raise TokenError("token header 'crit' names extensions this server does not support", claim="crit")
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
        # RFC 8725 §3.11: explicit typing keeps other JWT kinds from being accepted as this one.
        raise TokenError(f"token header 'typ' must be 'JWT' when present, got {excerpt(typ)}", claim="typ")
    if ("x5u" in header) == ("x5c" in header):
        raise TokenError(
            "token header must carry exactly one of 'x5u' or 'x5c' to locate the token authority "
            f"certificate (RFC 9448 §6), got {'both' if 'x5u' in header else 'neither'}",
            claim="x5u",
        )
    return alg


def _check_mandatory_claims(payload: dict[str, Any]) -> dict[str, Any]:
    # RFC 9448 §5.3: the payload MUST include "exp", "jti" and "atc".
    for claim in ("atc", "exp", "jti"):
        if claim not in payload:
            raise TokenError(f"token is missing the mandatory claim '{claim}' (RFC 9448 §5.3)", claim=claim)
    atc = payload["atc"]
    if not isinstance(atc, dict):
        raise TokenError(f"token 'atc' must be a JSON object (RFC 9448 §6 step 1), got {json_type(atc)}", claim="atc")
    for key in ("tktype", "tkvalue", "fingerprint"):
        if key not in atc:
            raise TokenError(f"token 'atc' is missing the mandatory key '{key}' (RFC 9448 §6 step 1)", claim=f"atc.{key}")
        if not isinstance(atc[key], str):
            raise TokenError(f"token 'atc.{key}' must be a string, got {json_type(atc[key])}", claim=f"atc.{key}")
    if "iss" in payload and not isinstance(payload["iss"], str):
        # RFC 7519 §4.1.1: "iss" is a StringOrURI; it is optional in RFC 9448 §5.3.
        raise TokenError(f"token 'iss' must be a string, got {json_type(payload['iss'])}", claim="iss")
    jti = payload["jti"]
    if not isinstance(jti, str) or not jti:
        raise TokenError(f"token 'jti' must be a non-empty string (RFC 7519 §4.1.7), got {json_type(jti)}", claim="jti")
    if len(jti) > MAX_JTI_CHARS:
        raise TokenError(f"token 'jti' is {len(jti)} characters; the limit is {MAX_JTI_CHARS}", claim="jti")
    return atc


def _signing_chain(header: dict[str, Any], fetcher: Fetcher) -> tuple[tuple[x509.Certificate, ...], str | None]:
    if "x5u" in header:
        url = header["x5u"]
        if not isinstance(url, str):
            raise TokenError(f"token header 'x5u' must be a URL string, got {json_type(url)}", claim="x5u")
        try:
            chain = tuple(fetcher.fetch(url))
        except X5UError as exc:
            if exc.retry_after is not None:
                # Not a judgement on the token: the same token may pass once the fetcher has
                # room or the host answers, so this is not a TokenError.
                raise UnavailableError(
                    f"token header 'x5u': {exc.detail}", field="x5u", retry_after=max(1, math.ceil(exc.retry_after))
                ) from exc
            raise TokenError(f"token header 'x5u': {exc.detail}", claim="x5u") from exc
        if not chain:
            raise TokenError("token header 'x5u' resource holds no certificate", claim="x5u")
        return chain, url
    x5c = header["x5c"]
    # RFC 7515 §4.1.6: a JSON array of base64 (not base64url) DER certificates, signer first.
    if not isinstance(x5c, list) or not x5c or not all(isinstance(c, str) for c in x5c):
        raise TokenError("token header 'x5c' must be a non-empty array of base64 DER certificates", claim="x5c")
    if len(x5c) > MAX_CHAIN_DEPTH + 1:
        raise TokenError(f"token header 'x5c' holds {len(x5c)} certificates; the limit is {MAX_CHAIN_DEPTH + 1}", claim="x5c")
    chain = []
    for index, encoded in enumerate(x5c):
        try:
            chain.append(with_names_decoded(x509.load_der_x509_certificate(base64.b64decode(encoded, validate=True))))
        except (binascii.Error, *MALFORMED_X509_ERRORS) as exc:
            raise TokenError(f"token header 'x5c[{index}]' is not a base64 DER certificate (RFC 7515 §4.1.6)", claim="x5c") from exc
    return tuple(chain), None


def _check_trusted(
    chain: tuple[x509.Certificate, ...], trust: TokenTrust, now: dt.datetime, *, claim: str
) -> x509.Certificate:
    """The signing certificate, once it chains to a trusted token authority at ``now``.

    Path building and validation (signatures, validity periods, basicConstraints and keyUsage of
    every CA on the path) are cryptography's RFC 5280 verifier; a pinned token authority
    certificate is its own trust anchor. The end-entity extension policy is permissive because a
    token authority certificate is not a web server or client certificate (no SAN or EKU is
    required); its keyUsage, when present, must allow digitalSignature.
    """
    leaf, intermediates = chain[0], list(chain[1:])
    for certificate in chain:
        # Said precisely before path building, whose message for this is generic: an expired
        # token authority certificate is an operator's everyday mistake (RFC 5280 §4.1.2.5).
        if now > certificate.not_valid_after_utc or now < certificate.not_valid_before_utc:
            when = (f"expired at {certificate.not_valid_after_utc.isoformat()}" if now > certificate.not_valid_after_utc
                    else f"is not valid before {certificate.not_valid_before_utc.isoformat()}")
            raise TokenError(
                f"token signer certificate '{leaf.subject.rfc4514_string()}' does not chain to a trusted token "
                f"authority (RFC 9448 §6 steps 2-3): certificate '{certificate.subject.rfc4514_string()}' in its "
                f"{claim} chain {when}",
                claim=claim,
            )
    verifier = (
        x509_verification.PolicyBuilder()
        .store(x509_verification.Store(list(trust.anchors)))
        .time(now)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(
            ca_policy=x509_verification.ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=x509_verification.ExtensionPolicy.permit_all(),
        )
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, intermediates)
    except x509_verification.VerificationError as exc:
        raise TokenError(
            f"token signer certificate '{leaf.subject.rfc4514_string()}' does not chain to a trusted "
            f"token authority (RFC 9448 §6 steps 2-3): {exc}",
            claim=claim,
        ) from exc
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.digital_signature:
        raise TokenError(
            f"token signer certificate '{leaf.subject.rfc4514_string()}' keyUsage does not allow digitalSignature",
            claim=claim,
        )
    return leaf


def _check_tktype(atc: dict[str, Any]) -> None:
    if atc["tktype"] != TKTYPE_TNAUTHLIST:
        raise TokenError(
            f"token 'atc.tktype' must be '{TKTYPE_TNAUTHLIST}' (RFC 9448 §6 step 5), got {excerpt(atc['tktype'])}",
            claim="atc.tktype",
        )


def _check_tkvalue(atc: dict[str, Any], identifier_scope: TNScope) -> TNScope:
    try:
        # Base64url (RFC 9448 §5.4) or padded standard base64 (SHAKEN practice); DER compared.
        der = decode_identifier_value(atc["tkvalue"])
    except ScopeError as exc:
        raise TokenError(f"token 'atc.tkvalue' is not a base64url TNAuthList: {exc.detail}", claim="atc.tkvalue") from exc
    expected = identifier_scope.to_der()
    if der == expected:
        return identifier_scope
    try:
        described = TNScope.from_der(der).describe()
    except ScopeError:
        described = "bytes that are not a DER TNAuthList"
    raise TokenError(
        "token 'atc.tkvalue' is for another TNAuthList than the identifier (RFC 9448 §6 step 6): "
        f"expected {identifier_scope.describe()}, got {described}",
        claim="atc.tkvalue",
    )


def _check_time_claims(payload: dict[str, Any], trust: TokenTrust, now: dt.datetime) -> dt.datetime:
    expires = _numeric_date(payload["exp"], "exp")
    if expires + CLOCK_SKEW_LEEWAY <= now:
        raise TokenError(
            f"token 'exp' {expires.isoformat()} has passed (now {now.isoformat()}, leeway "
            f"{int(CLOCK_SKEW_LEEWAY.total_seconds())} s)",
            claim="exp",
        )
    latest = now + trust.max_lifetime + CLOCK_SKEW_LEEWAY
    if expires > latest:
        raise TokenError(
            f"token 'exp' {expires.isoformat()} is too far in the future: this authority accepts tokens "
            f"valid for at most {format_duration(trust.max_lifetime)} (until {latest.isoformat()})",
            claim="exp",
        )
    if "iat" in payload:
        # ca/policies/default.toml: the lifetime is counted from iat to exp when the token says iat.
        issued = _numeric_date(payload["iat"], "iat")
        if issued > now + CLOCK_SKEW_LEEWAY:
            raise TokenError(f"token 'iat' {issued.isoformat()} is in the future (now {now.isoformat()})", claim="iat")
        if expires - issued > trust.max_lifetime:
            raise TokenError(
                f"token lifetime from 'iat' to 'exp' is {format_duration(expires - issued)}; this authority "
                f"accepts at most {format_duration(trust.max_lifetime)}",
                claim="exp",
            )
    if "nbf" in payload:
        not_before = _numeric_date(payload["nbf"], "nbf")
        if not_before > now + CLOCK_SKEW_LEEWAY:
            raise TokenError(f"token 'nbf' {not_before.isoformat()} is in the future (now {now.isoformat()})", claim="nbf")
    return expires


def _numeric_date(value: Any, claim: str) -> dt.datetime:
    # RFC 7519 §2: NumericDate is a JSON number of seconds since the epoch; bool is not a number.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(f"token '{claim}' must be a NumericDate (RFC 7519 §2), got {json_type(value)}", claim=claim)
    try:
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    except (OverflowError, OSError, ValueError) as exc:
        raise TokenError(f"token '{claim}' {value!r} is out of range", claim=claim) from exc


def _check_fingerprint(atc: dict[str, Any], account_jwk: Any, trust: TokenTrust) -> None:
    check_account_fingerprint(atc["fingerprint"], account_jwk, accept_spki=trust.compat.fingerprint_spki_sha256)


def _check_ca_flag(atc: dict[str, Any]) -> bool:
    # RFC 9447 §4 / RFC 9448 §5.4: "ca" is optional and false when absent.
    ca = atc.get("ca", False)
    if not isinstance(ca, bool):
        raise TokenError(f"token 'atc.ca' must be a boolean, got {json_type(ca)}", claim="atc.ca")
    return ca


# ------------------------------------------------------------------------------------------
# Single use and revocation
# ------------------------------------------------------------------------------------------


def check_minted_here(session: Session, verified: VerifiedToken) -> models_acme.AuthorityToken | None:
    """For a token of our own token authority: the minted row, refusing unknown or revoked ones.

    A token our key signed but :func:`ca.tokens.minting.mint` never recorded means the key signed outside this
    authority; a token minted under a delegation that has since been revoked no longer carries
    the delegation's authority. Tokens of external token authorities return ``None``.
    """
    if not verified.local:
        return None
    minted = session.get(models_acme.AuthorityToken, verified.jti)
    if minted is None:
        raise TokenError(
            f"token 'jti' {excerpt(verified.jti)} is signed by this authority's token authority but "
            "was never minted by it",
            claim="jti",
        )
    delegation = session.get(models_authority.Delegation, minted.delegation_id)
    if delegation is None or delegation.status != DelegationStatus.ACTIVE:
        raise TokenError(
            f"token 'jti' {excerpt(verified.jti)} was minted under delegation {minted.delegation_id}, "
            "which has been revoked",
            claim="jti",
        )
    return minted


def record_use(session: Session, verified: VerifiedToken, account_id: str, challenge_id: str) -> str | None:
    """Record the token's ``jti`` as used, in the caller's transaction; returns the delegation id.

    The unique constraint on ``used_token_jtis`` (issuer, jti) is what makes tokens single use,
    also between processes racing on the same token; a violation becomes
    ``TokenError(claim="jti")``. The insert runs in a savepoint so the caller's transaction stays
    usable for recording the challenge as invalid. For tokens this authority minted, returns the
    delegation they were minted under (pass it to ``ca.records.delegations.find_covering``); else None.
    """
    minted = check_minted_here(session, verified)
    row = models_acme.UsedTokenJTI(
        issuer=verified.issuer,
        jti=verified.jti,
        account_id=account_id,
        challenge_id=challenge_id,
        expires_at=verified.expires,
    )
    try:
        with store.savepoint(session):
            session.add(row)
            session.flush()
    except IntegrityError as exc:
        raise TokenError(f"token already used: 'jti' {excerpt(verified.jti)} was presented before", claim="jti") from exc
    return minted.delegation_id if minted is not None else None


