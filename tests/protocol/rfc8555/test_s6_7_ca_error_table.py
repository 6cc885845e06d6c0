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
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_s6_7_ca_errors_map_to_registered_problem_types_with_their_detail(error, phase, code, status):
    problem = problem_for_ca_error(error, phase)
    assert (problem.code, problem.status, problem.detail) == (code, status, error.detail)
    # Every type is one a client knows (certbot's list of RFC 8555 error codes).
    assert messages.Error.with_code(problem.code).code == problem.code


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
