"""Admin commands are dry-run by default: ``tnca revoke`` and ``tnca delegation revoke``
print the plan and change nothing without ``--execute`` — no row anywhere, and the audit chain's
head is where it was. Bad input exits 2 with one line naming the option; a refused operation
exits 1; neither writes anything.
"""

from __future__ import annotations

import json

import pytest
from cryptography import x509

from ca.records import audit
from tests.e2e.devhome import DevHome

pytestmark = pytest.mark.e2e


def serial_of(chain) -> str:  # type: ignore[no-untyped-def]
    return format(x509.load_pem_x509_certificates(chain.read_bytes())[0].serial_number, "x")


def delegation(dev_home: DevHome, *args: str) -> str:
    result = dev_home.run("delegation", "create", "--delegate", "Example Enterprise", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["id"]


def audit_state(dev_home: DevHome) -> tuple[tuple[int, str], int]:
    with dev_home.sessionmaker() as session:
        return audit.head(session), audit.verify(session)


@pytest.fixture
def populated(dev_home: DevHome) -> dict[str, str]:
    """A delegation with two certificates and an unused token, and a certificate outside it."""
    delegation_id = delegation(dev_home, "--range", "12025550000:1000")
    _, tn_chain = dev_home.issue("--tn", "12025550123", "--delegation", delegation_id, name="tn")
    _, range_chain = dev_home.issue("--range", "12025550100:100", "--delegation", delegation_id, name="range")
    _, other_chain = dev_home.issue("--tn", "12025559000", name="other")
    minted = dev_home.run("token", "mint", "--delegation", delegation_id, "--tn", "12025550123",
                          "--fingerprint", "SHA256 " + ":".join(["AB"] * 32), "--json")
    assert minted.exit_code == 0, minted.output
    return {"delegation": delegation_id, "tn": serial_of(tn_chain), "range": serial_of(range_chain),
            "other": serial_of(other_chain), "jti": json.loads(minted.stdout)["jti"]}


@pytest.mark.parametrize(
    "command, expected_lines",
    [
        (["revoke", "--serial", "{tn}"], ["would revoke certificate {tn}", "1 certificate(s) to revoke:"]),
        (["revoke", "--delegation", "{delegation}"],
         ["would revoke delegation {delegation}", "status active -> revoked", "2 certificate(s) to revoke:",
          "1 unused authority token(s) stop validating:", "jti {jti}"]),
        (["revoke", "--covering", "12025550123"],
         ["would revoke every certificate covering TN 12025550123", "2 certificate(s) to revoke:",
          "still granted by active delegation(s) {delegation}"]),
        (["revoke", "--range", "12025558990:20"], ["1 certificate(s) to revoke:", "{other}"]),
        (["delegation", "revoke", "{delegation}", "--reason", "contract ended"],
         ["would revoke delegation {delegation}", "2 certificate(s) to revoke:", "comment 'contract ended'"]),
    ],
    ids=["serial", "delegation", "covering", "range", "delegation-command"],
)
def test_dry_run_prints_the_plan_and_changes_no_row_and_no_audit_event(dev_home, populated, command, expected_lines):
    before_rows = dev_home.row_counts()
    before_audit = audit_state(dev_home)
    result = dev_home.run(*[part.format(**populated) for part in command])
    assert result.exit_code == 0, result.output
    for line in expected_lines:
        assert line.format(**populated) in result.stdout, result.stdout
    assert result.stdout.rstrip().endswith("dry run: nothing changed; run again with --execute to apply")
    assert dev_home.row_counts() == before_rows
    assert audit_state(dev_home) == before_audit


def test_dry_run_json_is_the_plan_with_its_digest_and_executed_false(dev_home, populated):
    before_rows = dev_home.row_counts()
    result = dev_home.run("revoke", "--delegation", populated["delegation"], "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["executed"] is False and "result" not in answer
    plan = answer["plan"]
    assert len(plan["digest"]) == 64
    assert plan["request"] == {"kind": "delegation", "target": populated["delegation"], "reason_code": 9,
                               "reason": "privilegeWithdrawn", "comment": None}
    assert {c["serial"] for c in plan["certificates"]} == {populated["tn"], populated["range"]}
    assert all(c["issuer"] == "issuing" and c["delegation_id"] == populated["delegation"] for c in plan["certificates"])
    assert dev_home.row_counts() == before_rows


def test_the_same_plan_twice_has_the_same_digest_and_execute_applies_it(dev_home, populated):
    first = json.loads(dev_home.run("revoke", "--serial", populated["tn"], "--json").stdout)["plan"]
    second = json.loads(dev_home.run("revoke", "--serial", populated["tn"], "--json").stdout)["plan"]
    assert first["digest"] == second["digest"]
    executed = dev_home.run("revoke", "--serial", populated["tn"], "--reason", "keyCompromise", "--execute", "--json")
    assert executed.exit_code == 0, executed.output
    result = json.loads(executed.stdout)["result"]
    assert result["revoked"] == [populated["tn"]]
    assert result["crls"][0]["issuer"] == "issuing" and result["crls"][0]["error"] is None
    with dev_home.sessionmaker() as session:
        events = [e.action for e in audit.query(session, limit=5)]
    # Newest first: the CRL, the certificate, the plan with the operator.
    assert events[:3] == ["crl.issue", "certificate.revoke", "revocation.execute"]


@pytest.mark.parametrize(
    "args, option, fragment",
    [
        (["revoke", "--serial", "zz"], "--serial", "is not a positive hexadecimal serial number"),
        (["revoke", "--serial", "abcdef"], "--serial", "no certificate with serial abcdef"),
        (["revoke", "--serial", "{tn}", "--reason", "onHold"], "--reason", "is not an RFC 5280 §5.3.1 reason code"),
        (["revoke", "--serial", "{tn}", "--reason", "certificateHold"], "--reason", "reason certificateHold is not accepted"),
        (["revoke", "--serial", "{tn}", "--reason", "7"], "--reason", "'7' is not an RFC 5280 §5.3.1 reason code"),
        (["revoke", "--delegation", "nope"], "--delegation", "no delegation with id 'nope'"),
        (["revoke", "--covering", "+12025550123"], "--covering", "without '+'"),
        (["revoke", "--range", "12025550000-100"], "--range", "must be START:COUNT"),
        (["revoke", "--serial", "{tn}", "--comment", "x" * 1001], "--comment", "the limit is 1000"),
    ],
    ids=["malformed-serial", "unknown-serial", "unknown-reason", "hold", "reason-7", "unknown-delegation",
         "plus-tn", "bad-range", "long-comment"],
)
def test_bad_input_exits_2_with_one_line_naming_the_option_and_writes_nothing(dev_home, populated, args, option, fragment):
    before = dev_home.row_counts()
    result = dev_home.run_subprocess(*[part.format(**populated) for part in args], "--execute")
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: {option}: ") and fragment in line, line
    assert result.stdout == ""
    assert dev_home.row_counts() == before


def test_two_targets_at_once_are_a_usage_error(dev_home, populated):
    before = dev_home.row_counts()
    result = dev_home.run_subprocess("revoke", "--serial", populated["tn"], "--delegation", populated["delegation"])
    assert result.returncode == 2
    assert "give exactly one of --serial, --delegation or --covering/--range/--spc (got --serial and --delegation)" in result.stderr
    assert dev_home.row_counts() == before


def test_revoking_a_revoked_certificate_is_a_failed_operation_that_writes_nothing(dev_home, populated):
    assert dev_home.run("revoke", "--serial", populated["tn"], "--execute").exit_code == 0
    before = dev_home.row_counts()
    result = dev_home.run_subprocess("revoke", "--serial", populated["tn"], "--execute")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: certificate {populated['tn']} was already revoked at ")
    assert dev_home.row_counts() == before


def test_a_second_operators_plan_for_a_revoked_delegation_is_refused_and_writes_nothing(dev_home, populated):
    """Two operators plan the same revocation; the second execute finds it done and changes nothing."""
    from ca.lifecycle import revocation
    from ca.home import Home
    from ca.errors import RevocationError

    home = Home(dev_home.path)
    try:
        with home.sessionmaker() as session:
            first = revocation.plan_revoke_delegation(session, populated["delegation"], reason=None, clock=home.clock)
            second = revocation.plan_revoke_delegation(session, populated["delegation"], reason=None, clock=home.clock)
        assert first.digest == second.digest
        with home.sessionmaker() as session:
            done = revocation.execute(session, first, actor="cli:alice", clock=home.clock, home=home)
        assert set(done.revoked) == {populated["tn"], populated["range"]} and done.crls_signed
        before = dev_home.row_counts()
        with home.sessionmaker() as session, pytest.raises(RevocationError) as refused:
            revocation.execute(session, second, actor="cli:bob", clock=home.clock, home=home)
        assert refused.value.field == "delegation"
        assert f"delegation {populated['delegation']} is already revoked" in refused.value.detail
        assert dev_home.row_counts() == before
    finally:
        home.close()
