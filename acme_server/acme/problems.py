"""RFC 8555 §6.7 problem documents: the only way the ACME server reports an error.

One :class:`AcmeProblem` exception carries the problem ``type``, HTTP status and a ``detail`` a
person can act on; one constructor per error type fixes its status. Anything in ``acme_server``
may raise an :class:`AcmeProblem`; one app-level handler (``acme_server/acme/errors.py``) renders
it as ``application/problem+json``.

``ca/`` never sees this module. It raises the typed errors of ``ca/errors.py``;
:data:`CA_ERROR_PROBLEMS` is the single table that maps each of them to a problem type at this
edge, with a per-phase column where the same ``ca`` error means different things to a client (a
:class:`~ca.errors.PolicyError` about the CSR's key during finalize is ``badCSR``; one about the
requested validity is ``malformed``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

from ca import errors as ca_errors

# RFC 8555 §6.7: "urn:ietf:params:acme:error:" followed by the error type.
ERROR_NAMESPACE = "urn:ietf:params:acme:error:"

PROBLEM_CONTENT_TYPE = "application/problem+json"


class AcmeProblem(Exception):
    """An RFC 7807 problem document with an ACME error type, raised anywhere in ``acme_server``.

    ``identifier`` is only meaningful on a subproblem: RFC 8555 §6.7.1 says the top-level
    problem MUST NOT carry one. ``algorithms`` is the RFC 8555 §6.2 list that a
    ``badSignatureAlgorithm`` problem MUST include. ``headers`` are extra response headers
    (``Location`` on a 409, ``Allow`` on a 405, ``Link`` for ``userActionRequired``).
    """

    def __init__(
        self,
        code: str,
        detail: str,
        status: int,
        *,
        identifier: Mapping[str, str] | None = None,
        subproblems: Sequence["AcmeProblem"] = (),
        algorithms: Sequence[str] | None = None,
        instance: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status
        self.identifier = dict(identifier) if identifier is not None else None
        self.subproblems = tuple(subproblems)
        self.algorithms = tuple(algorithms) if algorithms is not None else None
        self.instance = instance
        self.headers = dict(headers or {})

    @property
    def type(self) -> str:
        return ERROR_NAMESPACE + self.code

    def to_json(self, *, top_level: bool = True) -> dict[str, Any]:
        document: dict[str, Any] = {"type": self.type, "detail": self.detail}
        if not top_level:
            if self.identifier is not None:
                document["identifier"] = self.identifier
        else:
            document["status"] = self.status
        if self.instance is not None:
            document["instance"] = self.instance
        if self.algorithms is not None:
            document["algorithms"] = list(self.algorithms)
        if self.subproblems:
            document["subproblems"] = [p.to_json(top_level=False) for p in self.subproblems]
        return document

    def __repr__(self) -> str:
        return f"AcmeProblem({self.code!r}, {self.detail!r}, {self.status})"


# --------------------------------------------------------------------------------------------
# One constructor per RFC 8555 §6.7 error type this server sends, each with its HTTP status.
# --------------------------------------------------------------------------------------------


def malformed(detail: str, status: int = 400, **kwargs: Any) -> AcmeProblem:
    # RFC 8555 §6.3: a GET on a POST-only resource is 405 with type malformed; 404, 413 and 415
    # use this type too, since RFC 8555 registers nothing more specific.
    return AcmeProblem("malformed", detail, status, **kwargs)


def unauthorized(detail: str, status: int = 403, **kwargs: Any) -> AcmeProblem:
    # RFC 8555 §7.3.6: requests from a deactivated account get 401; other refusals 403.
    return AcmeProblem("unauthorized", detail, status, **kwargs)


def bad_nonce(detail: str) -> AcmeProblem:
    return AcmeProblem("badNonce", detail, 400)


def bad_signature_algorithm(detail: str, algorithms: Sequence[str]) -> AcmeProblem:
    # RFC 8555 §6.2: the problem document MUST include an "algorithms" field.
    return AcmeProblem("badSignatureAlgorithm", detail, 400, algorithms=algorithms)


def bad_public_key(detail: str) -> AcmeProblem:
    return AcmeProblem("badPublicKey", detail, 400)


def account_does_not_exist(detail: str) -> AcmeProblem:
    # RFC 8555 §7.3.1: onlyReturnExisting for an unknown key is 400 accountDoesNotExist.
    return AcmeProblem("accountDoesNotExist", detail, 400)


def invalid_contact(detail: str) -> AcmeProblem:
    return AcmeProblem("invalidContact", detail, 400)


def unsupported_contact(detail: str) -> AcmeProblem:
    return AcmeProblem("unsupportedContact", detail, 400)


def external_account_required(detail: str) -> AcmeProblem:
    return AcmeProblem("externalAccountRequired", detail, 403)


def unsupported_identifier(detail: str, **kwargs: Any) -> AcmeProblem:
    return AcmeProblem("unsupportedIdentifier", detail, 400, **kwargs)


def rejected_identifier(detail: str, status: int = 400, **kwargs: Any) -> AcmeProblem:
    return AcmeProblem("rejectedIdentifier", detail, status, **kwargs)


def order_not_ready(detail: str) -> AcmeProblem:
    # RFC 8555 §7.4: finalizing an order that is not "ready" MUST get 403 orderNotReady.
    return AcmeProblem("orderNotReady", detail, 403)


def bad_csr(detail: str) -> AcmeProblem:
    return AcmeProblem("badCSR", detail, 400)


def bad_revocation_reason(detail: str) -> AcmeProblem:
    return AcmeProblem("badRevocationReason", detail, 400)


def already_revoked(detail: str) -> AcmeProblem:
    # RFC 8555 §7.6: "the server MUST respond with 400 ... alreadyRevoked".
    return AcmeProblem("alreadyRevoked", detail, 400)


def conflict(detail: str, *, location: str) -> AcmeProblem:
    # RFC 8555 §7.3.5: a key already in use gets 409 Conflict with the Location of its account.
    # RFC 8555 registers no "conflict" type; malformed is what ACME clients expect here.
    return AcmeProblem("malformed", detail, 409, headers={"Location": location})


def already_replaced(detail: str, *, location: str) -> AcmeProblem:
    # RFC 9773 §5: a certificate another order already replaces "MUST" get 409 alreadyReplaced.
    # Location names that order, as on RFC 8555 §7.3.1's 409: certbot's client reports any 409
    # as a ConflictError carrying only the Location header.
    return AcmeProblem("alreadyReplaced", detail, 409, headers={"Location": location})


# RFC 8739 §3.1.2, §3.3 (registered in §5.2): STAR orders.


def auto_renewal_canceled(detail: str) -> AcmeProblem:
    # RFC 8739 §3.1.2: a canceled order's star-certificate "MUST respond with 403".
    return AcmeProblem("autoRenewalCanceled", detail, 403)


def auto_renewal_expired(detail: str) -> AcmeProblem:
    # RFC 8739 §3.3: after the order expires, star-certificate requests get 403.
    return AcmeProblem("autoRenewalExpired", detail, 403)


def auto_renewal_cancellation_invalid(detail: str) -> AcmeProblem:
    # RFC 8739 §3.1.2: canceling an order that is not "valid" is 400.
    return AcmeProblem("autoRenewalCancellationInvalid", detail, 400)


def auto_renewal_revocation_not_supported(detail: str) -> AcmeProblem:
    # RFC 8739 §3.1.2: revokeCert of a STAR certificate is 403.
    return AcmeProblem("autoRenewalRevocationNotSupported", detail, 403)


def server_internal(detail: str) -> AcmeProblem:
    return AcmeProblem("serverInternal", detail, 500)


def compound(detail: str, subproblems: Sequence[AcmeProblem], status: int = 400) -> AcmeProblem:
    """A problem with one subproblem per identifier (RFC 8555 §6.7.1).

    When every subproblem has the same type, the top level uses it (clients that ignore
    subproblems still see the right type); otherwise the top level is ``compound``.
    """
    codes = {p.code for p in subproblems}
    code = codes.pop() if len(codes) == 1 else "compound"
    return AcmeProblem(code, detail, status, subproblems=subproblems)


# --------------------------------------------------------------------------------------------
# The one table from ca/ errors to problem documents.
# --------------------------------------------------------------------------------------------


class Phase(enum.Enum):
    """Where a ``ca`` error surfaced: the same error can mean different things to a client."""

    NEW_ORDER = "newOrder"
    CHALLENGE = "challenge"
    FINALIZE = "finalize"


# The one table: (ca error class, phase or None for any, prefix of the error's ``field`` or None
# for any) → (error type, HTTP status). The first matching row wins, so specific rows come first.
CA_ERROR_PROBLEMS: tuple[tuple[type[ca_errors.TNCAError], Phase | None, str | None, str, int], ...] = (
    # RFC 9448 §6: a token that fails any check leaves the challenge "invalid". RFC 9447/9448
    # register no error type of their own; "unauthorized" says the token does not authorize.
    (ca_errors.TokenError, None, None, "unauthorized", 403),
    # No active delegation covers the scope (missing, revoked, expired, out of scope).
    (ca_errors.DelegationError, None, None, "unauthorized", 403),
    # Busy, or a remote host (a token's x5u) gave no complete answer in time: the request may
    # succeed later and says when (Retry-After, RFC 8555 §6.6). 503, not 429: the limit is the
    # server's capacity, not something this client overused.
    (ca_errors.UnavailableError, None, None, "rateLimited", 503),
    # RFC 8555 §6.7: "The request exceeds a rate limit"; 429 with Retry-After (RFC 6585 §4).
    (ca_errors.RateLimitedError, None, None, "rateLimited", 429),
    # RFC 8555 §6.7: "the server does not support" this key: it was revoked as compromised.
    (ca_errors.BadPublicKeyError, None, None, "badPublicKey", 400),
    (ca_errors.CSRError, None, None, "badCSR", 400),
    # RFC 8555 §7.4: a CSR the CA is unwilling to sign (a key type the policy refuses) is badCSR.
    (ca_errors.PolicyError, Phase.FINALIZE, "csr", "badCSR", 400),
    # Requested validity outside the policy and the like: RFC 8555 has no closer type.
    (ca_errors.PolicyError, None, None, "malformed", 400),
    # newOrder for a scope outside the issuing CA's TNAuthList (a subproblem naming the identifier).
    (ca_errors.ScopeError, Phase.NEW_ORDER, "issuer", "rejectedIdentifier", 400),
    # ... or with more entries than one order may carry (ca.orders.placing.MAX_ORDER_SCOPE_ENTRIES).
    (ca_errors.ScopeError, Phase.NEW_ORDER, "entries", "rejectedIdentifier", 400),
    # An identifier value that is not a DER TNAuthList.
    (ca_errors.ScopeError, Phase.NEW_ORDER, None, "malformed", 400),
    (ca_errors.ScopeError, Phase.FINALIZE, "csr", "badCSR", 400),
    # A well-formed scope this authority will not issue for (outside the issuing CA's).
    (ca_errors.ScopeError, None, None, "rejectedIdentifier", 403),
    (ca_errors.RevocationError, None, None, "alreadyRevoked", 400),
    # RFC 8739 §3.1.2: the one change a client asks of a STAR order is its cancellation.
    (ca_errors.AutoRenewalError, None, None, "autoRenewalCancellationInvalid", 400),
    (ca_errors.NotFoundError, None, None, "malformed", 404),
    # RFC 8555 §7.4: finalizing an order that is not "ready" MUST get 403 orderNotReady.
    (ca_errors.OrderNotReadyError, None, None, "orderNotReady", 403),
    (ca_errors.NotOwnedError, None, None, "unauthorized", 403),
    # RFC 9773 §5: 409 alreadyReplaced; the front end adds the Location of the replacing order.
    (ca_errors.AlreadyReplacedError, None, None, "alreadyReplaced", 409),
    # Server-side trouble the client cannot fix (a delegation's stored constraints that do not
    # decode, a signer or HSM failure, too few SCTs): the detail stays generic because it may
    # name an HSM, a log URL or a file; the cause is logged with an incident id.
    (ca_errors.ClaimConstraintsError, None, None, "serverInternal", 500),
    (ca_errors.SignerError, None, None, "serverInternal", 500),
    (ca_errors.TransparencyError, None, None, "serverInternal", 500),
    (ca_errors.IssuanceError, None, None, "serverInternal", 500),
)

INTERNAL_DETAIL = "the authority could not complete the request; try again later"


def problem_for_ca_error(error: ca_errors.TNCAError, phase: Phase | None = None) -> AcmeProblem:
    """The problem document for a ``ca`` error raised while handling ``phase``.

    Errors classed as internal get a generic detail; the caller logs the original with an
    incident id (``acme_server/acme/errors.py``).
    """
    field = error.field or ""
    for error_class, row_phase, field_prefix, code, status in CA_ERROR_PROBLEMS:
        if not isinstance(error, error_class):
            continue
        if row_phase is not None and row_phase is not phase:
            continue
        if field_prefix is not None and not field.startswith(field_prefix):
            continue
        break
    else:
        code, status = "serverInternal", 500
    if code == "serverInternal":
        return server_internal(INTERNAL_DETAIL)
    if isinstance(error, (ca_errors.UnavailableError, ca_errors.RateLimitedError)):
        return AcmeProblem(code, error.detail, status, headers={"Retry-After": str(error.retry_after)})
    return AcmeProblem(code, error.detail, status)


def is_internal(problem: AcmeProblem) -> bool:
    return problem.code == "serverInternal"
