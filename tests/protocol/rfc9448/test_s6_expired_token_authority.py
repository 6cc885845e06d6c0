"""Fault injection: this authority's own token authority certificate has expired (RFC 9448 §6
step 2, RFC 5280 §4.1.2.5: a token's signer must chain, at the time of validation, to a trusted
token authority).

Minting refuses with a message naming the certificate and when it expired (the CLI exits 2); a
token minted before, presented now (its x5u is this server's token-authority URL, serving the
expired certificate), fails the challenge with ``unauthorized`` saying which certificate expired
when, and nothing is written: no used ``jti``, the token is not spent. Never a 500. The operator
page's answer is in tests/admin/test_delegation_pages.py.
"""

from __future__ import annotations

import pytest
from acme import messages
from click.testing import CliRunner

from ca.errors import PolicyError
from protocol.support import TN_SCOPE, raw_answer, raw_new_order, table_counts
from tests.helpers import expire_token_authority
from tnca.cli import cli


def test_s6_step2_a_token_whose_x5u_certificate_expired_fails_the_challenge_precisely(
        registered, home, authority, session_factory):
    delegation_id = authority.delegate()
    token = authority.token(delegation_id, registered.jwk, TN_SCOPE)  # minted while it was valid
    expired = expire_token_authority(home)
    order = raw_new_order(registered, TN_SCOPE.to_identifier_value())
    before = table_counts(session_factory)
    response = raw_answer(registered, order, token)
    assert response.status_code == 200, response.get_data(as_text=True)
    challenge = response.get_json()
    assert challenge["status"] == "invalid"
    error = messages.Error.from_json(challenge["error"])
    assert error.typ == "urn:ietf:params:acme:error:unauthorized"
    assert f"expired at {expired.not_valid_after_utc.isoformat()}" in error.detail, error.detail
    assert expired.subject.rfc4514_string() in error.detail
    assert table_counts(session_factory) == before  # no jti recorded: the token is not spent


def test_minting_under_an_expired_token_authority_certificate_is_refused(registered, home, authority):
    delegation_id = authority.delegate()
    expired = expire_token_authority(home)
    with pytest.raises(PolicyError) as refused:
        authority.token(delegation_id, registered.jwk, TN_SCOPE)
    assert refused.value.field == "token_authority"
    assert f"expired at {expired.not_valid_after_utc.isoformat()}" in refused.value.detail


def test_tnca_token_mint_under_an_expired_token_authority_certificate_exits_2(registered, home, authority, database_url):
    from ca.tokens import fingerprints

    delegation_id = authority.delegate()
    expired = expire_token_authority(home)
    result = CliRunner().invoke(
        cli, ["--home", str(home.path), "token", "mint", "--delegation", delegation_id,
              "--fingerprint", fingerprints.account_fingerprint(registered.jwk), "--ttl", "10m"],
        env={"TNCA_DATABASE_URL": database_url})
    assert result.exit_code == 2, result.output
    assert f"the token authority certificate '{expired.subject.rfc4514_string()}' expired at" in result.stderr
    assert "Traceback" not in result.output
