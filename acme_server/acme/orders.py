"""Orders (RFC 8555 §7.4): newOrder for TNAuthList identifiers, order polling and finalize.

An order carries exactly one ``TNAuthList`` identifier (RFC 9448 §3) and gets one authorization
with one ``tkauth-01`` challenge. Identifier values are accepted in base64url (RFC 9448 §3) and in
padded standard base64 (SHAKEN practice) and compared as decoded DER, never as strings.

Requested validity (``notBefore``/``notAfter``) is honoured exactly or refused (RFC 8555 §7.4:
the server MUST NOT issue a certificate with contents other than those requested): newOrder
checks it against the policy; the challenge checks it against the authority token's ``exp`` and
the delegation, which are only known then (``check_validity_within_authority``).
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import Response, g
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from acme_server.acme import lifecycle, problems, star
from acme_server.acme.accounts import actor
from acme_server.acme.encoding import EncodingError, b64url_decode, parse_rfc3339, rfc3339
from acme_server.acme.objects import TKAUTH_CHALLENGE, TNAUTHLIST_IDENTIFIER, order_object
from acme_server.acme.problems import AcmeProblem, Phase
from acme_server.acme.renewal_info import parse_cert_id
from acme_server.acme.responses import acme_json
from acme_server.state import current_state, db_session
from ca.issuing import issuance
from ca.lifecycle import renewal, renewal_info
from ca.records import delegations
from ca.errors import IssuanceError, NotFoundError, ScopeError, TNCAError
from ca.policy import Policy, format_duration
from ca.issuing.profiles import DELEGATE_CA, END_ENTITY, Profile
from ca.records.models_acme import Account, Authorization, Challenge, ORDER_STATUSES_CLAIMING_REPLACEMENT, Order
from ca.records.models_authority import Certificate, Delegation
from ca.numbers.tnauthlist import TNScope
from ca.x509util import MALFORMED_X509_ERRORS, with_names_decoded

# RFC 8555 §7.4: clients poll a "processing" order after Retry-After seconds. Issuance is
# synchronous and takes well under a second without CT, a few seconds with it.
PROCESSING_RETRY_AFTER_SECONDS = 1
# RFC 8555 §8: challenge tokens carry at least 128 bits of entropy.
CHALLENGE_TOKEN_BYTES = 16
# A finalize that never completed (the process died between "processing" and "valid") is given
# up this long after the order's expiry; the certificate and the order's "valid" are written in
# one transaction, so nothing can have been issued for it.
PROCESSING_GRACE = dt.timedelta(minutes=10)


# --------------------------------------------------------------------------------------------
# newOrder (RFC 8555 §7.4, RFC 9448 §3)
# --------------------------------------------------------------------------------------------


def new_order() -> Response:
    state, session = current_state(), db_session()
    account: Account = g.account
    payload: dict[str, Any] = g.payload
    now = state.clock.now()

    identifier, scope = _parse_identifiers(payload.get("identifiers"))
    issuer_scope = state.issuing_ca().scope
    if issuer_scope is not None and not issuer_scope.contains(scope):
        raise problems.compound(
            "the identifier was rejected",
            [
                problems.rejected_identifier(
                    f"{scope.describe()} is outside this authority's TNAuthList: "
                    f"{issuer_scope.difference_of(scope).describe()} is not covered",
                    identifier=identifier,
                )
            ],
        )
    issuer_not_after = state.issuing_ca().certificate.not_valid_after_utc
    # RFC 8739 §3.1.1: an "auto-renewal" object makes this a STAR order.
    auto_renewal = star.parse_auto_renewal(payload, now=now, policy=state.policy, issuer_not_after=issuer_not_after)
    # A scope whose delegations were all revoked or have ended is refused here, naming them
    # (DelegationError → unauthorized); one an active delegation covers, or none yet, proceeds.
    delegations.check_not_withdrawn(session, scope, clock=state.clock)
    not_before = _optional_time(payload, "notBefore")
    not_after = _optional_time(payload, "notAfter")
    check_requested_validity(not_before, not_after, now=now, policy=state.policy, issuer_not_after=issuer_not_after)
    replaced = _replaced_certificate(payload, account, scope, now=now)

    order = Order(
        account_id=account.id,
        status="pending",
        expires=now + state.policy.acme.order_lifetime,
        identifiers=[identifier],
        scope_der=scope.to_der(),
        not_before=not_before,
        not_after=not_after,
        auto_renewal=auto_renewal.to_json() if auto_renewal is not None else None,
        replaces_serial=replaced.serial if replaced is not None else None,
        replaces=payload["replaces"] if replaced is not None else None,
        created_at=now,
    )
    authz = Authorization(
        order=order,
        account_id=account.id,
        identifier_type=TNAUTHLIST_IDENTIFIER,
        identifier_value=identifier["value"],
        scope_der=order.scope_der,
        status="pending",
        expires=min(now + state.policy.acme.authorization_lifetime, order.expires),
        created_at=now,
    )
    authz.challenges = [
        Challenge(type=TKAUTH_CHALLENGE, status="pending", token=secrets.token_urlsafe(CHALLENGE_TOKEN_BYTES))
    ]
    session.add(order)
    try:
        session.commit()
    except IntegrityError:
        # Only the replacement index can refuse a new order: another newOrder replacing the
        # same certificate committed between our check and our commit.
        session.rollback()
        if replaced is None:
            raise
        _check_not_replaced(replaced, now)
        raise
    return acme_json(order_object(order, state.urls), 201, location=state.urls.order(order.id))


def _replaced_certificate(
    payload: dict[str, Any], account: Account, scope: TNScope, *, now: dt.datetime
) -> Certificate | None:
    """The certificate named by newOrder's ``replaces`` (RFC 9773 §5), after §5's checks.

    The certificate must be one this authority issued to the same account, share a number with
    the order, and not already be replaced by another order that can still issue (409
    ``alreadyReplaced``). The field is optional; None without it.
    """
    if "replaces" not in payload:
        return None
    value = payload["replaces"]
    if not isinstance(value, str):
        raise problems.malformed('"replaces" is a string: the RFC 9773 §4.1 identifier of the certificate being replaced')
    try:
        key_identifier, serial = parse_cert_id(value)
    except AcmeProblem as exc:
        raise problems.malformed(f'"replaces" is not a certificate identifier: {exc.detail}') from exc
    try:
        replaced = renewal_info.issued_certificate(db_session(), key_identifier, serial)
    except NotFoundError as exc:
        raise problems.malformed(f'"replaces" names no certificate: {exc.detail} (RFC 9773 §5)') from exc
    if replaced.account_id != account.id:
        raise problems.unauthorized(
            f'"replaces" names certificate {replaced.serial}, which was not issued to this account (RFC 9773 §5)'
        )
    if not TNScope.from_der(replaced.scope_der).overlaps(scope):
        raise problems.malformed(
            f'"replaces" names certificate {replaced.serial}, which shares no telephone number with the order\'s '
            f"{scope.describe()} (RFC 9773 §5)"
        )
    _check_not_replaced(replaced, now)
    return replaced


def _check_not_replaced(replaced: Certificate, now: dt.datetime) -> None:
    """409 alreadyReplaced if an order that can still issue replaces ``replaced`` (RFC 9773 §5).

    An expired order still stored as pending or ready is marked invalid first (its change is
    committed with the new order), so it no longer holds the replacement.
    """
    session, urls = db_session(), current_state().urls
    claiming = session.scalars(
        select(Order).where(
            Order.replaces_serial == replaced.serial, Order.status.in_(ORDER_STATUSES_CLAIMING_REPLACEMENT)
        )
    ).all()
    for other in claiming:
        expire_order(other, now)
        if other.status in ORDER_STATUSES_CLAIMING_REPLACEMENT:
            raise problems.already_replaced(
                f"certificate {replaced.serial} is already replaced by order {urls.order(other.id)} "
                f"({other.status}); a certificate is replaced once (RFC 9773 §5)",
                location=urls.order(other.id),
            )


def _parse_identifiers(value: Any) -> tuple[dict[str, str], TNScope]:
    """The one TNAuthList identifier of the order and its scope; subproblems name each bad one."""
    if not isinstance(value, list) or not value:
        raise problems.malformed("'identifiers' must be a non-empty array of identifier objects")
    subproblems: list[AcmeProblem] = []
    accepted: list[tuple[dict[str, str], TNScope]] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str) or not isinstance(item.get("value"), str):
            raise problems.malformed(f"'identifiers[{index}]' must be an object with string 'type' and 'value'")
        identifier = {"type": item["type"], "value": item["value"]}
        if identifier["type"] != TNAUTHLIST_IDENTIFIER:
            subproblems.append(
                problems.unsupported_identifier(
                    f"identifier type {identifier['type'][:40]!r} is not supported; this authority issues for "
                    f"{TNAUTHLIST_IDENTIFIER!r} identifiers only (RFC 9448 §3)",
                    identifier=identifier,
                )
            )
            continue
        try:
            scope = TNScope.from_identifier_value(identifier["value"])
        except ScopeError as exc:
            problem = problems.problem_for_ca_error(exc, Phase.NEW_ORDER)
            problem.detail = f"TNAuthList identifier value is not a DER TNAuthList: {exc.detail}"
            problem.identifier = identifier
            subproblems.append(problem)
            continue
        accepted.append((identifier, scope))
    if subproblems:
        rejected = len(subproblems)
        raise problems.compound(f"{rejected} of {len(value)} identifier(s) were rejected", subproblems)
    if len(accepted) > 1:
        # One TNAuthList identifier per order (docs/rfc-support.md): the certificate carries one
        # TNAuthList, built from the one identifier, so merging is never needed.
        raise problems.compound(
            "an order carries exactly one TNAuthList identifier",
            [
                problems.rejected_identifier(
                    "put all numbers into a single TNAuthList identifier; only one is accepted per order",
                    identifier=identifier,
                )
                for identifier, _ in accepted[1:]
            ],
        )
    return accepted[0]


def _optional_time(payload: dict[str, Any], name: str) -> dt.datetime | None:
    if payload.get(name) is None:
        return None
    try:
        moment = parse_rfc3339(payload[name], field=name)
    except EncodingError as exc:
        raise problems.malformed(str(exc)) from exc
    # X.509 times have whole seconds (RFC 5280 §4.1.2.5); what the order shows is what is issued.
    return moment.replace(microsecond=0)


def check_requested_validity(
    not_before: dt.datetime | None,
    not_after: dt.datetime | None,
    *,
    now: dt.datetime,
    policy: Policy,
    issuer_not_after: dt.datetime,
) -> None:
    """RFC 8555 §7.4: refuse at newOrder what the policy can never honour."""
    lifetimes = policy.lifetimes
    earliest_start = now - lifetimes.backdate
    if not_before is not None and not_before < earliest_start:
        raise problems.malformed(
            f"notBefore {rfc3339(not_before)} is in the past; certificates are not backdated by more than "
            f"{format_duration(lifetimes.backdate)}"
        )
    if not_after is None:
        return
    start = not_before if not_before is not None else earliest_start
    if not_after <= max(start, now):
        raise problems.malformed(f"notAfter {rfc3339(not_after)} must be later than notBefore and than now")
    longest = max(lifetimes.end_entity, lifetimes.delegate_ca)
    if not_after - start > longest:
        raise problems.malformed(
            f"requested validity {format_duration(not_after - start)} exceeds the policy maximum "
            f"({format_duration(lifetimes.end_entity)} for end-entity, {format_duration(lifetimes.delegate_ca)} "
            "for delegate CA certificates)"
        )
    if not_after - start < lifetimes.minimum:
        raise problems.malformed(
            f"requested validity {format_duration(not_after - start)} is below the policy minimum of "
            f"{format_duration(lifetimes.minimum)}"
        )
    if not_after > issuer_not_after:
        raise problems.malformed(
            f"notAfter {rfc3339(not_after)} is after the issuing CA's own notAfter {rfc3339(issuer_not_after)}"
        )


def check_validity_within_authority(
    order: Order,
    *,
    token_expires: dt.datetime,
    token_ca: bool,
    delegation: Delegation,
    policy: Policy,
    now: dt.datetime,
) -> None:
    """At the challenge: the order's requested notAfter fits the token, the delegation and the kind.

    RFC 9447 §7: a certificate SHOULD NOT expire later than the authority token; with no
    requested notAfter the certificate is simply cut at the token's ``exp`` at finalize. A STAR
    order's auto-renewal must fit the same bounds (``ca.lifecycle.renewal.check_within_authority``).
    """
    auto_renewal = renewal.auto_renewal_of(order)
    if auto_renewal is not None:
        renewal.check_within_authority(auto_renewal, token_expires=token_expires, token_ca=token_ca,
                                       delegation=delegation, policy=policy)
        return
    if order.not_after is None:
        return
    if order.not_after > token_expires:
        raise problems.unauthorized(
            f"the order asks for notAfter {rfc3339(order.not_after)}, after the authority token's 'exp' "
            f"{rfc3339(token_expires)}; a certificate may not outlive its token (RFC 9447 §7)"
        )
    if delegation.not_after is not None and order.not_after > delegation.not_after:
        raise problems.unauthorized(
            f"the order asks for notAfter {rfc3339(order.not_after)}, after delegation {delegation.id} ends "
            f"({rfc3339(delegation.not_after)})"
        )
    start = order.not_before if order.not_before is not None else now - policy.lifetimes.backdate
    profile = Profile.for_name(DELEGATE_CA if token_ca else END_ENTITY, policy)
    longest = min(profile.max_lifetime, dt.timedelta(seconds=delegation.max_lifetime_seconds))
    if order.not_after - start > longest:
        raise problems.unauthorized(
            f"the order asks for {format_duration(order.not_after - start)} of validity; a {profile.name} "
            f"certificate under delegation {delegation.id} may be valid for at most {format_duration(longest)}"
        )


# --------------------------------------------------------------------------------------------
# The order resource (RFC 8555 §7.1.3) and finalize (RFC 8555 §7.4)
# --------------------------------------------------------------------------------------------


def owned_order(order_id: str) -> Order:
    """The order, if the signing account owns it; expiry applied (RFC 8555 §7.1.6)."""
    session = db_session()
    order = session.get(Order, order_id, options=[selectinload(Order.authorizations)])
    if order is None:
        raise problems.malformed(f"no order {order_id[:64]!r}", status=404)
    if order.account_id != g.account.id:
        raise problems.unauthorized(f"order {order.id} belongs to another account")
    if expire_order(order, current_state().clock.now()):
        session.commit()
    return order


def expire_order(order: Order, now: dt.datetime) -> bool:
    changed = lifecycle.apply_expiry(order, now)
    if order.status == "processing" and order.expires + PROCESSING_GRACE <= now:
        lifecycle.invalidate_order(order, problems.server_internal("issuance did not complete; create a new order"))
        changed = True
    return changed


def order(order_id: str) -> Response:
    """POST-as-GET, or ``{"status": "canceled"}`` for a STAR order (RFC 8739 §3.1.2)."""
    state = current_state()
    acme_order = owned_order(order_id)
    if g.payload is not None:
        acme_order = star.cancel_by_client(acme_order, g.payload)
    retry_after = PROCESSING_RETRY_AFTER_SECONDS if acme_order.status == "processing" else None
    return acme_json(order_object(acme_order, state.urls), location=state.urls.order(acme_order.id), retry_after=retry_after)


def finalize_order(order_id: str) -> Response:
    """RFC 8555 §7.4, guard clauses in order: order state → CSR → token's ``ca`` → issue."""
    state, session = current_state(), db_session()
    account: Account = g.account
    acme_order = owned_order(order_id)
    if acme_order.status != "ready":
        raise problems.order_not_ready(
            f"order {acme_order.id} is {acme_order.status}; only a 'ready' order (every authorization valid) "
            "can be finalized"
        )
    csr = _decode_csr(g.payload.get("csr"))
    authz = acme_order.authorizations[0]
    csr_ca = _csr_requests_ca(csr)
    if csr_ca != bool(authz.token_ca):
        # RFC 9448 §6 step 9: the token's "ca" must match the CSR's basicConstraints cA.
        raise problems.bad_csr(
            "CSR asks for a delegate CA certificate (basicConstraints cA=TRUE) but the authority token's 'ca' is false"
            if csr_ca
            else "the authority token's 'ca' is true, so the CSR must ask for a CA certificate (basicConstraints cA=TRUE)"
        )

    # RFC 8555 §7.1.6: "processing" while the certificate is made. The conditional update lets
    # exactly one of two concurrent finalize requests through.
    claimed = session.execute(
        update(Order)
        .where(Order.id == acme_order.id, Order.status == "ready")
        .values(status="processing")
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        session.rollback()
        raise problems.order_not_ready(f"order {acme_order.id} is already being finalized")
    session.commit()
    # The row says "processing" already; keep the object in step without another UPDATE.
    set_committed_value(acme_order, "status", "processing")

    scope = TNScope.from_der(acme_order.scope_der)
    # RFC 9447 §7: never later than the token. A requested notAfter was checked against the
    # token at the challenge; without one, the token's exp is the cap.
    not_before = acme_order.not_before
    not_after = acme_order.not_after if acme_order.not_after is not None else authz.token_expires
    auto_renewal = renewal.auto_renewal_of(acme_order)
    if auto_renewal is not None:
        # RFC 8739 §3.5: the first certificate of a STAR order; the worker issues the rest.
        first = renewal.first_window(auto_renewal, now=state.clock.now(), end=auto_renewal.end(authz.token_expires),
                                     minimum=state.policy.lifetimes.minimum)
        not_before, not_after = first.not_before, first.not_after
    request = issuance.IssuanceRequest(
        csr=csr,
        scope=scope,
        kind=DELEGATE_CA if csr_ca else END_ENTITY,
        delegation_id=authz.delegation_id,
        constraints=None,  # the delegation's claim constraints (ca/issuing/issuance.py)
        not_before=not_before,
        not_after=not_after,
        account_id=account.id,
        order_id=acme_order.id,
        actor=actor(account),
    )
    try:
        issued = issuance.issue(
            session,
            request,
            issuer=state.issuing_ca(),
            policy=state.policy,
            clock=state.clock,
            transparency=state.transparency(),
            # RFC 6962 §3.1 via ca/issuing/issuance.py: the precertificate row is committed before any log sees it.
            precertificate_recorded=session.commit,
        )
        if acme_order.not_after is not None and issued.certificate.not_valid_after_utc != acme_order.not_after:
            # Checked at newOrder and at the challenge; reaching this is a bug, and issuing
            # something other than what was ordered is not an option (RFC 8555 §7.4).
            raise IssuanceError(
                f"issuance produced notAfter {issued.certificate.not_valid_after_utc.isoformat()} instead of the "
                f"ordered {acme_order.not_after.isoformat()}"
            )
    except TNCAError as error:
        session.rollback()
        problem = problems.problem_for_ca_error(error, Phase.FINALIZE)
        if problem.code == "badCSR":
            # RFC 8555 §7.4: after badCSR the order stays "ready" so the client can send a better CSR.
            acme_order.status = "ready"
        else:
            lifecycle.invalidate_order(acme_order, problem)
        session.commit()
        if problems.is_internal(problem):
            raise  # logged with an incident id by the app's error handler
        raise problem from error
    acme_order.status = "valid"
    if auto_renewal is not None:
        # RFC 8739 §2.2: renewals reuse this CSR. The order now lasts until its auto-renewal
        # ends; the worker (ca/lifecycle/renewal.py) picks it up at next_renewal_at.
        acme_order.csr_der = csr.public_bytes(serialization.Encoding.DER)
        acme_order.expires = auto_renewal.end(authz.token_expires)
        acme_order.next_renewal_at = renewal.schedule_after(
            acme_order, issued.certificate.not_valid_after_utc, now=state.clock.now(), policy=state.policy
        )
    session.commit()
    return acme_json(
        order_object(acme_order, state.urls, certificate_serial=issued.serial), location=state.urls.order(acme_order.id)
    )


def _decode_csr(value: Any) -> x509.CertificateSigningRequest:
    if value is None:
        raise problems.malformed("finalize payload lacks 'csr' (base64url DER PKCS#10, RFC 8555 §7.4)")
    try:
        der = b64url_decode(value, field="csr")
    except EncodingError as exc:
        raise problems.bad_csr(str(exc)) from exc
    try:
        return with_names_decoded(x509.load_der_x509_csr(der))
    except MALFORMED_X509_ERRORS as exc:
        raise problems.bad_csr(f"'csr' is not a DER PKCS#10 certification request ({exc})") from exc


def _csr_requests_ca(csr: x509.CertificateSigningRequest) -> bool:
    """The cA boolean of the CSR's basicConstraints request; absent means False (RFC 5280 §4.2.1.9)."""
    try:
        extension = csr.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    except MALFORMED_X509_ERRORS as exc:
        raise problems.bad_csr(f"CSR extensions cannot be parsed: {exc}") from exc
    return extension.value.ca
