"""Authorizations (RFC 8555 §7.5) and the ``tkauth-01`` challenge (RFC 9447 §3, RFC 9448 §4–§6).

The challenge is answered with an authority token. RFC 9448 §4 names the response field
``tkauth``; deployed SHAKEN clients send ``atc``: both are accepted (docs/rfc-support.md).

Validation runs synchronously when the response arrives, in ``ca.orders.answer``: the token
checks (``ca.tokens``), the delegation, the order's validity within both, and the ``jti``
recorded in the same transaction as the challenge result. A token check is not a network probe
that could succeed on retry, so the outcome is final (RFC 8555 erratum 5732 allows "invalid"
directly): a token that fails any check makes the challenge ``invalid`` with an ``error``
problem, the authorization ``invalid`` and the order ``invalid``, and the response is 200 with
that challenge object (RFC 8555 §7.5.1: the POST returns the challenge; its ``error`` says why).
A response that is not a usable answer at all (no token field) is refused with an HTTP error and
the challenge stays ``pending``. So is an answer whose token could not be checked for a reason
that may pass: the token authority's ``x5u`` chain could not be fetched because the fetcher was
busy or the host gave no complete answer in time (``ca.errors.UnavailableError``). That says
nothing about the token, so the answer gets 503 ``rateLimited`` with ``Retry-After``, nothing is
written, and the same token may be sent again.
"""

from __future__ import annotations

from typing import Any

from flask import Response, g
from sqlalchemy import bindparam, select
from sqlalchemy.orm import joinedload

from acme_server.acme import problems, rate_limiting
from ca import policy
from acme_server.acme.objects import authorization_object, challenge_object
from acme_server.acme.owned import actor, owned_authorization
from acme_server.acme.problems import Phase
from acme_server.acme.responses import acme_json
from acme_server.state import current_state, db_session
from ca.errors import TNCAError, UnavailableError
from ca.orders import answer
from ca.orders.domains import DOMAIN_CHALLENGES, DomainValidationError
from ca.orders.status import deactivate_authorization
from ca.records.statuses import AuthorizationStatus, ChallengeStatus
from ca.records.models_acme import Authorization, Challenge, Order

# RFC 9448 §4 names the field "tkauth"; SHAKEN clients send "atc" (docs/rfc-support.md, Divergences).
RESPONSE_TOKEN_FIELDS = ("tkauth", "atc")


# The hot lookups, built once: a statement object keeps its cache key, so a request only binds
# the id (``session.get`` with loader options built and keyed a new SELECT on every call).
# One statement: the authorization, its order with the order's authorizations, and its
# challenges, joined (two selectin loads were two more).
_AUTHORIZATION_WITH_ORDER = (
    select(Authorization)
    .options(joinedload(Authorization.order, innerjoin=True).joinedload(Order.authorizations),
             joinedload(Authorization.challenges))
    .where(Authorization.id == bindparam("authz_id"))
)
# The challenge, its authorization and order; the row lock (PostgreSQL) keeps two answers to the
# same challenge from both being validated.
_CHALLENGE_FOR_UPDATE = (
    select(Challenge)
    .options(joinedload(Challenge.authorization, innerjoin=True)
             .joinedload(Authorization.order, innerjoin=True)
             .selectinload(Order.authorizations))
    .where(Challenge.id == bindparam("challenge_id"))
    .with_for_update(of=Challenge)
)


def authorization(authz_id: str) -> Response:
    """POST-as-GET, or ``{"status": "deactivated"}`` (RFC 8555 §7.5.2)."""
    state, session = current_state(), db_session()
    authz = owned_authorization(
        session,
        g.account,
        session.execute(_AUTHORIZATION_WITH_ORDER, {"authz_id": authz_id}).unique().scalar_one_or_none(),
        f"authorization {authz_id[:64]!r}",
        now=state.clock.now(),
    )
    payload = g.payload
    if payload is not None:
        if payload.get("status") != AuthorizationStatus.DEACTIVATED:
            raise problems.malformed('the only change a client can make to an authorization is {"status": "deactivated"}')
        if authz.status not in (AuthorizationStatus.PENDING, AuthorizationStatus.VALID):
            raise problems.malformed(f"authorization {authz.id} is {authz.status}; only pending or valid ones can be deactivated")
        deactivate_authorization(authz)
        session.commit()
    return acme_json(authorization_object(authz, state.urls, token_authority=state.token_authority_url))


def challenge(challenge_id: str) -> Response:
    """POST-as-GET, or the challenge response carrying the authority token (RFC 8555 §7.5.1)."""
    state, session = current_state(), db_session()
    # One query for the challenge, its authorization and order; the row lock (PostgreSQL) keeps
    # two answers to the same challenge from both being validated.
    chall = session.execute(_CHALLENGE_FOR_UPDATE, {"challenge_id": challenge_id}).unique().scalar_one_or_none()
    authz = owned_authorization(session, g.account, chall.authorization if chall is not None else None,
                                f"challenge {challenge_id[:64]!r}", now=state.clock.now())
    up = ((state.urls.authorization(authz.id), "up"),)  # RFC 8555 §7.5.1: Link rel="up"
    payload = g.payload
    if payload is None:
        return _challenge_response(chall, up)
    if chall.type in DOMAIN_CHALLENGES:
        return _domain_challenge(chall, authz, payload, up)
    token = response_token(payload)
    if chall.status != ChallengeStatus.PENDING:
        # Answering again is harmless: the first answer decided, and it is shown unchanged.
        return _challenge_response(chall, up)
    if authz.status != AuthorizationStatus.PENDING:
        raise problems.malformed(f"authorization {authz.id} is {authz.status}; its challenge can no longer be answered")
    # The policy's failed_validations_per_account: an account whose tokens failed too often in
    # the window has its answers refused (429) until the window ends; the challenge stays pending.
    rate_limiting.enforce_not_reached(policy.FAILED_VALIDATIONS_PER_ACCOUNT, g.account.id)
    try:
        answer.answer_challenge(session, state.authority, chall, g.account, token, actor=actor(g.account))
    except TNCAError as failure:
        problem = problems.problem_for_ca_error(failure, Phase.CHALLENGE)
        if problems.is_internal(problem):
            raise  # not the token's fault: the challenge stays pending; logged with an incident id
        if isinstance(failure, UnavailableError):
            raise problem from failure  # not judged yet: the challenge stays pending; Retry-After
        answer.reject_answer(chall, problem.to_json(top_level=False))
        rate_limiting.record(policy.FAILED_VALIDATIONS_PER_ACCOUNT, g.account.id)
    session.commit()
    return _challenge_response(chall, up)


def _domain_challenge(chall: Challenge, authz: Authorization, payload: dict[str, Any],
                      up: tuple[tuple[str, str], ...]) -> Response:
    """http-01 / dns-01 (RFC 8555 §8.3, §8.4): the response is an empty object; the server then
    validates, synchronously and under one deadline (ca/orders/domains.py). A failure is final:
    the challenge, its authorization and the order become invalid (so nothing is issued)."""
    state, session = current_state(), db_session()
    if payload != {}:
        raise problems.malformed(f"a {chall.type} response is the empty JSON object {{}} (RFC 8555 §8.3, §8.4)")
    if chall.status != ChallengeStatus.PENDING:
        return _challenge_response(chall, up)
    if authz.status != AuthorizationStatus.PENDING:
        raise problems.malformed(f"authorization {authz.id} is {authz.status}; its challenge can no longer be answered")
    try:
        answer.answer_domain_challenge(session, state.authority, chall, g.account, actor=actor(g.account))
    except DomainValidationError as failure:
        answer.reject_answer(chall, {"type": f"urn:ietf:params:acme:error:{failure.problem}", "detail": failure.detail,
                                     "status": 400 if failure.problem != "serverInternal" else 500})
    session.commit()
    return _challenge_response(chall, up)


def response_token(payload: dict[str, Any]) -> str:
    """The authority token of a tkauth-01 response object (RFC 8555 erratum 5729, RFC 9448 §4)."""
    present = {name: payload[name] for name in RESPONSE_TOKEN_FIELDS if name in payload}
    if not present:
        raise problems.malformed(
            "a tkauth-01 response carries the authority token in 'tkauth' (RFC 9448 §4) or 'atc'; neither was sent"
        )
    if len(present) > 1 and len({repr(v) for v in present.values()}) > 1:
        raise problems.malformed("'tkauth' and 'atc' carry different values; send the authority token once")
    token = next(iter(present.values()))
    if not isinstance(token, str) or not token:
        raise problems.malformed("the authority token must be a JWS compact serialization string")
    return token


def _challenge_response(chall: Challenge, links: tuple[tuple[str, str], ...]) -> Response:
    state = current_state()
    return acme_json(challenge_object(chall, state.urls, token_authority=state.token_authority_url), links=links)
