"""The ``tkauth-01`` answer (RFC 9447 §3, RFC 9448 §4–§6): an authority token that authorizes
one order's TN scope for one account.

:func:`answer_challenge` runs, in order: RFC 9448 §6 steps 1–8 (``ca.tokens``: signature chain,
claims, ``jti`` not seen, scope, account key fingerprint); then what this authority adds: a token
minted here was not minted for a key a keyChange has since retired (``ca.tokens.retired_keys``); the
active delegation that covers the scope (the one a token minted here names), its right to
sub-delegate when the token grants ``ca``, the account's external account binding, and the
order's validity within the token and the delegation (``ca.orders.validity``). Only then is the
``jti`` recorded (``ca.tokens.verification.record_use``), in the caller's transaction, so
only an accepted token is spent; the challenge, its authorization and its order change status
and an ``authorization.validate`` audit event is appended.

A token check is not a network probe that could succeed on retry, so a failure is final (RFC
8555 erratum 5732 allows "invalid" directly): the front end turns the typed error into a problem
document and records it with :func:`reject_answer`, which makes the challenge, the authorization
and the order ``invalid``. The one exception is ``UnavailableError``: the token authority's
``x5u`` chain could not be fetched for now (fetcher busy, no complete answer in time), which says
nothing about the token; the front end records nothing and the client may answer again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from ca import metrics
from ca.errors import DelegationError, TNCAError, UnavailableError
from ca.numbers.tnauthlist import TNScope
from ca.orders import domains
from ca.orders.authority import Authority
from ca.orders.status import update_order_from_authorizations
from ca.records.statuses import AuthorizationStatus, ChallengeStatus
from ca.orders.validity import Requested, check_within_authority
from ca.records import audit, delegations, external_accounts
from ca.records.models_acme import Account, Challenge
from ca.tokens import verification
from ca.tokens import retired_keys

AUDIT_ACTION_VALIDATE = "authorization.validate"


def answer_challenge(session: Session, authority: Authority, chall: Challenge, account: Account, token: str, *,
                     actor: str) -> None:
    """Validate ``token`` as the answer to ``chall`` (module docstring) and record the outcome:
    the challenge and its authorization ``valid``, what the token said kept on the authorization
    for finalize, the order ``ready`` when nothing else is pending. Raises a ``ca.errors`` error,
    having recorded nothing, when the token does not authorize the order; the caller commits.
    Each refusal counts in ``tnca_token_validation_failures_total`` by :func:`failure_reason`."""
    try:
        _answer(session, authority, chall, account, token, actor=actor)
    except TNCAError as error:
        metrics.token_validation_failed(failure_reason(error))
        raise


def failure_reason(error: TNCAError) -> str:
    """The metric's reason for a refused answer: the claim or field at fault (``exp``,
    ``atc.fingerprint``, ``delegation``, …), ``x5u_unavailable`` when the chain could not be
    fetched for now, else the error's class."""
    if isinstance(error, UnavailableError):
        return "x5u_unavailable"
    return error.field or type(error).__name__


def _answer(session: Session, authority: Authority, chall: Challenge, account: Account, token: str, *,
            actor: str) -> None:
    authz = chall.authorization
    scope = TNScope.from_der(authz.scope_der)
    clock = authority.clock
    verified = verification.verify(
        token,
        identifier_scope=scope,
        account_jwk=account.jwk,
        trust=authority.token_trust(),
        clock=clock,
        fetcher=authority.x5u_fetcher(),
    )
    # A token of this authority's own token authority must have been minted here, under a
    # delegation that is still active; it names that delegation. (Held in a variable so that
    # record_use below finds the rows in the session instead of selecting them again.)
    minted = verification.check_minted_here(session, verified)
    if minted is not None:
        # RFC 8555 §7.3.5: a keyChange retired the key this token was minted for.
        retired_keys.check_not_retired(session, minted)
    delegation = delegations.find_covering(
        session, scope, clock=clock, delegation_id=minted.delegation_id if minted is not None else None
    )
    if verified.ca and not delegation.ca_allowed:
        raise DelegationError(
            f"the authority token grants 'ca' (a delegate CA certificate) but delegation {delegation.id} does not "
            "allow sub-delegation (RFC 9060 §4)",
            field="delegation",
        )
    # An account made with an external account binding acts for that key's delegate only.
    external_accounts.check_may_act_for(session, account, delegation)
    now = clock.now()
    check_within_authority(
        Requested.of_order(authz.order, now=now, policy=authority.policy),
        token_expires=verified.expires,
        token_ca=verified.ca,
        delegation=delegation,
        policy=authority.policy,
    )
    verification.record_use(session, verified, account.id, chall.id)

    chall.status = ChallengeStatus.VALID
    chall.validated = now
    authz.status = AuthorizationStatus.VALID
    authz.token_jti = verified.jti
    authz.token_ca = verified.ca
    authz.token_expires = verified.expires
    authz.delegation_id = delegation.id
    # RFC 9447 §7 and RFC 9448 §6: the authorization lasts no longer than the token behind it.
    authz.expires = min(now + authority.policy.acme.authorization_lifetime, verified.expires)
    update_order_from_authorizations(authz.order)
    audit.append(
        session,
        actor=actor,
        action=AUDIT_ACTION_VALIDATE,
        subject_type="authorization",
        subject_id=authz.id,
        details={
            "order_id": authz.order_id,
            "challenge_id": chall.id,
            "scope": scope.describe(),
            "token_jti": verified.jti,
            "token_issuer": verified.issuer,
            "token_x5u": verified.x5u,
            "token_ca": verified.ca,
            "token_expires": verified.expires.isoformat(),
            "delegation_id": delegation.id,
        },
        clock=clock,
    )


def answer_domain_challenge(session: Session, authority: Authority, chall: Challenge, account: Account, *,
                            actor: str) -> None:
    """Validate the order's domain with ``chall`` (http-01 or dns-01, RFC 8555 §8.3/§8.4) against
    the domain itself, now, under one deadline (ca/orders/domains.py); on success the challenge
    and authorization are valid and the order ``ready`` once its TNAuthList authorization is too.
    Raises DomainValidationError, having recorded nothing, when the domain does not answer right."""
    authz = chall.authorization
    key_auth = domains.key_authorization(chall.token, account.jwk_thumbprint)
    authority.domain_validator().validate(chall.type, authz.identifier_value, chall.token, key_auth)
    now = authority.clock.now()
    chall.status = ChallengeStatus.VALID
    chall.validated = now
    authz.status = AuthorizationStatus.VALID
    update_order_from_authorizations(authz.order)
    audit.append(
        session,
        actor=actor,
        action=AUDIT_ACTION_VALIDATE,
        subject_type="authorization",
        subject_id=authz.id,
        details={"order_id": authz.order_id, "challenge_id": chall.id, "challenge_type": chall.type,
                 "domain": authz.identifier_value},
        clock=authority.clock,
    )


def reject_answer(chall: Challenge, error: dict[str, Any]) -> None:
    """A token that failed: the challenge, its authorization and its order become ``invalid``,
    the challenge carrying ``error`` (a problem document, ``ca.orders.status.problem``)."""
    chall.status = ChallengeStatus.INVALID
    chall.error = error
    authz = chall.authorization
    authz.status = AuthorizationStatus.INVALID
    update_order_from_authorizations(authz.order)
