"""What the order functions need of the authority that runs them, passed in rather than reached for.

An :class:`Authority` is built once by each process that acts on orders: the ACME server
(``acme_server/state.py``) and the STAR worker (``ca/lifecycle/renewal_worker.py``). The costly
parts (the issuing CA's signer, which may log in to an HSM; the CT client; the token trust list
and the x5u fetcher with its cache) are providers, called on first use, so that a process that
never issues never loads them; each provider returns the same object every time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ca.clock import Clock
from ca.home import Home
from ca.issuing.issuance import IssuerHandle, Transparency
from ca.policy import Policy
from ca.tokens.trust_config import TokenTrust
from ca.orders.domains import DomainValidator
from ca.tokens.verification import Fetcher


def _no_token_trust() -> "TokenTrust":
    raise RuntimeError("this process verifies no authority tokens (Authority.token_trust was not given)")


def _no_domain_validator() -> "DomainValidator":
    raise RuntimeError("this process validates no domains (Authority.domain_validator was not given)")


def _no_fetcher() -> "Fetcher":
    raise RuntimeError("this process fetches no x5u URLs (Authority.x5u_fetcher was not given)")


@dataclasses.dataclass(frozen=True)
class Authority:
    policy: Policy
    clock: Clock
    issuing_ca: Callable[[], "IssuerHandle"]
    # The CT client issuance submits precertificates through; it returns None when the policy
    # requires no SCTs.
    transparency: Callable[[], "Transparency | None"]
    # Only the token answer (tkauth-01) needs these; the renewal worker verifies no tokens.
    token_trust: Callable[[], "TokenTrust"] = _no_token_trust
    x5u_fetcher: Callable[[], "Fetcher"] = _no_fetcher
    # http-01 / dns-01 for dns identifiers (ca/orders/domains.py, tnca.toml [domains]).
    domain_validator: Callable[[], "DomainValidator"] = _no_domain_validator

    @classmethod
    def of_home(cls, home: "Home", *, clock: Clock | None = None, **token_providers: Callable[[], object]) -> "Authority":
        """The authority of ``home``, with its clock unless ``clock`` replaces it (a test's, a worker's)."""
        token_providers.setdefault("domain_validator", home.domain_validator)
        return cls(policy=home.policy, clock=clock if clock is not None else home.clock,
                   issuing_ca=home.issuing_ca, transparency=home.transparency, **token_providers)
