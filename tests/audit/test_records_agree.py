"""``tnca audit verify`` replays the trail and compares it with the tables that serve clients:
a row no event explains, or an event whose effect is missing, is reported by name (the chain
itself still verifies in each case: the tampering is in the tables, not in the events).

Certificates are issued over ACME (certbot's client, real HTTP); the tampering is plain SQL, as
someone with database access would do it.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, select, update

from ca.records.models_authority import Certificate, Delegation, Revocation
from ca.records import users
from protocol.support import (  # noqa: F401  (fixtures)
    DELEGATED_SCOPE,
    RANGE_SCOPE,
    TN_SCOPE,
    Subscriber,
    app,
    authority,
    client,
    home,
    port,
    server,
)
from tests.lifecycle.lifecycle_support import issue
from tnca.cli import cli

pytestmark = pytest.mark.e2e


def tnca(home, *args: str):  # noqa: F811
    return CliRunner().invoke(cli, ["--home", str(home.path), *args], catch_exceptions=False)


def verify(home):  # noqa: F811
    result = tnca(home, "audit", "verify", "--json")
    return result.exit_code, json.loads(result.stdout)


def test_deleted_revocation_and_edited_subject_are_reported_by_name(server, authority, home, client,  # noqa: F811
                                                                     session_factory):
    subscriber = Subscriber(server)
    subscriber.register()
    delegation_id = authority.delegate(DELEGATED_SCOPE)
    revoked = issue(subscriber, authority, delegation_id, TN_SCOPE)
    kept = issue(subscriber, authority, delegation_id, RANGE_SCOPE)
    authority.token(delegation_id, subscriber.public_jwk, TN_SCOPE)  # minted, never used
    with session_factory() as session:
        users.create_user(session, name="dana", role="auditor", password="a long enough password", actor="test",
                          clock=home.clock)
        session.commit()
    assert tnca(home, "revoke", "--serial", revoked.serial, "--execute").exit_code == 0
    assert client.get(f"/cert-repo/{revoked.serial}.pem").status_code == 410

    code, answer = verify(home)
    assert (code, answer["ok"]) == (0, True), answer
    assert "the records agree with the trail" in tnca(home, "audit", "verify").output

    # 1. Delete the revocation row: the repository serves the revoked certificate again.
    with session_factory() as session:
        certificate_id = session.scalar(select(Certificate.id).where(Certificate.serial == revoked.serial))
        session.execute(delete(Revocation).where(Revocation.certificate_id == certificate_id))
        session.commit()
    assert client.get(f"/cert-repo/{revoked.serial}.pem").status_code == 200
    code, answer = verify(home)
    assert code == 1 and answer["ok"] is False and answer["chain"]["events"] > 0
    [finding] = answer["records"]
    assert (finding["table"], finding["name"]) == ("revocations", f"revocation of certificate {revoked.serial}")
    assert "the revocation row is missing" in finding["detail"] and finding["seq"] is not None

    # 2. Edit the other certificate's subject in place.
    with session_factory() as session:
        session.execute(update(Certificate).where(Certificate.serial == kept.serial)
                        .values(subject="CN=Someone Else"))
        # 3. And a delegation row that no event created.
        session.add(Delegation(id="forgedforgedforged", delegate="Nobody", scope_der=TN_SCOPE.to_der(),
                               max_lifetime_seconds=3600, created_by="sql"))
        session.commit()
    result = tnca(home, "audit", "verify")
    assert result.exit_code == 1
    assert f"revocation of certificate {revoked.serial}" in result.output
    assert (f"certificate {kept.serial} (event" in result.output
            and "subject is 'CN=Someone Else', the trail says" in result.output), result.output
    assert "delegation forgedforgedforged: no event explains this row" in result.output
    assert "the chain itself verifies" in result.output
