"""Orders (RFC 8555 §7.4): newOrder for TNAuthList identifiers, order polling and finalize.

An order carries exactly one ``TNAuthList`` identifier (RFC 9448 §3) and gets one authorization
with one ``tkauth-01`` challenge. Identifier values are accepted in base64url (RFC 9448 §3) and in
padded standard base64 (SHAKEN practice) and compared as decoded DER, never as strings.

The handlers parse the JSON and present the result; the order's life is ``ca/orders/``: newOrder's
checks (``ca.orders.placing``), the validity rules of every order, ordinary or STAR
(``ca.orders.validity``), and finalize with the one function that issues for an order
(``ca.orders.finalize``). Requested validity (``notBefore``/``notAfter``) is honoured exactly or
refused (RFC 8555 §7.4: the server MUST NOT issue a certificate with contents other than those
requested).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509
from flask import Response, g

from acme_server.acme import problems, rate_limiting, star
from acme_server.client_address import client_address
from ca.encoding import EncodingError, b64url_decode, parse_rfc3339
from acme_server.acme.objects import order_object
from acme_server.acme.owned import actor, owned_order
from acme_server.acme.problems import AcmeProblem, Phase
from acme_server.acme.renewal_info import parse_cert_id
from acme_server.acme.responses import acme_json
from acme_server.observability import note
from acme_server.state import current_state, db_session
from ca import policy
from ca.errors import AlreadyReplacedError, ScopeError, TNCAError
from ca.numbers.tnauthlist import TNScope
from ca.orders import finalize as finalizing
from ca.orders import placing
from ca.orders.domains import DNS_IDENTIFIER, DomainError, check_domain
from ca.orders.placing import TNAUTHLIST_IDENTIFIER, OrderRequest, Replaces
from ca.records import rate_limits
from ca.records.models_acme import Account
from ca.records.statuses import OrderStatus
from ca.x509util import MALFORMED_X509_ERRORS, with_names_decoded

# RFC 8555 §7.4: clients poll a "processing" order after Retry-After seconds. Issuance is
# synchronous and takes well under a second without CT, a few seconds with it.
PROCESSING_RETRY_AFTER_SECONDS = 1
# One TNAuthList identifier and at most one dns identifier (docs/identity.md); more is malformed
# before any is parsed.
MAX_IDENTIFIERS = 16


# --------------------------------------------------------------------------------------------
# newOrder (RFC 8555 §7.4, RFC 9448 §3)
# --------------------------------------------------------------------------------------------


def new_order() -> Response:
    state, session = current_state(), db_session()
    payload: dict[str, Any] = g.payload
    identifier, scope, domain = _parse_identifiers(payload.get("identifiers"))
    request = OrderRequest(
        identifier=identifier,
        scope=scope,
        domain=domain,
        # RFC 8739 §3.1.1: an "auto-renewal" object makes this a STAR order.
        auto_renewal=star.parse_auto_renewal(payload, policy=state.policy),
        not_before=_optional_time(payload, "notBefore"),
        not_after=_optional_time(payload, "notAfter"),
        replaces=_parse_replaces(payload),
    )
    try:
        placing.check_scope_size(scope)  # before any statement, the rate limits' included
    except ScopeError as error:
        raise problems.compound("the identifier was rejected", [_identifier_problem(error, identifier)]) from error
    # The policy's rate limits, counted with the order (ca/records/rate_limits.py).
    account: Account = g.account
    rate_limiting.enforce(policy.NEW_ORDERS_PER_ACCOUNT, account.id)
    rate_limiting.enforce(policy.NEW_ORDERS_PER_ADDRESS, rate_limits.address_key(client_address()))
    delegate = placing.order_delegate(session, account, scope, clock=state.clock)
    if delegate is not None:
        rate_limiting.enforce(policy.NEW_ORDERS_PER_DELEGATE, delegate)
    try:
        order = placing.place_order(session, state.authority, g.account, request)
    except ScopeError as error:
        # The identifier's scope is refused: a subproblem names the identifier (RFC 8555 §6.7.1).
        raise problems.compound("the identifier was rejected", [_identifier_problem(error, identifier)]) from error
    except AlreadyReplacedError as error:
        raise problems.already_replaced(
            f"certificate {error.serial} is already replaced by order {state.urls.order(error.order_id)} "
            f"({error.order_status}); a certificate is replaced once (RFC 9773 §5)",
            location=state.urls.order(error.order_id),
        ) from error
    except TNCAError as error:
        raise problems.problem_for_ca_error(error, Phase.NEW_ORDER) from error
    session.commit()
    note(order=order.id)
    return acme_json(order_object(order, state.urls), 201, location=state.urls.order(order.id))


def _parse_identifiers(value: Any) -> tuple[dict[str, str], TNScope, str | None]:
    """The one TNAuthList identifier of the order, its scope, and the domain of at most one
    ``dns`` identifier beside it (ca/orders/domains.py); subproblems name each bad one."""
    if not isinstance(value, list) or not value:
        raise problems.malformed("'identifiers' must be a non-empty array of identifier objects")
    if len(value) > MAX_IDENTIFIERS:
        raise problems.malformed(f"'identifiers' has {len(value)} entries; an order carries one TNAuthList identifier "
                                 f"and at most one dns identifier")
    subproblems: list[AcmeProblem] = []
    accepted: list[tuple[dict[str, str], TNScope]] = []
    domains: list[tuple[dict[str, str], str]] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("type"), str) or not isinstance(item.get("value"), str):
            raise problems.malformed(f"'identifiers[{index}]' must be an object with string 'type' and 'value'")
        identifier = {"type": item["type"], "value": item["value"]}
        if identifier["type"] == DNS_IDENTIFIER:
            try:
                domains.append((identifier, check_domain(identifier["value"])))
            except DomainError as exc:
                subproblems.append(problems.rejected_identifier(exc.detail, identifier=identifier))
            continue
        if identifier["type"] != TNAUTHLIST_IDENTIFIER:
            subproblems.append(
                problems.unsupported_identifier(
                    f"identifier type {identifier['type'][:40]!r} is not supported; this authority issues for "
                    f"{TNAUTHLIST_IDENTIFIER!r} identifiers (RFC 9448 §3), with at most one 'dns' identifier beside one",
                    identifier=identifier,
                )
            )
            continue
        try:
            scope = TNScope.from_identifier_value(identifier["value"])
        except ScopeError as exc:
            subproblems.append(_identifier_problem(exc, identifier,
                                                   f"TNAuthList identifier value is not a DER TNAuthList: {exc.detail}"))
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
    if not accepted:
        raise problems.compound("an order carries exactly one TNAuthList identifier; a dns identifier only beside it",
                                [problems.rejected_identifier("a domain is bound to telephone numbers: add the "
                                                              "TNAuthList identifier", identifier=domains[0][0])])
    if len(domains) > 1:
        # tn-domain-binding: the certificate carries exactly one dNSName.
        raise problems.compound(
            "an order carries at most one dns identifier (one dNSName per certificate)",
            [problems.rejected_identifier("only one domain is bound per certificate", identifier=identifier)
             for identifier, _ in domains[1:]],
        )
    identifier, scope = accepted[0]
    return identifier, scope, domains[0][1] if domains else None


def _identifier_problem(error: ScopeError, identifier: dict[str, str], detail: str | None = None) -> AcmeProblem:
    """The subproblem (RFC 8555 §6.7.1) for a scope error about ``identifier``."""
    problem = problems.problem_for_ca_error(error, Phase.NEW_ORDER)
    if detail is not None:
        problem.detail = detail
    problem.identifier = identifier
    return problem


def _optional_time(payload: dict[str, Any], name: str) -> dt.datetime | None:
    if payload.get(name) is None:
        return None
    try:
        moment = parse_rfc3339(payload[name], field=name)
    except EncodingError as exc:
        raise problems.malformed(str(exc)) from exc
    # X.509 times have whole seconds (RFC 5280 §4.1.2.5); what the order shows is what is issued.
    return moment.replace(microsecond=0)


def _parse_replaces(payload: dict[str, Any]) -> Replaces | None:
    """newOrder's optional ``replaces``: an RFC 9773 §4.1 certificate identifier (§5)."""
    if "replaces" not in payload:
        return None
    value = payload["replaces"]
    if not isinstance(value, str):
        raise problems.malformed('"replaces" is a string: the RFC 9773 §4.1 identifier of the certificate being replaced')
    try:
        key_identifier, serial = parse_cert_id(value)
    except AcmeProblem as exc:
        raise problems.malformed(f'"replaces" is not a certificate identifier: {exc.detail}') from exc
    return Replaces(value=value, key_identifier=key_identifier, serial=serial)


# --------------------------------------------------------------------------------------------
# The order resource (RFC 8555 §7.1.3) and finalize (RFC 8555 §7.4)
# --------------------------------------------------------------------------------------------


def order(order_id: str) -> Response:
    """POST-as-GET, or ``{"status": "canceled"}`` for a STAR order (RFC 8739 §3.1.2)."""
    state, session = current_state(), db_session()
    acme_order = owned_order(session, g.account, order_id, now=state.clock.now())
    if g.payload is not None:
        acme_order = star.cancel_by_client(acme_order, g.payload)
    retry_after = PROCESSING_RETRY_AFTER_SECONDS if acme_order.status == OrderStatus.PROCESSING else None
    return acme_json(order_object(acme_order, state.urls), location=state.urls.order(acme_order.id), retry_after=retry_after)


def finalize_order(order_id: str) -> Response:
    """RFC 8555 §7.4, guard clauses in order: order state → CSR → ``ca.orders.finalize``."""
    state, session = current_state(), db_session()
    acme_order = owned_order(session, g.account, order_id, now=state.clock.now())
    finalizing.check_ready(acme_order)
    csr = _decode_csr(g.payload.get("csr"))
    try:
        issued = finalizing.finalize(session, state.authority, acme_order, csr, actor=actor(g.account),
                                     account_key_spki=g.account_key.spki_der(),
                                     csr_key_may_equal_account_key=state.compat.csr_key_may_equal_account_key)
    except TNCAError as error:
        problem = problems.problem_for_ca_error(error, Phase.FINALIZE)
        finalizing.record_failure(acme_order, error, problem.to_json(top_level=False))
        session.commit()
        if problems.is_internal(problem):
            raise  # logged with an incident id by the app's error handler
        raise problem from error
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
