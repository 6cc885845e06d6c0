"""Which token authorities this authority trusts, and on what terms (``[tokens]``, ``[compat]``).

:class:`TokenTrust` is what :func:`ca.tokens.verification.verify` checks a token against: the
trusted token authority certificates (this authority's own one included), the longest token
lifetime accepted and the allowed JWS algorithms, all from the policy's ``[tokens]`` section
(:func:`trust_from_policy`). :class:`TokenCompat` holds the documented compatibility switches of
``tnca.toml`` ``[compat]``, every one off by default.

It stands apart because it is configuration, loaded once per process (``acme_server/state.py``),
while verification runs per token and minting per operator request.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca.errors import PolicyError
from ca.policy import TokenPolicy
from ca.tokens.jws import SUPPORTED_ALGORITHMS

# RFC 8725 §3.1 / RFC 9448 §5.3: only asymmetric algorithms; ES256 is the STIR algorithm and the
# default. The policy (``[tokens] allowed_algorithms``) may widen it within SUPPORTED_ALGORITHMS.
ALLOWED_ALGORITHMS = frozenset({"ES256"})
# Default ceiling for a minted token's lifetime when the policy does not say otherwise.
DEFAULT_MAX_TOKEN_TTL = dt.timedelta(hours=24)


@dataclasses.dataclass(frozen=True)
class TokenCompat:
    """Compatibility switches for token validation. Every switch defaults to ``False``.

    ``fingerprint_spki_sha256``: also accept an ``atc.fingerprint`` that is SHA-256 over the
    DER SubjectPublicKeyInfo of the account key, as some token authorities compute it. RFC 9448
    §5.4 defines the fingerprint as the RFC 8555 §8.1 thumbprint (RFC 7638); both are 32 bytes
    bound to the same key, so accepting the other form does not widen who can use a token, but
    it is a divergence and is off unless a deployment's token authority needs it.

    ``csr_key_may_equal_account_key``: finalize accepts a CSR whose key is the account key, which
    RFC 8555 §11.1 forbids and deployed SHAKEN clients send (``ca.orders.finalize``).

    ``empty_payload_signed_without_dot``: an ACME request whose payload is empty (POST-as-GET,
    and newAccount as some SHAKEN clients send it) may be signed over ``ASCII(BASE64URL(protected))``
    alone, without the "." RFC 7515 §5.1 puts before the empty payload
    (``acme_server/acme/jws.py``). Only for an empty payload: a signature over a non-empty
    payload must cover it.

    ``new_account_empty_payload``: newAccount with an empty payload is read as ``{}`` (RFC 8555
    §7.3 asks for a JSON object): it returns the key's account, or creates one where ``{}``
    would (no terms of service to agree to, no external account binding required).
    """

    fingerprint_spki_sha256: bool = False
    csr_key_may_equal_account_key: bool = False
    empty_payload_signed_without_dot: bool = False
    new_account_empty_payload: bool = False

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> TokenCompat:
        """From ``tnca.toml`` ``[compat]``: every key a known switch, every value a boolean.

        Raises :class:`~ca.errors.PolicyError` naming ``[compat] key``.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        for key, value in section.items():
            if key not in known:
                raise PolicyError(f"unknown compatibility switch [compat] {key}; known: {', '.join(sorted(known))}",
                                  field=f"[compat] {key}")
            if not isinstance(value, bool):
                raise PolicyError(f"[compat] {key} must be true or false, got {value!r}", field=f"[compat] {key}")
        return cls(**section)


@dataclasses.dataclass(frozen=True)
class TokenTrust:
    """Which token authorities are trusted, and the limits applied to their tokens.

    ``anchors``: certificates a token's signing certificate must chain to (a pinned token
    authority certificate is its own anchor). ``local_authority``: this authority's own token
    authority certificate, if it runs one; tokens it signed must be ones :func:`ca.tokens.minting.mint` recorded.
    """

    anchors: tuple[x509.Certificate, ...]
    max_lifetime: dt.timedelta = DEFAULT_MAX_TOKEN_TTL
    local_authority: x509.Certificate | None = None
    algorithms: frozenset[str] = ALLOWED_ALGORITHMS
    compat: TokenCompat = TokenCompat()

    def __post_init__(self) -> None:
        anchors = tuple(self.anchors)
        if self.local_authority is not None and all(
            a.public_bytes(serialization.Encoding.DER) != self.local_authority.public_bytes(serialization.Encoding.DER)
            for a in anchors
        ):
            anchors = anchors + (self.local_authority,)
        if not anchors:
            # An empty trust list is a misconfiguration, not "trust nothing quietly": fail at
            # startup rather than refuse every token later.
            raise ValueError("TokenTrust needs at least one trusted token authority certificate")
        unknown = set(self.algorithms) - set(SUPPORTED_ALGORITHMS)
        if unknown:
            raise ValueError(f"unsupported token algorithms {sorted(unknown)}; supported: {sorted(SUPPORTED_ALGORITHMS)}")
        if not self.algorithms:
            raise ValueError("TokenTrust needs at least one allowed token algorithm")
        object.__setattr__(self, "anchors", anchors)
        object.__setattr__(self, "algorithms", frozenset(self.algorithms))


def trust_from_policy(
    policy: TokenPolicy, *, local_authority: x509.Certificate | None, compat: TokenCompat = TokenCompat()
) -> TokenTrust:
    """A :class:`TokenTrust` from the policy's ``[tokens]`` section.

    The home's own token authority certificate is always trusted (and marked local); each file
    in ``trusted_authorities`` may hold several PEM certificates. An unreadable file is a
    PolicyError naming ``[tokens] trusted_authorities``.
    """
    anchors: list[x509.Certificate] = []
    for path in policy.trusted_authorities:
        try:
            anchors.extend(x509.load_pem_x509_certificates(Path(path).read_bytes()))
        except (OSError, ValueError) as exc:
            raise PolicyError(
                f"policy key [tokens] trusted_authorities: cannot read certificates from {path} "
                f"({getattr(exc, 'strerror', None) or exc})",
                field="[tokens] trusted_authorities",
            ) from exc
    return TokenTrust(
        anchors=tuple(anchors),
        max_lifetime=policy.max_lifetime,
        local_authority=local_authority,
        algorithms=frozenset(policy.allowed_algorithms),
        compat=compat,
    )
