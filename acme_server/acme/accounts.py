"""Accounts (RFC 8555 §7.3): newAccount, account update and deactivation, the orders list, keyChange."""

from __future__ import annotations

import hmac
import json
import re
from typing import Any

from flask import Response, g, request
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from acme_server.acme import problems, rate_limiting
from acme_server.client_address import client_address
from ca import policy
from ca.encoding import EncodingError
from ca.errors import DelegationError
from acme_server.acme.jws import check_algorithm, parse_flattened, parse_header_jwk
from acme_server.acme.keys import AccountKey, JWKError, parse_jwk
from acme_server.acme.objects import account_object
from acme_server.acme.owned import actor
from acme_server.acme.responses import acme_json
from acme_server.observability import note
from acme_server.state import current_state, db_session
from ca.lifecycle import renewal
from ca.orders.status import invalidate_order, problem
from ca.records.statuses import AuthorizationStatus, OrderStatus
from ca.records import audit, external_accounts, rate_limits
from ca.records.models_acme import Account, ExternalAccountKey, Order
from ca.tokens import retired_keys

# A delegate needs an address or two; more is a client bug or abuse.
MAX_CONTACTS = 8
# RFC 5321 §4.5.3.1.3: a forward-path is at most 256 octets including "<>": 254 for the address.
MAX_EMAIL_CHARS = 254
# RFC 8555 §7.1.2.1: the orders list is paginated with Link rel="next".
ORDERS_PAGE_SIZE = 100
# The last page the orders list serves: 100 million orders, far beyond any one account.
ORDERS_MAX_PAGE = 1_000_000
# RFC 8555 §7.3.4: the EAB JWS uses a MAC algorithm; HMAC with SHA-2 is what clients send.
EAB_ALGORITHMS = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}
# RFC 8555 §7.1.2.1: the list SHOULD NOT include orders in the "invalid" state.
_LISTED_ORDER_STATUSES = (OrderStatus.PENDING, OrderStatus.READY, OrderStatus.PROCESSING, OrderStatus.VALID)

# addr-spec (RFC 5322 §3.4.1) restricted to what mail systems actually deliver: a dot-atom
# local part and a domain of LDH labels. Quoted local parts and address literals are refused.
_ATEXT = r"[A-Za-z0-9!#$&'*+/=^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDR_SPEC = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})+")


# --------------------------------------------------------------------------------------------
# newAccount (RFC 8555 §7.3)
# --------------------------------------------------------------------------------------------


def new_account() -> Response:
    state, session = current_state(), db_session()
    key: AccountKey = g.account_key
    payload: dict[str, Any] = g.payload

    existing = _account_by_thumbprint(key.thumbprint)
    if existing is not None:
        return _existing_account(existing)
    only_existing = payload.get("onlyReturnExisting", False)
    if not isinstance(only_existing, bool):
        raise problems.malformed("'onlyReturnExisting' must be a boolean")
    if only_existing:
        # RFC 8555 §7.3.1: MUST NOT create an account; 400 accountDoesNotExist.
        raise problems.account_does_not_exist("no account is registered for this key (onlyReturnExisting was true)")
    contact = validate_contacts(payload.get("contact"))
    terms_agreed = payload.get("termsOfServiceAgreed", False)
    if not isinstance(terms_agreed, bool):
        raise problems.malformed("'termsOfServiceAgreed' must be a boolean")
    terms = state.policy.acme.terms_of_service
    if terms and not terms_agreed:
        # RFC 8555 §7.3: with terms in the directory, newAccount without agreement is refused.
        raise problems.malformed(
            f"agree to the terms of service at {terms} by sending \"termsOfServiceAgreed\": true",
            headers={"Link": f'<{terms}>;rel="terms-of-service"'},
        )
    eab_key = None
    if "externalAccountBinding" in payload:
        eab_key = _verify_external_account_binding(payload["externalAccountBinding"], key)
    elif state.policy.acme.eab_required:
        raise problems.external_account_required(
            "this authority requires an external account binding (RFC 8555 §7.3.4); ask your operator for a key id and MAC key"
        )

    # The policy's new_accounts_per_address rate limit counts accounts about to be created only.
    rate_limiting.enforce(policy.NEW_ACCOUNTS_PER_ADDRESS, rate_limits.address_key(client_address()))

    now = state.clock.now()
    account = Account(
        jwk=key.to_json(),
        jwk_thumbprint=key.thumbprint,
        status="valid",
        contact=contact,
        terms_agreed=bool(terms and terms_agreed),
        eab_key_id=eab_key.key_id if eab_key is not None else None,
        created_at=now,
    )
    session.add(account)
    try:
        session.flush()
    except IntegrityError:
        # Another request registered the same key between our lookup and insert.
        session.rollback()
        existing = _account_by_thumbprint(key.thumbprint)
        if existing is None:
            raise
        return _existing_account(existing)
    if eab_key is not None:
        # A key binds one account: the conditional update loses cleanly to a concurrent bind.
        bound = session.execute(
            update(ExternalAccountKey)
            .where(ExternalAccountKey.key_id == eab_key.key_id, ExternalAccountKey.bound_at.is_(None),
                   ExternalAccountKey.revoked_at.is_(None))
            .values(bound_at=now)
            .execution_options(synchronize_session=False)
        )
        if bound.rowcount != 1:
            raise problems.unauthorized(f"external account key {eab_key.key_id!r} has already been used")
    audit.append(
        session,
        actor=actor(account),
        action="account.create",
        subject_type="account",
        subject_id=account.id,
        details={
            "jwk_thumbprint": key.thumbprint,
            "key": key.describe(),
            "contact": contact,
            "terms_agreed": account.terms_agreed,
            "eab_key_id": account.eab_key_id,
            "delegation_id": eab_key.delegation_id if eab_key is not None else None,
            "delegate": external_accounts.delegate_of(session, eab_key) if eab_key is not None else None,
        },
        clock=state.clock,
    )
    session.commit()
    note(account=account.id)
    return acme_json(account_object(account, state.urls), 201, location=state.urls.account(account.id))


def _account_by_thumbprint(thumbprint: str) -> Account | None:
    return db_session().scalars(select(Account).where(Account.jwk_thumbprint == thumbprint)).one_or_none()


def _existing_account(account: Account) -> Response:
    urls = current_state().urls
    note(account=account.id)
    if account.status == "deactivated":
        # RFC 8555 §7.3.6: no further requests authorized by a deactivated account's key.
        raise problems.unauthorized(f"account {account.id} is deactivated", status=401)
    if account.status != "valid":
        raise problems.unauthorized(f"account {account.id} is {account.status}")
    # RFC 8555 §7.3.1: 200 with the existing account's URL; the request's fields are ignored.
    return acme_json(account_object(account, urls), 200, location=urls.account(account.id))


def validate_contacts(value: Any) -> list[str]:
    """RFC 8555 §7.3: "mailto" URLs only, one address each, no header fields."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise problems.malformed("'contact' must be an array of URLs")
    if len(value) > MAX_CONTACTS:
        raise problems.invalid_contact(f"at most {MAX_CONTACTS} contact URLs are accepted, got {len(value)}")
    contacts = []
    for index, contact in enumerate(value):
        if not isinstance(contact, str):
            raise problems.malformed(f"'contact[{index}]' must be a string URL")
        scheme, colon, address = contact.partition(":")
        if not colon or scheme.lower() != "mailto":
            # RFC 8555 §7.3: a scheme the server does not support is unsupportedContact.
            raise problems.unsupported_contact(
                f"contact {contact[:80]!r} is not a mailto: URL; only mailto contacts are supported"
            )
        if "?" in address:
            # RFC 8555 §7.3: mailto URLs with "hfields" SHOULD be rejected.
            raise problems.invalid_contact(f"contact {contact[:80]!r} carries header fields ('?'); send the address only")
        if "," in address:
            raise problems.invalid_contact(f"contact {contact[:80]!r} names several addresses; use one mailto URL each")
        if len(address) > MAX_EMAIL_CHARS or not _ADDR_SPEC.fullmatch(address):
            raise problems.invalid_contact(f"contact {contact[:80]!r} is not a valid email address")
        contacts.append(f"mailto:{address}")
    return contacts


def _verify_external_account_binding(value: Any, key: AccountKey) -> ExternalAccountKey:
    """RFC 8555 §7.3.4: an HMAC'd JWS over the account key, by a key the operator handed out."""
    if not isinstance(value, dict):
        raise problems.malformed("'externalAccountBinding' must be a flattened JWS object")
    inner = parse_flattened(value, what="externalAccountBinding")
    alg = inner.header.get("alg")
    if alg not in EAB_ALGORITHMS:
        raise problems.malformed(
            f"externalAccountBinding 'alg' must be a MAC algorithm ({', '.join(EAB_ALGORITHMS)}), got {str(alg)[:20]!r}"
        )
    if "nonce" in inner.header:
        raise problems.malformed("externalAccountBinding must not carry a 'nonce' (RFC 8555 §7.3.4)")
    outer_url = g.jws.header["url"]
    if inner.header.get("url") != outer_url:
        raise problems.unauthorized(
            f"externalAccountBinding 'url' must equal the outer JWS 'url' {outer_url!r} (RFC 8555 §7.3.4)"
        )
    key_id = inner.header.get("kid")
    if not isinstance(key_id, str) or not key_id:
        raise problems.malformed("externalAccountBinding lacks 'kid', the key identifier from your operator")
    eab_key = db_session().get(ExternalAccountKey, key_id)
    if eab_key is None:
        raise problems.unauthorized(f"external account key {key_id[:64]!r} is unknown")
    try:
        external_accounts.check_usable(eab_key, current_state().clock.now())
    except DelegationError as error:
        raise problems.unauthorized(error.detail) from error
    expected = hmac.new(eab_key.hmac_key, inner.signing_input, EAB_ALGORITHMS[alg]).digest()
    if not hmac.compare_digest(expected, inner.signature):
        raise problems.unauthorized(f"externalAccountBinding MAC does not verify with external account key {key_id[:64]!r}")
    try:
        bound_key = parse_jwk(json.loads(inner.payload_bytes()))
    except (EncodingError, JWKError, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise problems.malformed(f"externalAccountBinding payload must be the account's public JWK ({exc})") from exc
    if bound_key.thumbprint != key.thumbprint:
        raise problems.unauthorized("externalAccountBinding payload is another key than the one signing this request")
    return eab_key


# --------------------------------------------------------------------------------------------
# The account resource (RFC 8555 §7.3.2 update, §7.3.6 deactivation) and its orders list
# --------------------------------------------------------------------------------------------


def _own_account(account_id: str) -> Account:
    account: Account = g.account
    if account.id != account_id:
        raise problems.unauthorized(f"the request is signed for account {account.id}, not account {account_id[:64]}")
    return account


def account(account_id: str) -> Response:
    state, session = current_state(), db_session()
    acct = _own_account(account_id)
    payload = g.payload
    if payload is not None:
        # RFC 8555 §7.3.2: "orders", "termsOfServiceAgreed", unknown fields and any "status" other
        # than deactivation are ignored.
        if "contact" in payload and payload["contact"] is not None:
            _update_contacts(acct, validate_contacts(payload["contact"]))
        if payload.get("status") == "deactivated":
            _deactivate(acct)
        session.commit()
    return acme_json(account_object(acct, state.urls), location=state.urls.account(acct.id))


def _update_contacts(acct: Account, contact: list[str]) -> None:
    """RFC 8555 §7.3.2: new contacts, audited with the old ones (they say who hears about the
    account's certificates). Sending the same contacts again changes nothing."""
    state, session = current_state(), db_session()
    before = list(acct.contact or [])
    if contact == before:
        return
    acct.contact = contact
    audit.append(
        session,
        actor=actor(acct),
        action="account.update",
        subject_type="account",
        subject_id=acct.id,
        details={"contact_before": before, "contact_after": contact},
        clock=state.clock,
    )


def _deactivate(acct: Account) -> None:
    """RFC 8555 §7.3.6: no reactivation; pending work authorized by the key SHOULD be cancelled."""
    state, session = current_state(), db_session()
    acct.status = "deactivated"
    open_orders = session.scalars(
        select(Order).where(Order.account_id == acct.id, Order.status.in_((OrderStatus.PENDING, OrderStatus.READY)))
    ).all()
    cancelled = problem("unauthorized", f"account {acct.id} was deactivated")
    for order in open_orders:
        invalidate_order(order, cancelled)
        for authz in order.authorizations:
            if authz.status == AuthorizationStatus.PENDING:
                authz.status = AuthorizationStatus.DEACTIVATED
    # A STAR order's renewals are work authorized by the key, too (RFC 8739 §3.1.2 cancellation).
    star_orders = session.scalars(
        select(Order).where(Order.account_id == acct.id, Order.status == OrderStatus.VALID, Order.auto_renewal.is_not(None))
    ).all()
    for order in star_orders:
        renewal.cancel(session, order, actor=actor(acct), by=renewal.CANCELED_BY_ACCOUNT, clock=state.clock,
                       reason=f"account {acct.id} was deactivated")
    audit.append(
        session,
        actor=actor(acct),
        action="account.deactivate",
        subject_type="account",
        subject_id=acct.id,
        details={"cancelled_orders": sorted(order.id for order in [*open_orders, *star_orders])},
        clock=state.clock,
    )


def account_orders(account_id: str) -> Response:
    """RFC 8555 §7.1.2.1: the account's orders, newest first, ORDERS_PAGE_SIZE per page."""
    state, session = current_state(), db_session()
    acct = _own_account(account_id)
    page_text = request.args.get("page", "1")
    # Bounded before it reaches SQL: the offset must fit a 64-bit integer (SQLite overflowed on
    # a huge page). ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    if not re.fullmatch(r"[0-9]{1,7}", page_text) or not 1 <= int(page_text) <= ORDERS_MAX_PAGE:
        raise problems.malformed(f"'page' must be an integer from 1 to {ORDERS_MAX_PAGE}, got {page_text[:20]!r}")
    page = int(page_text)
    listed = (Order.account_id == acct.id) & Order.status.in_(_LISTED_ORDER_STATUSES)
    order_ids = session.scalars(
        select(Order.id)
        .where(listed)
        .order_by(Order.created_at.desc(), Order.id)
        .offset((page - 1) * ORDERS_PAGE_SIZE)
        .limit(ORDERS_PAGE_SIZE + 1)
    ).all()
    links = ()
    if len(order_ids) > ORDERS_PAGE_SIZE:
        order_ids = order_ids[:ORDERS_PAGE_SIZE]
        links = ((f"{state.urls.account_orders(acct.id)}?page={page + 1}", "next"),)
    return acme_json({"orders": [state.urls.order(order_id) for order_id in order_ids]}, links=links)


# --------------------------------------------------------------------------------------------
# keyChange (RFC 8555 §7.3.5)
# --------------------------------------------------------------------------------------------


def key_change() -> Response:
    state, session = current_state(), db_session()
    acct: Account = g.account
    old_key: AccountKey = g.account_key
    # The outer payload is the inner JWS, signed by the new key.
    inner = parse_flattened(g.payload, what="keyChange inner JWS")
    alg = check_algorithm(inner)
    if "kid" in inner.header or "jwk" not in inner.header:
        raise problems.malformed("keyChange inner JWS must carry the new key in 'jwk' and no 'kid' (RFC 8555 §7.3.5)")
    new_key = parse_header_jwk(inner.header["jwk"])
    outer_url = g.jws.header["url"]
    if inner.header.get("url") != outer_url:
        raise problems.malformed(f"keyChange inner JWS 'url' must equal the outer 'url' {outer_url!r} (RFC 8555 §7.3.5)")
    try:
        new_key.check_algorithm(alg)
    except JWKError as exc:
        raise problems.bad_signature_algorithm(str(exc), (new_key.algorithm,)) from exc
    if not new_key.verify(alg, inner.signing_input, inner.signature):
        raise problems.malformed("keyChange inner JWS signature does not verify with its 'jwk' (the new key)")
    try:
        change = json.loads(inner.payload_bytes())
    except (EncodingError, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise problems.malformed("keyChange inner JWS payload is not JSON") from exc
    if not isinstance(change, dict) or not isinstance(change.get("account"), str) or "oldKey" not in change:
        raise problems.malformed("keyChange inner payload must be {\"account\": <account URL>, \"oldKey\": <JWK>}")
    account_url = state.urls.account(acct.id)
    if change["account"] != account_url:
        raise problems.unauthorized(f"keyChange 'account' {change['account'][:200]!r} is not the signing account {account_url!r}")
    try:
        stated_old_key = parse_jwk(change["oldKey"])
    except JWKError as exc:
        raise problems.malformed(f"keyChange 'oldKey': {exc}") from exc
    if stated_old_key.thumbprint != old_key.thumbprint:
        raise problems.unauthorized("keyChange 'oldKey' is not the account's current key")
    if new_key.thumbprint == old_key.thumbprint:
        raise problems.malformed("keyChange new key is the account's current key")
    holder = _account_by_thumbprint(new_key.thumbprint)
    if holder is not None:
        raise problems.conflict("the new key is already in use by another account", location=state.urls.account(holder.id))

    acct.jwk = new_key.to_json()
    acct.jwk_thumbprint = new_key.thumbprint
    audit.append(
        session,
        actor=actor(acct),
        action="account.key-change",
        subject_type="account",
        subject_id=acct.id,
        details={"old_jwk_thumbprint": old_key.thumbprint, "new_jwk_thumbprint": new_key.thumbprint, "key": new_key.describe()},
        clock=state.clock,
    )
    # Tokens minted for the old key must not authorize whoever makes an account with it next.
    retired_keys.retire(session, account_id=acct.id, thumbprint=old_key.thumbprint, new_thumbprint=new_key.thumbprint,
                        actor=actor(acct), clock=state.clock)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        holder = _account_by_thumbprint(new_key.thumbprint)
        if holder is None:
            raise
        raise problems.conflict("the new key is already in use by another account", location=state.urls.account(holder.id))
    # RFC 8555 §7.3.5: pending orders and authorizations stay as they are.
    return acme_json(account_object(acct, state.urls), location=account_url)
