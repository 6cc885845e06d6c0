"""The STI-PA-compatible token API (ca/tokens/stipa.py, acme_server/stipa.py; docs/shaken.md).

RFC 9447 §5 leaves token acquisition to the token authority; this is the API deployed SHAKEN
clients call. Each refusal the issue names is shown with its HTTP status, its audit event, and
that nothing was minted: a wrong password (then throttled), a ``tkvalue`` outside the
principal's delegation, ``ca: true`` where not allowed, a revoked delegation.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from acme_server import create_app
from ca.home import Home
from ca.records.models_acme import AuthorityToken
from ca.records.models_audit import AuditEvent
from ca.records.users import MAX_FAILURES_PER_NAME
from ca.tokens import fingerprints
from ca.tokens.jws import parse_compact_jws
from protocol.support import SPC_SCOPE, TN_SCOPE, new_key, padded_base64
from tnca.cli import cli

LOGIN = "/stipa/api/v1/auth/login"


@pytest.fixture
def stipa_home(home) -> Home:
    home.config_path.write_text(home.config_path.read_text() + "\n[stipa]\nenabled = true\n")
    return Home(home.path)


@pytest.fixture
def api(stipa_home):
    return create_app(stipa_home).test_client()


def credentials(home: Home, delegation_id: str) -> dict:
    """What an operator runs: tnca stipa credentials --delegation ID --json."""
    result = CliRunner().invoke(cli, ["--home", str(home.path), "stipa", "credentials", "--delegation", delegation_id,
                                      "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def log_in(api, creds: dict, password: str | None = None):
    return api.post(LOGIN, json={"userId": creds["userId"], "password": password or creds["password"]})


def atc(value: str, *, ca: bool = False, key=None) -> dict:
    jwk = fingerprints.spki_fingerprint(__import__("josepy").JWKEC(key=(key or new_key())).public_key())
    return {"atc": {"tktype": "TNAuthList", "tkvalue": value, "ca": ca, "fingerprint": jwk}}


def ask(api, creds: dict, access_token: str, body: dict, sp_id: str | None = None):
    return api.post(f"/stipa/api/v1/account/{sp_id or creds['sp_id']}/token", json=body,
                    headers={"Authorization": access_token})


def minted(session_factory) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(AuthorityToken))


def events(session_factory, action: str) -> list[AuditEvent]:
    with session_factory() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


@pytest.fixture
def spc_delegation(authority) -> str:
    return authority.delegate(SPC_SCOPE)


def test_rfc9447_s5_token_echoes_the_requested_atc_in_either_encoding(api, stipa_home, spc_delegation, session_factory):
    creds = credentials(stipa_home, spc_delegation)
    assert creds["sp_id"] == "1234" and creds["crl"] == stipa_home.issuing_ca().crl_url
    login = log_in(api, creds)
    assert login.status_code == 200 and login.get_json()["status"] == "success"
    access = login.get_json()["accessToken"]
    for value in (padded_base64(SPC_SCOPE), SPC_SCOPE.to_identifier_value()):
        body = atc(value)
        reply = ask(api, creds, access, body)
        assert reply.status_code == 200, reply.get_json()
        assert reply.get_json()["status"] == "success" and reply.get_json()["crl"] == creds["crl"]
        header, payload, _, _ = parse_compact_jws(reply.get_json()["token"])
        assert header["alg"] == "ES256" and header["x5u"] == stipa_home.token_authority_x5u
        assert payload["atc"] == body["atc"]  # string for string
        assert payload["exp"] - __import__("time").time() >= 180 and isinstance(payload["jti"], str)
    assert minted(session_factory) == 2
    assert {e.actor for e in events(session_factory, "token.mint")} == {f"stipa:{creds['userId']}"}
    # The password is stored hashed only.
    from ca.records.models_people import StipaCredential
    with session_factory() as session:
        row = session.get(StipaCredential, creds["userId"])
        assert creds["password"] not in row.password_hash and row.password_hash.startswith("$argon2id$")


def test_wrong_password_is_refused_audited_and_then_throttled(api, stipa_home, spc_delegation, session_factory):
    creds = credentials(stipa_home, spc_delegation)
    for _ in range(MAX_FAILURES_PER_NAME):
        reply = log_in(api, creds, password="wrong-password-123")
        assert reply.status_code == 401 and reply.get_json()["status"] == "error"
    throttled = log_in(api, creds)  # even the right password, while throttled
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
    assert len(events(session_factory, "stipa.login_failed")) == MAX_FAILURES_PER_NAME
    assert events(session_factory, "stipa.login") == [] and minted(session_factory) == 0


@pytest.mark.parametrize("case", ["outside", "ca", "revoked", "other-account"])
def test_refusals_are_audited_and_mint_nothing(case, api, stipa_home, authority, spc_delegation, session_factory):
    creds = credentials(stipa_home, spc_delegation)
    access = log_in(api, creds).get_json()["accessToken"]
    body, sp_id, status, fragment = atc(padded_base64(SPC_SCOPE)), None, 403, ""
    if case == "outside":
        body, fragment = atc(TN_SCOPE.to_identifier_value()), "is not inside delegation"
    elif case == "ca":
        body, fragment = atc(padded_base64(SPC_SCOPE), ca=True), "does not allow sub-delegation"
    elif case == "revoked":
        authority.revoke(spc_delegation)
        fragment = "is revoked"
    else:
        sp_id, fragment = "709J", "is not this credential's"
    reply = ask(api, creds, access, body, sp_id)
    assert reply.status_code == status and reply.get_json()["status"] == "error", reply.get_json()
    assert fragment in reply.get_json()["message"]
    refused = events(session_factory, "stipa.token_refused")
    assert len(refused) == 1 and fragment in refused[0].details["reason"]
    assert minted(session_factory) == 0


def test_revoked_credential_and_bad_access_tokens_are_401(api, stipa_home, spc_delegation, session_factory):
    creds = credentials(stipa_home, spc_delegation)
    access = log_in(api, creds).get_json()["accessToken"]
    assert ask(api, creds, "not-a-token", atc(padded_base64(SPC_SCOPE))).status_code == 401
    result = CliRunner().invoke(cli, ["--home", str(stipa_home.path), "stipa", "revoke", creds["userId"]])
    assert result.exit_code == 0, result.output
    assert ask(api, creds, access, atc(padded_base64(SPC_SCOPE))).status_code == 401
    assert log_in(api, creds).status_code == 401
    assert minted(session_factory) == 0


def test_malformed_requests_are_400_and_mint_nothing(api, stipa_home, spc_delegation, session_factory):
    creds = credentials(stipa_home, spc_delegation)
    access = log_in(api, creds).get_json()["accessToken"]
    bad = [{}, {"atc": {"tktype": "TNAuthList"}}, {"atc": {**atc("@@")["atc"]}},
           {"atc": {**atc(padded_base64(SPC_SCOPE))["atc"], "fingerprint": "SHA256 00"}},
           {"atc": {**atc(padded_base64(SPC_SCOPE))["atc"], "ca": "no"}}]
    for body in bad:
        reply = ask(api, creds, access, body)
        assert reply.status_code == 400 and reply.get_json()["status"] == "error", (body, reply.get_json())
    assert api.post(LOGIN, data="nope").status_code == 400
    assert minted(session_factory) == 0


def test_credentials_for_an_unknown_delegation_is_exit_2(stipa_home, session_factory):
    result = CliRunner().invoke(cli, ["--home", str(stipa_home.path), "stipa", "credentials", "--delegation", "nope"])
    assert result.exit_code == 2 and "--delegation" in result.output


def test_the_api_is_not_served_unless_enabled(client):
    assert client.post(LOGIN, json={"userId": "x", "password": "y"}).status_code == 404


def test_rfc8555_s6_7_sti_pa_logins_limit_is_rate_limited_with_retry_after_and_audited_once(
        stipa_home, spc_delegation, session_factory):
    """The policy's ``[rate_limits] sti_pa_logins`` counts every login of a user id (right
    passwords too, unlike the failure throttle): over it, 429 with Retry-After, no access token,
    and one ``rate_limit.reached`` event however often the client insists."""
    text = stipa_home.policy_path.read_text()
    stipa_home.policy_path.write_text(
        text.replace('sti_pa_logins = { count = 30, window = "10m" }', 'sti_pa_logins = { count = 2, window = "10m" }'))
    assert 'count = 2, window = "10m"' in stipa_home.policy_path.read_text()
    api = create_app(Home(stipa_home.path)).test_client()
    creds = credentials(stipa_home, spc_delegation)
    for _ in range(2):
        assert log_in(api, creds).status_code == 200
    for _ in range(3):
        refused = log_in(api, creds)
        assert refused.status_code == 429, refused.get_data(as_text=True)
        assert "sti_pa_logins" in refused.get_json()["message"]
        assert 0 < int(refused.headers["Retry-After"]) <= 600
        assert "accessToken" not in refused.get_json()
    assert len(events(session_factory, "stipa.login")) == 2
    assert len(events(session_factory, "rate_limit.reached")) == 1
