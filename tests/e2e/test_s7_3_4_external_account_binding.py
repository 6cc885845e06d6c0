"""RFC 8555 §7.3.4 external account binding, end to end: ``tnca eab create`` makes the key,
certbot's ``acme`` client binds an account with it (``messages.ExternalAccountBinding``) over real
HTTP, and the bound account acts for that delegate only.

RFC 8555 §7.3.4: "The server MAY require a value for the 'externalAccountBinding' field to be
present in 'newAccount' requests"; the key id and MAC key are "provided by the CA" out of band.
"""

from __future__ import annotations

import json

import pytest
from acme import messages
from click.testing import CliRunner
from sqlalchemy import func, select

from acme_server import create_app
from ca.records.models_acme import Account, ExternalAccountKey
from ca.records.models_audit import AuditEvent
from protocol.support import (  # noqa: F401  (fixtures)
    DELEGATED_SCOPE,
    TN_SCOPE,
    Subscriber,
    authority,
    home,
    make_csr,
    port,
    serving,
    table_counts,
    with_policy,
)
from tnca.cli import cli
from ca.numbers.tnauthlist import TNScope
from ca.tokens import fingerprints

pytestmark = pytest.mark.e2e

OTHER_DELEGATE = "Other Enterprise"
# Inside the issuing CA's scope, outside DELEGATED_SCOPE (12025550000+1000).
OTHER_SCOPE = TNScope.parse(tns=["12025551900"])
# Inside DELEGATED_SCOPE too: delegated to both delegates.
OVERLAP_SCOPE = TNScope.parse(tns=["12025550900"])


def tnca(home, *args: str):
    return CliRunner().invoke(cli, ["--home", str(home.path), *args], catch_exceptions=False)


def create_key(home, *args: str) -> dict:
    result = tnca(home, "eab", "create", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def eab_server(home, port, authority):
    """An authority whose policy says eab_required = true, served on loopback, with two delegates."""
    ours = authority.delegate(DELEGATED_SCOPE)
    theirs = authority.delegate(OTHER_SCOPE, delegate=OTHER_DELEGATE)
    required = with_policy(home, "acme", eab_required=True)
    with serving(create_app(required), required, port) as live:
        live.ours, live.theirs = ours, theirs  # type: ignore[attr-defined]
        yield live
    required.close()


def register_with(subscriber: Subscriber, key: dict, **kwargs) -> messages.RegistrationResource:
    binding = messages.ExternalAccountBinding.from_data(
        account_public_key=subscriber.public_jwk, kid=key["kid"], hmac_key=key["hmac_key"],
        directory=subscriber.directory, **kwargs)
    return subscriber.acme.new_account(messages.NewRegistration.from_data(external_account_binding=binding))


def test_s7_3_4_cli_key_binds_certbots_account_to_the_delegate_once(eab_server, home, authority, session_factory):
    key = create_key(home, "--delegate", "Example Enterprise", "--expires", "7d")
    assert set(key) >= {"kid", "hmac_key"} and len(key["hmac_key"]) == 43  # 32 bytes, base64url unpadded
    assert key["delegate"] == "Example Enterprise"
    subscriber = Subscriber(eab_server)
    account = register_with(subscriber, key)
    assert account.body.status == "valid"

    with session_factory() as session:
        row = session.scalars(select(Account)).one()
        assert row.eab_key_id == key["kid"]
        created = session.scalars(select(AuditEvent).where(AuditEvent.action == "account.create")).one()
        assert created.details["delegate"] == "Example Enterprise"
        # The audit trail names the key, never the MAC key.
        made = session.scalars(select(AuditEvent).where(AuditEvent.action == "eab.create")).one()
        assert key["hmac_key"] not in json.dumps(made.details)

    # The bound account issues inside its delegate's delegation, as any account does.
    token = authority.token(eab_server.ours, subscriber.public_jwk, TN_SCOPE)
    csr, _ = make_csr(scope=TN_SCOPE)
    assert "BEGIN CERTIFICATE" in subscriber.issue(TN_SCOPE.to_identifier_value(), token, csr)

    # Single use: another account key cannot use it again.
    before = table_counts(session_factory)
    with pytest.raises(messages.Error) as caught:
        register_with(Subscriber(eab_server), key)
    assert (caught.value.code, "already been used" in caught.value.detail) == ("unauthorized", True)
    assert table_counts(session_factory) == before

    listed = json.loads(tnca(home, "eab", "list", "--json").stdout)
    assert [(k["kid"], k["status"], k["account_id"]) for k in listed] == [(key["kid"], "bound", row.id)]
    assert key["hmac_key"] not in tnca(home, "eab", "list").stdout + json.dumps(listed)


def test_s7_3_4_without_a_binding_certbot_gets_external_account_required(eab_server, session_factory):
    """RFC 8555 §7.3.4: "If [required and] the request does not include an 'externalAccountBinding'
    field, then the server MUST reject it with an error of type 'externalAccountRequired'"."""
    subscriber = Subscriber(eab_server)
    assert subscriber.directory.meta.external_account_required is True
    before = table_counts(session_factory)
    with pytest.raises(messages.Error) as caught:
        subscriber.register()
    assert caught.value.code == "externalAccountRequired"
    assert table_counts(session_factory) == before


def test_s7_3_4_bound_account_gets_no_order_token_or_validation_for_another_delegate(eab_server, home, authority,
                                                                                     session_factory):
    """An account bound to a delegate acts for that delegate only: newOrder for numbers none of
    its delegations cover is refused, the operator cannot mint it a token under another
    delegate's delegation, and a token minted for its key before it was bound does not validate."""
    subscriber = Subscriber(eab_server)
    fingerprint = fingerprints.account_fingerprint(subscriber.public_jwk)
    # Another delegate also holds a number inside ours (OVERLAP), and one outside it (OTHER_SCOPE).
    overlap = authority.delegate(OVERLAP_SCOPE, delegate=OTHER_DELEGATE)
    # Minted while the key was nobody's account: nothing to check yet.
    early_token = authority.token(overlap, subscriber.public_jwk, OVERLAP_SCOPE)
    register_with(subscriber, create_key(home, "--delegation", eab_server.ours))

    before = table_counts(session_factory)
    with pytest.raises(messages.Error) as caught:
        subscriber.new_order(OTHER_SCOPE.to_identifier_value())
    assert (caught.value.code, caught.value.typ.endswith("unauthorized")) == ("unauthorized", True)
    assert "is bound" in caught.value.detail and "'Example Enterprise'" in caught.value.detail
    refused = tnca(home, "token", "mint", "--delegation", eab_server.theirs, "--fingerprint", fingerprint)
    assert refused.exit_code == 2
    assert "is bound" in refused.output and "'Example Enterprise'" in refused.output
    assert table_counts(session_factory) == before

    order = subscriber.new_order(OVERLAP_SCOPE.to_identifier_value())
    challenge = subscriber.answer(order, early_token)
    assert challenge.body.status == messages.STATUS_INVALID
    assert challenge.body.error.code == "unauthorized" and "is bound" in challenge.body.error.detail
    assert f"'{OTHER_DELEGATE}'" in challenge.body.error.detail


def test_eab_revoke_stops_an_unused_key_and_a_bound_account(eab_server, home, authority, session_factory):
    unused = create_key(home, "--delegate", "Example Enterprise")
    used = create_key(home, "--delegate", "Example Enterprise")
    subscriber = Subscriber(eab_server)
    register_with(subscriber, used)
    assert tnca(home, "eab", "revoke", unused["kid"]).exit_code == 0
    assert tnca(home, "eab", "revoke", used["kid"]).exit_code == 0

    with pytest.raises(messages.Error) as caught:
        register_with(Subscriber(eab_server), unused)
    assert caught.value.code == "unauthorized" and "was revoked" in caught.value.detail

    fingerprint = fingerprints.account_fingerprint(subscriber.public_jwk)
    refused = tnca(home, "token", "mint", "--delegation", eab_server.ours, "--fingerprint", fingerprint)
    assert refused.exit_code == 2 and "revoked" in refused.output

    again = tnca(home, "eab", "revoke", used["kid"])
    assert again.exit_code == 1 and "was revoked" in again.output
    with session_factory() as session:
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.action == "eab.revoke")).all()
        assert len(actions) == 2


def test_eab_expired_key_is_refused(eab_server, home, session_factory):
    key = create_key(home, "--delegate", "Example Enterprise", "--expires", "1h")
    with session_factory() as session:
        row = session.get(ExternalAccountKey, key["kid"])
        row.expires_at = row.created_at  # as if an hour had passed
        session.commit()
    with pytest.raises(messages.Error) as caught:
        register_with(Subscriber(eab_server), key)
    assert caught.value.code == "unauthorized" and "expired" in caught.value.detail
    assert json.loads(tnca(home, "eab", "list", "--json").stdout)[0]["status"] == "expired"


@pytest.mark.parametrize(
    "args, option, fragment",
    [
        ([], "--delegate", "either --delegate NAME or --delegation ID"),
        (["--delegate", "Example Enterprise", "--delegation", "x"], "--delegate", "either"),
        (["--delegate", "Nobody Inc"], "--delegate", "no delegation names the delegate 'Nobody Inc'"),
        (["--delegation", "nosuchdelegation"], "--delegation", "no delegation with id"),
        (["--delegate", "Example Enterprise", "--expires", "2001-01-01"], "--expires", "not in the future"),
        (["--delegate", "Example Enterprise", "--expires", "soon"], "--expires", "expected a date"),
    ],
    ids=["neither", "both", "unknown-delegate", "unknown-delegation", "past", "garbage"],
)
def test_eab_create_bad_input_exits_2_and_writes_nothing(home, authority, session_factory, args, option, fragment):
    authority.delegate(DELEGATED_SCOPE)
    before = table_counts(session_factory)
    result = tnca(home, "eab", "create", *args)
    assert result.exit_code == 2, result.output
    assert f"Error: {option}: " in result.output and fragment in result.output
    assert table_counts(session_factory) == before
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(ExternalAccountKey)) == 0
