"""``tnca user`` and ``tnca audit query`` on a real home: what an operator types and sees.

Exit codes (tnca/cli.py): 0 success, 1 a failed operation, 2 bad input naming the option or
argument — and bad input writes nothing.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from ca.records import api_tokens, users
from ca.records.models_audit import AuditEvent
from ca.records.models_people import User
from ca.numbers.tnauthlist import TNScope
from tests.audit.support import PASSWORD, Authority
from tests.helpers import row_counts


def _counts(authority: Authority) -> dict[str, int]:
    with authority.session() as session:
        return row_counts(session)


def test_user_add_reads_the_password_from_stdin_and_hashes_it(authority):
    result = authority.run("user", "add", "dana", "--role", "auditor", "--password-stdin", input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Added dana (auditor).\n"
    with authority.session() as session:
        user = session.scalars(select(User).where(User.name == "dana")).one()
        assert user.role == "auditor" and user.password_hash.startswith("$argon2id$")
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "user.create")).one()
        assert event.actor.startswith("cli")
        assert users.authenticate(session, name="dana", password=PASSWORD, remote_addr="cli",
                                  clock=authority.clock).user is not None


def test_user_add_can_generate_a_password_and_shows_it_once(authority):
    result = authority.run("user", "add", "root", "--role", "admin", "--generate-password")
    assert result.exit_code == 0, result.output
    password = result.stdout.splitlines()[-1].removeprefix("password: ")
    assert len(password) == users.GENERATED_PASSWORD_CHARS
    with authority.session() as session:
        assert users.authenticate(session, name="root", password=password, remote_addr="cli",
                                  clock=authority.clock).user is not None
    listed = authority.run("user", "list", "--json")
    assert password not in listed.stdout and "argon2" not in listed.stdout


@pytest.mark.parametrize(("args", "stdin", "names", "detail"), [
    (["user", "add", "Dana", "--role", "auditor", "--password-stdin"], PASSWORD + "\n", "NAME", "is not allowed"),
    (["user", "add", "dana", "--role", "auditor", "--password-stdin"], "short\n", "--password-stdin",
     "at least 12 are required"),
    (["user", "add", "dana", "--role", "auditor"], None, "--password-stdin or --generate-password",
     "no terminal to prompt"),
    (["user", "add", "dana", "--role", "superuser", "--generate-password"], None, "--role", "superuser"),
    (["user", "set-role", "nobody", "admin"], None, "NAME", "no person named 'nobody'"),
])
def test_user_commands_refuse_bad_input_with_exit_2_and_write_nothing(authority, args, stdin, names, detail):
    before = _counts(authority)
    result = authority.run(*args, input=stdin)
    assert result.exit_code == 2, result.output
    assert names in result.stderr and detail in result.stderr
    assert _counts(authority) == before


def test_the_last_admin_cannot_be_disabled_from_the_cli(authority):
    authority.add_user("root", "admin")
    before = _counts(authority)
    result = authority.run("user", "disable", "root")
    assert result.exit_code == 2 and "nobody else would be an active admin" in result.stderr
    assert _counts(authority) == before


def test_token_create_prints_a_working_token_once_and_token_list_never_shows_it(authority):
    authority.add_user("dana", "auditor")
    result = authority.run("user", "token-create", "dana", "--label", "Q3 audit", "--expires", "90d")
    assert result.exit_code == 0, result.output
    token = result.stdout.splitlines()[-1]
    with authority.session() as session:
        assert api_tokens.authenticate_api_token(session, token, clock=authority.clock).name == "dana"
    listed = authority.run("user", "token-list", "--json")
    (entry,) = json.loads(listed.stdout)
    assert entry["label"] == "Q3 audit" and entry["role"] == "auditor" and token[22:] not in listed.stdout
    assert authority.run("user", "token-revoke", entry["id"]).exit_code == 0
    again = authority.run("user", "token-revoke", entry["id"])
    assert again.exit_code == 2 and "revoked already" in again.stderr


def test_audit_query_prints_a_table_for_people_and_names_bad_options(authority):
    delegation = authority.delegate()
    serial = authority.issue(TNScope.parse(tns=["12025550100"]), delegation_id=delegation)
    result = authority.run("audit", "query", "certificates", "--tn", "12025550100")
    assert result.exit_code == 0, result.output
    assert serial in result.stdout and "TN 12025550100" in result.stdout and "delegate=Acme Corp" in result.stdout
    bad = authority.run("audit", "query", "certificates", "--issued-after", "last week")
    assert bad.exit_code == 2
    assert "Error: --issued-after: issued_after 'last week' must be an RFC 3339 time" in bad.stderr


def test_audit_query_csv_is_every_match(authority):
    delegation = authority.delegate()
    serials = {authority.issue(TNScope.parse(tns=[f"1202555010{i}"]), delegation_id=delegation) for i in range(3)}
    result = authority.run("audit", "query", "certificates", "--range", "12025550100:3", "--limit", "1", "--csv")
    lines = result.stdout_bytes.decode().strip().split("\r\n")  # RFC 4180 §2: CRLF line ends
    assert lines[0].startswith("serial,kind,stage,")
    assert {line.split(",")[0] for line in lines[1:]} == serials
