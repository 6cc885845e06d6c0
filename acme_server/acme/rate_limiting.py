"""The ACME server's side of the policy's rate limits (``ca/records/rate_limits.py``).

Each function counts in the request's session (``db_session()``): the count commits with the
request's work. :func:`refused` is the one place a refusal becomes RFC 8555 §6.7
``rateLimited``, 429 with Retry-After (through the error table in ``problems.py``).
"""

from __future__ import annotations

from acme_server.acme import problems
from acme_server.state import current_state, db_session
from ca import metrics
from ca.errors import RateLimitedError
from ca.records import rate_limits


def enforce(name: str, key: str) -> None:
    """Count one attempt at ``name`` by ``key``; refuse the request when over the limit."""
    state = current_state()
    try:
        rate_limits.check(db_session(), state.policy.rate_limits, name, key, clock=state.clock)
    except RateLimitedError as error:
        raise refused(error) from error


def enforce_not_reached(name: str, key: str) -> None:
    """Refuse the request when ``key`` has reached ``name``'s count of recorded failures."""
    state = current_state()
    try:
        rate_limits.refuse_if_reached(db_session(), state.policy.rate_limits, name, key, clock=state.clock)
    except RateLimitedError as error:
        raise refused(error) from error


def record(name: str, key: str) -> None:
    """Count one failure (a failed validation) towards ``name``, in the request's transaction."""
    state = current_state()
    rate_limits.record(db_session(), state.policy.rate_limits, name, key, clock=state.clock)


def refused(error: RateLimitedError) -> problems.AcmeProblem:
    """The single call site of an ACME rate-limit refusal: counted in
    ``tnca_rate_limited_total{limit}`` (``ca/metrics.py``) and answered as RFC 8555 §6.7
    ``rateLimited``."""
    metrics.rate_limited(error.limit)
    return problems.problem_for_ca_error(error)
