"""Typed errors of the authority core.

``ca/`` raises these; front ends translate them at the edge (the ACME server maps each class to
an RFC 8555 problem type in one table, the CLI to an exit code). ``detail`` is written for a
person: it names the field or claim, what was expected and what arrived, and never echoes a
whole token or a secret.
"""

from __future__ import annotations


class TNCAError(Exception):
    """Base class. ``field`` names the input at fault, when there is one."""

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class ScopeError(TNCAError):
    """A TN scope (TNAuthList) is malformed, or is not inside the scope it must be inside."""


class ClaimConstraintsError(TNCAError):
    """A JWTClaimConstraints / EnhancedJWTClaimConstraints value is malformed or contradictory."""


class PolicyError(TNCAError):
    """The request is well formed but the issuance policy does not allow it."""


class CSRError(TNCAError):
    """The certificate signing request is malformed, badly signed or asks for the wrong thing."""


class BadPublicKeyError(CSRError):
    """The CSR's public key is one the authority will not certify (known compromised, weak); the
    client can send a CSR with another key (ACME ``badPublicKey``)."""


class DelegationError(TNCAError):
    """No active delegation covers the request (missing, revoked, expired, out of scope)."""


class TokenError(TNCAError):
    """An authority token failed validation; ``claim`` names the claim or header at fault."""

    def __init__(self, detail: str, *, claim: str | None = None) -> None:
        super().__init__(detail, field=claim)
        self.claim = claim


class UnavailableError(TNCAError):
    """Something the request depends on is busy or did not answer in time, through nobody's fault
    that the request could show: the same request may succeed later. ``retry_after`` is in
    seconds (e.g. the x5u fetcher was busy, or a token authority's x5u host gave no complete
    answer within the fetch deadline)."""

    def __init__(self, detail: str, *, field: str | None = None, retry_after: int) -> None:
        super().__init__(detail, field=field)
        self.retry_after = retry_after


class RateLimitedError(TNCAError):
    """A key (an account, a delegate, a client address, a login name) did one thing more often than
    the policy's ``[rate_limits]`` allow in the current window (``field`` is the limit's name);
    ``retry_after`` is the seconds until that window ends."""

    def __init__(self, detail: str, *, limit: str, retry_after: int) -> None:
        super().__init__(detail, field=limit)
        self.limit = limit
        self.retry_after = retry_after


class SignerError(TNCAError):
    """A key backend could not sign (missing key, HSM unavailable, wrong key type)."""


class TransparencyError(TNCAError):
    """Not enough valid SCTs could be obtained from the policy's logs. ``reason``, when set, says
    why one log gave none (``deadline``, ``unreachable``, ``refused``, ``malformed``): the
    ``tnca_ct_submission_failures_total`` label."""

    def __init__(self, detail: str, *, field: str | None = None, reason: str | None = None) -> None:
        super().__init__(detail, field=field)
        self.reason = reason


class IssuanceError(TNCAError):
    """Issuance failed for a reason not covered by a more specific class."""


class NotFoundError(TNCAError):
    """A referenced object (delegation, certificate, account) does not exist."""


class OrderNotReadyError(TNCAError):
    """An order is not in the state the request needs: finalize of an order that is not "ready",
    or that another request is finalizing right now (RFC 8555 §7.4)."""


class NotOwnedError(TNCAError):
    """An object the request names belongs to another account (RFC 9773 §5: a replaced
    certificate must have been issued to the ordering account)."""


class AlreadyReplacedError(TNCAError):
    """RFC 9773 §5: the certificate is already replaced by an order that can still issue.

    ``order_id`` and ``order_status`` name that order, so a front end can point at it.
    """

    def __init__(self, detail: str, *, serial: str, order_id: str, order_status: str) -> None:
        super().__init__(detail, field="replaces")
        self.serial = serial
        self.order_id = order_id
        self.order_status = order_status


class AutoRenewalError(TNCAError):
    """A STAR order (RFC 8739) cannot change as asked: it is not an auto-renewal order, or it is
    not in the state the change needs (only a "valid" one can be canceled, §3.1.2)."""


class RevocationError(TNCAError):
    """A revocation request cannot be carried out (e.g. already revoked, bad reason code)."""


class AuditChainError(TNCAError):
    """The audit hash chain is broken; ``seq`` is the first event that does not verify."""

    def __init__(self, detail: str, *, seq: int) -> None:
        super().__init__(detail, field="audit_events")
        self.seq = seq


class AuditExportError(TNCAError):
    """An audit export file cannot be read (not the format ``ca.records.audit.export`` writes); ``line`` is 1-based."""

    def __init__(self, detail: str, *, line: int | None = None) -> None:
        super().__init__(detail, field="export")
        self.line = line


class UserError(TNCAError):
    """A request about people cannot be carried out: a malformed name, role or password, a name
    that exists already, or a change that would leave the authority without an active admin."""


class AuthenticationError(TNCAError):
    """Credentials (password, session, API token) are wrong, expired or belong to a disabled person.

    The detail never says which part was wrong, so it cannot be used to find valid names.
    """


class LoginThrottledError(AuthenticationError):
    """Too many failed logins for a name or from an address; ``retry_after`` is in seconds."""

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, field="login")
        self.retry_after = retry_after


class QueryError(TNCAError):
    """An audit query parameter is malformed; ``field`` names the parameter."""
