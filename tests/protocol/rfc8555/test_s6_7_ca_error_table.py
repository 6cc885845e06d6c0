"""The one table from ``ca/`` errors to RFC 8555 §6.7 problem types (acme_server/acme/problems.py)."""

from __future__ import annotations

import pytest
from acme import messages

from acme_server.acme.problems import INTERNAL_DETAIL, Phase, problem_for_ca_error
from ca import errors


@pytest.mark.parametrize(
    "error, phase, code, status",
    [
        (errors.TokenError("token 'exp' has passed", claim="exp"), Phase.CHALLENGE, "unauthorized", 403),
        (errors.DelegationError("not covered", field="scope"), Phase.CHALLENGE, "unauthorized", 403),
        (errors.DelegationError("delegation d is revoked", field="delegation"), Phase.FINALIZE, "unauthorized", 403),
        (errors.CSRError("CSR signature does not verify", field="csr.signature"), Phase.FINALIZE, "badCSR", 400),
        (errors.PolicyError("key type ec-p384 is not allowed", field="csr.public_key"), Phase.FINALIZE, "badCSR", 400),
        (errors.PolicyError("notBefore is in the past", field="notBefore"), Phase.FINALIZE, "malformed", 400),
        (errors.ScopeError("empty list", field="TNAuthList"), Phase.NEW_ORDER, "malformed", 400),
        (errors.ScopeError("CSR TNAuthList unreadable", field="csr.TNAuthList"), Phase.FINALIZE, "badCSR", 400),
        (errors.ScopeError("outside the issuing CA", field="scope"), Phase.FINALIZE, "rejectedIdentifier", 403),
        (errors.RevocationError("already revoked", field="certificate"), None, "alreadyRevoked", 400),
        (errors.NotFoundError("no delegation x", field="delegation"), None, "malformed", 404),
        (errors.UnavailableError("x5u busy", field="x5u", retry_after=5), Phase.CHALLENGE, "rateLimited", 503),
        (errors.ScopeError("TN 13035550000 is outside this authority's TNAuthList", field="issuer"), Phase.NEW_ORDER,
         "rejectedIdentifier", 400),
        (errors.OrderNotReadyError("order o is pending", field="status"), Phase.FINALIZE, "orderNotReady", 403),
        (errors.NotOwnedError('"replaces" names certificate 1a, which was not issued to this account',
                              field="replaces"), Phase.NEW_ORDER, "unauthorized", 403),
        (errors.PolicyError('"replaces" names no certificate', field="replaces"), Phase.NEW_ORDER, "malformed", 400),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_s6_7_ca_errors_map_to_registered_problem_types_with_their_detail(error, phase, code, status):
    problem = problem_for_ca_error(error, phase)
    assert (problem.code, problem.status, problem.detail) == (code, status, error.detail)
    # Every type is one a client knows (certbot's list of RFC 8555 error codes).
    assert messages.Error.with_code(problem.code).code == problem.code


def test_s6_6_unavailable_says_when_to_retry():
    problem = problem_for_ca_error(errors.UnavailableError("x5u busy", field="x5u", retry_after=7), Phase.CHALLENGE)
    assert problem.headers == {"Retry-After": "7"}


@pytest.mark.parametrize(
    "error",
    [
        errors.SignerError("PKCS#11 token 'tnca' at /usr/lib/softhsm/libsofthsm2.so: CKR_PIN_INCORRECT"),
        errors.TransparencyError("log https://ct.internal:8443 timed out"),
        errors.IssuanceError("unknown certificate profile"),
        errors.ClaimConstraintsError("stored constraints of delegation d do not decode"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_s6_7_internal_ca_errors_are_server_internal_without_their_message(error):
    """Internal messages may carry sensitive data (an HSM path, a log URL): the client gets none of it."""
    problem = problem_for_ca_error(error, Phase.FINALIZE)
    assert (problem.code, problem.status, problem.detail) == ("serverInternal", 500, INTERNAL_DETAIL)


def test_rfc9773_s5_already_replaced_is_409_already_replaced():
    """RFC 9773 §5: "the server MUST reject the request with a 409 (Conflict) ... alreadyReplaced"."""
    error = errors.AlreadyReplacedError("certificate 1a is already replaced by order o (pending)", serial="1a",
                                        order_id="o", order_status="pending")
    problem = problem_for_ca_error(error, Phase.NEW_ORDER)
    assert (problem.code, problem.status, problem.detail) == ("alreadyReplaced", 409, error.detail)
