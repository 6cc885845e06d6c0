"""Authorizations (RFC 8555 §7.5) and the ``tkauth-01`` challenge (RFC 9447 §3, RFC 9448 §4–§6).

The challenge is answered with an authority token. RFC 9448 §4 names the response field
``tkauth``; deployed SHAKEN clients send ``atc``: both are accepted (docs/rfc-support.md).

Validation runs synchronously when the response arrives. A token check is not a network probe
that could succeed on retry, so the outcome is final (RFC 8555 erratum 5732 allows "invalid"
directly): a token that fails any check makes the challenge ``invalid`` with an ``error``
problem, the authorization ``invalid`` and the order ``invalid``, and the response is 200 with
that challenge object (RFC 8555 §7.5.1: the POST returns the challenge; its ``error`` says why).
A response that is not a usable answer at all (no token field) is refused with an HTTP error and
the challenge stays ``pending``.

What a valid token says is remembered on the authorization for finalize: its ``jti``, its ``ca``
flag (RFC 9448 §6 step 9 needs the CSR), its ``exp`` (RFC 9447 §7: the certificate must not
outlive it) and the delegation that covers the scope. The ``jti`` is recorded by
``ca.tokens.verification.record_use`` in the same transaction as the challenge result, and last, so only an
accepted token is spent.
"""

from __future__ import annotations

from typing import Any

from flask import Response, g
from sqlalchemy.orm import joinedload, selectinload

from acme_server.acme import lifecycle, problems
from acme_server.acme.accounts import actor
from acme_server.acme.objects import authorization_object, challenge_object
from acme_server.acme.orders import check_validity_within_authority, expire_order
from acme_server.acme.problems import AcmeProblem, Phase
from acme_server.acme.responses import acme_json
from acme_server.state import current_state, db_session
from ca.records import audit, delegations
from ca.tokens import verification
from ca.errors import TNCAError
from ca.records.models_acme import Account, Authorization, Challenge, ExternalAccountKey, Order
from ca.records.models_authority import Delegation
from ca.numbers.tnauthlist import TNScope

# RFC 9448 §4 names the field "tkauth"; SHAKEN deployments (ATIS-1000080 clients) send "atc".
RESPONSE_TOKEN_FIELDS = ("tkauth", "atc")


def _owned_authorization(authz: Authorization | None, what: str) -> Authorization:
    if authz is None:
        raise problems.malformed(f"no {what}", status=404)
    if authz.account_id != g.account.id:
        raise problems.unauthorized(f"{what} belongs to another account")
    if expire_order(authz.order, current_state().clock.now()):
        db_session().commit()
    return authz


def authorization(authz_id: str) -> Response:
    """POST-as-GET, or ``{"status": "deactivated"}`` (RFC 8555 §7.5.2)."""
    state, session = current_state(), db_session()
    authz = _owned_authorization(
        session.get(
            Authorization,
            authz_id,
            options=[
                joinedload(Authorization.order, innerjoin=True).selectinload(Order.authorizations),
                selectinload(Authorization.challenges),
            ],
        ),
        f"authorization {authz_id[:64]!r}",
    )
    payload = g.payload
    if payload is not None:
        if payload.get("status") != "deactivated":
            raise problems.malformed('the only change a client can make to an authorization is {"status": "deactivated"}')
        if authz.status not in ("pending", "valid"):
            raise problems.malformed(f"authorization {authz.id} is {authz.status}; only pending or valid ones can be deactivated")
        lifecycle.deactivate_authorization(authz)
        session.commit()
    return acme_json(authorization_object(authz, state.urls, token_authority=state.token_authority_url))


def challenge(challenge_id: str) -> Response:
    """POST-as-GET, or the challenge response carrying the authority token (RFC 8555 §7.5.1)."""
    state, session = current_state(), db_session()
    # One query for the challenge, its authorization and order; the row lock (PostgreSQL) keeps
    # two answers to the same challenge from both being validated.
    chall = session.get(
        Challenge,
        challenge_id,
        options=[
            joinedload(Challenge.authorization, innerjoin=True)
            .joinedload(Authorization.order, innerjoin=True)
            .selectinload(Order.authorizations)
        ],
        with_for_update={"of": Challenge},
    )
    authz = _owned_authorization(chall.authorization if chall is not None else None, f"challenge {challenge_id[:64]!r}")
    up = ((state.urls.authorization(authz.id), "up"),)  # RFC 8555 §7.5.1: Link rel="up"
    payload = g.payload
    if payload is None:
        return _challenge_response(chall, up)
    token = response_token(payload)
    if chall.status != "pending":
        # Answering again is harmless: the first answer decided, and it is shown unchanged.
        return _challenge_response(chall, up)
    if authz.status != "pending":
        raise problems.malformed(f"authorization {authz.id} is {authz.status}; its challenge can no longer be answered")

    account: Account = g.account
    try:
        verified, delegation = _validate(token, chall, authz, account)
    except (TNCAError, AcmeProblem) as failure:
        problem = failure if isinstance(failure, AcmeProblem) else problems.problem_for_ca_error(failure, Phase.CHALLENGE)
        if problems.is_internal(problem):
            raise  # not the token's fault: the challenge stays pending; logged with an incident id
        chall.status = "invalid"
        chall.error = problem.to_json(top_level=False)
        authz.status = "invalid"
        lifecycle.update_order_from_authorizations(authz.order)
        session.commit()
        return _challenge_response(chall, up)

    now = state.clock.now()
    chall.status = "valid"
    chall.validated = now
    authz.status = "valid"
    authz.token_jti = verified.jti
    authz.token_ca = verified.ca
    authz.token_expires = verified.expires
    authz.delegation_id = delegation.id
    # RFC 9447 §7 and RFC 9448 §6: the authorization lasts no longer than the token behind it.
    authz.expires = min(now + state.policy.acme.authorization_lifetime, verified.expires)
    lifecycle.update_order_from_authorizations(authz.order)
    audit.append(
        session,
        actor=actor(account),
        action="authorization.validate",
        subject_type="authorization",
        subject_id=authz.id,
        details={
            "order_id": authz.order_id,
            "challenge_id": chall.id,
            "scope": TNScope.from_der(authz.scope_der).describe(),
            "token_jti": verified.jti,
            "token_issuer": verified.issuer,
            "token_x5u": verified.x5u,
            "token_ca": verified.ca,
            "token_expires": verified.expires.isoformat(),
            "delegation_id": delegation.id,
        },
        clock=state.clock,
    )
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


def _validate(token: str, chall: Challenge, authz: Authorization, account: Account) -> tuple[verification.VerifiedToken, Delegation]:
    """RFC 9448 §6 steps 1–8 (ca.tokens.verification), then what this authority adds: the delegation."""
    state, session = current_state(), db_session()
    scope = TNScope.from_der(authz.scope_der)
    verified = verification.verify(
        token,
        identifier_scope=scope,
        account_jwk=account.jwk,
        trust=state.token_trust,
        clock=state.clock,
        fetcher=state.x5u_fetcher,
    )
    # A token of this authority's own token authority must have been minted here, under a
    # delegation that is still active; it names that delegation. (Held in a variable so that
    # record_use below finds the rows in the session instead of selecting them again.)
    minted = verification.check_minted_here(session, verified)
    delegation = delegations.find_covering(
        session, scope, clock=state.clock, delegation_id=minted.delegation_id if minted is not None else None
    )
    if verified.ca and not delegation.ca_allowed:
        raise problems.unauthorized(
            f"the authority token grants 'ca' (a delegate CA certificate) but delegation {delegation.id} does not "
            "allow sub-delegation (RFC 9060 §4)"
        )
    _check_account_binding(account, delegation)
    check_validity_within_authority(
        authz.order,
        token_expires=verified.expires,
        token_ca=verified.ca,
        delegation=delegation,
        policy=state.policy,
        now=state.clock.now(),
    )
    verification.record_use(session, verified, account.id, chall.id)
    return verified, delegation


def _check_account_binding(account: Account, delegation: Delegation) -> None:
    """An account created with an external account binding acts for that key's delegate only."""
    if account.eab_key_id is None:
        return
    session = db_session()
    eab_key = session.get(ExternalAccountKey, account.eab_key_id)
    if eab_key is None or eab_key.delegation_id is None:
        return
    bound = session.get(Delegation, eab_key.delegation_id)
    if bound is not None and bound.delegate != delegation.delegate:
        raise problems.unauthorized(
            f"account {account.id} is bound (external account key {eab_key.key_id}) to delegate {bound.delegate!r}; "
            f"the scope is delegated to {delegation.delegate!r}"
        )


def _challenge_response(chall: Challenge, links: tuple[tuple[str, str], ...]) -> Response:
    state = current_state()
    return acme_json(challenge_object(chall, state.urls, token_authority=state.token_authority_url), links=links)
