"""``tnca delegation`` and ``tnca token`` against a real home made by ``tnca init``.

The ``dev_home`` fixture (tests/e2e/conftest.py) runs the real ``tnca init`` over empty tables of
the test database (SQLite, or PostgreSQL with ``TNCA_TEST_DATABASE_URL``); its issuing CA's scope
is range 12025550000:10000 and SPC 1234. Most cases drive the click group in-process; the round
trip at the end runs the installed ``tnca`` console script. Bad input must exit 2 with one line
naming the option and write nothing (row counts of the home's database before and after).
"""

from __future__ import annotations

import datetime as dt
import json

import josepy as jose
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from ca.records import models_audit
from ca.tokens import fingerprints, trust_config, verification
from ca.clock import SystemClock
from ca.numbers.tnauthlist import TNScope
from ca.tokens.x5u import X5UFetcher

pytestmark = pytest.mark.e2e


@pytest.fixture
def tnca(dev_home):  # type: ignore[no-untyped-def]
    return dev_home.run


@pytest.fixture
def home(dev_home):  # type: ignore[no-untyped-def]
    return dev_home


def counts(home) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return home.row_counts()


def create(tnca, *args: str) -> str:  # type: ignore[no-untyped-def]
    result = tnca("delegation", "create", "--delegate", "Example Enterprise", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["id"]


def fingerprint() -> str:
    return fingerprints.account_fingerprint(jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1())))


def assert_bad_input(tnca, home, args: list[str], option: str, fragment: str) -> None:  # type: ignore[no-untyped-def]
    before = counts(home)
    result = tnca(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: {option}: "), lines[0]
    assert fragment in lines[0], lines[0]
    assert result.stdout == ""
    assert counts(home) == before


class TestDelegationCreate:
    def test_create_prints_the_id_and_records_the_delegation(self, tnca, home) -> None:
        before = counts(home)
        delegation_id = create(tnca, "--range", "12025550100:100", "--tn", "12025559999", "--max-lifetime", "12h")
        after = counts(home)
        assert after["delegations"] == before["delegations"] + 1
        assert after["delegation_scope_entries"] == before["delegation_scope_entries"] + 2
        assert after["audit_events"] == before["audit_events"] + 1
        shown = json.loads(tnca("delegation", "show", delegation_id, "--json").stdout)
        assert shown["id"] == delegation_id
        assert shown["scope"]["description"] == "range 12025550100+100, TN 12025559999"
        assert shown["max_lifetime_seconds"] == 12 * 3600
        assert shown["ca"] is False
        assert shown["status"] == "active"
        assert shown["created_by"].startswith("cli")

    def test_create_without_json_prints_a_readable_line(self, tnca) -> None:
        result = tnca("delegation", "create", "--delegate", "Readable Co", "--tn", "12025550001")
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("created delegation ")
        assert "Readable Co: TN 12025550001, max lifetime 1d, end-entity only, no end date" in result.stdout

    def test_create_with_ca_constraints_and_not_after(self, tnca, tmp_path) -> None:
        constraints = tmp_path / "constraints.json"
        constraints.write_text(json.dumps({"mustInclude": ["rcd"], "permittedValues": {"crn": ["Support"]}}))
        delegation_id = create(tnca, "--spc", "1234", "--ca", "--constraints", str(constraints),
                               "--not-after", "2099-12-31", "--max-lifetime", "30d")
        shown = json.loads(tnca("delegation", "show", delegation_id, "--json").stdout)
        assert shown["ca"] is True
        assert shown["constraints"]["mustInclude"] == ["rcd"]
        assert shown["constraints"]["permittedValues"] == {"crn": ["Support"]}
        assert shown["not_after"] == "2099-12-31T00:00:00+00:00"

    @pytest.mark.parametrize(
        "args, option, fragment",
        [
            (["--range", "12035550000:100"], "--range", "is not inside the issuing CA's scope"),
            (["--tn", "+12025550100"], "--tn", "'+12025550100'"),
            (["--range", "12025550000"], "--range", "must be START:COUNT"),
            (["--spc", "9999"], "--spc", "is not inside the issuing CA's scope"),
            ([], "--tn/--range/--spc", "at least one TN, range or SPC"),
            (["--tn", "12025550100", "--max-lifetime", "forever"], "--max-lifetime", "expected a duration"),
            (["--tn", "12025550100", "--max-lifetime", "1m"], "--max-lifetime", "below the minimum 5m"),
            (["--tn", "12025550100", "--max-lifetime", "2d"], "--max-lifetime", "exceeds the policy's 1d"),
            (["--tn", "12025550100", "--not-after", "someday"], "--not-after", "expected a date"),
            (["--tn", "12025550100", "--not-after", "2001-01-01"], "--not-after", "must be later than"),
            (["--tn", "12025550100", "--constraints", "/nonexistent.json"], "--constraints", "cannot read"),
        ],
    )
    def test_bad_input_exits_2_naming_the_option_and_writes_nothing(self, tnca, home, args, option, fragment) -> None:
        assert_bad_input(tnca, home, ["delegation", "create", "--delegate", "Bad Input Inc", *args], option, fragment)

    def test_malformed_constraints_file_exits_2(self, tnca, home, tmp_path) -> None:
        bad = tmp_path / "bad.json"
        bad.write_text('{"mustInclude": "rcd"}')
        assert_bad_input(tnca, home, ["delegation", "create", "--delegate", "X", "--tn", "12025550100",
                                      "--constraints", str(bad)], "--constraints", "mustInclude")

    def test_missing_home_is_a_failed_operation(self, tmp_path) -> None:
        from click.testing import CliRunner

        from tnca.cli import cli

        result = CliRunner().invoke(cli, ["--home", str(tmp_path / "none"), "delegation", "list"])
        assert result.exit_code == 1
        assert "is not a tnca home" in result.stderr


class TestDelegationListShowRevoke:
    def test_list_shows_every_delegation(self, tnca) -> None:
        first = create(tnca, "--tn", "12025550201")
        second = create(tnca, "--tn", "12025550202")
        listed = json.loads(tnca("delegation", "list", "--json").stdout)
        ids = [d["id"] for d in listed]
        assert ids.index(first) < ids.index(second)
        text_output = tnca("delegation", "list").stdout
        assert f"{first}  active" in text_output

    def test_show_unknown_id_exits_2(self, tnca, home) -> None:
        assert_bad_input(tnca, home, ["delegation", "show", "nope"], "ID", "no delegation with id 'nope'")

    def test_revoke_is_a_dry_run_by_default(self, tnca, home) -> None:
        """Admin commands print the plan and change nothing without --execute."""
        delegation_id = create(tnca, "--tn", "12025550301")
        before = counts(home)
        result = tnca("delegation", "revoke", delegation_id, "--reason", "contract ended")
        assert result.exit_code == 0, result.output
        assert f"would revoke delegation {delegation_id}" in result.stdout
        assert "status active -> revoked" in result.stdout
        assert "dry run: nothing changed" in result.stdout
        assert counts(home) == before
        assert json.loads(tnca("delegation", "show", delegation_id, "--json").stdout)["status"] == "active"

    def test_revoke_execute_applies_the_plan(self, tnca, home) -> None:
        delegation_id = create(tnca, "--tn", "12025550302")
        result = tnca("delegation", "revoke", delegation_id, "--reason", "contract ended", "--execute", "--json")
        assert result.exit_code == 0, result.output
        answer = json.loads(result.stdout)
        assert answer["executed"] is True
        assert answer["plan"]["delegations"][0]["status_after"] == "revoked"
        shown = json.loads(tnca("delegation", "show", delegation_id, "--json").stdout)
        assert (shown["status"], shown["revocation_reason"]) == ("revoked", "contract ended")
        with home.sessionmaker() as session:
            event = session.scalars(select(models_audit.AuditEvent).where(
                models_audit.AuditEvent.action == "delegation.revoke", models_audit.AuditEvent.subject_id == delegation_id)).one()
            assert event.details["before"]["status"] == "active"

    def test_revoking_twice_is_a_failed_operation(self, tnca, home) -> None:
        delegation_id = create(tnca, "--tn", "12025550303")
        assert tnca("delegation", "revoke", delegation_id, "--reason", "x", "--execute").exit_code == 0
        before = counts(home)
        result = tnca("delegation", "revoke", delegation_id, "--reason", "x", "--execute")
        assert result.exit_code == 1
        assert "is already revoked" in result.stderr
        assert counts(home) == before

    def test_revoke_needs_a_reason(self, tnca, home) -> None:
        delegation_id = create(tnca, "--tn", "12025550304")
        assert_bad_input(tnca, home, ["delegation", "revoke", delegation_id, "--reason", " "], "--reason",
                         "reason is required")

    def test_revoke_unknown_id_exits_2(self, tnca, home) -> None:
        assert_bad_input(tnca, home, ["delegation", "revoke", "nope", "--reason", "x"], "ID", "no delegation")


class TestTokenMint:
    def test_mint_json_prints_token_jti_expires_and_the_token_verifies(self, tnca, home) -> None:
        delegation_id = create(tnca, "--range", "12025550400:100")
        account = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1())).public_key()
        result = tnca("token", "mint", "--delegation", delegation_id, "--fingerprint",
                      fingerprints.account_fingerprint(account), "--tn", "12025550442", "--ttl", "10m", "--json")
        assert result.exit_code == 0, result.output
        answer = json.loads(result.stdout)
        assert set(answer) == {"token", "jti", "expires"}
        expires = dt.datetime.fromisoformat(answer["expires"].replace("Z", "+00:00"))
        assert dt.timedelta(minutes=9) < expires - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(minutes=10)
        # The ACME server's view: the home's own token authority, its x5u answered from memory.
        authority = home.home.token_authority()
        verified = verification.verify(
            answer["token"],
            identifier_scope=TNScope.parse(tns=["12025550442"]),
            account_jwk=account,
            trust=trust_config.trust_from_policy(home.home.policy.tokens, local_authority=authority.certificate),
            clock=SystemClock(),
            fetcher=X5UFetcher(overrides={authority.x5u: [authority.certificate]}),
        )
        assert verified.jti == answer["jti"] and verified.local is True
        with home.sessionmaker() as session:
            assert verification.check_minted_here(session, verified).delegation_id == delegation_id

    def test_mint_without_json_prints_only_the_token_on_stdout(self, tnca) -> None:
        delegation_id = create(tnca, "--range", "12025550500:100")
        result = tnca("token", "mint", "--delegation", delegation_id, "--fingerprint", fingerprint())
        assert result.exit_code == 0, result.output
        assert result.stdout.count(".") == 2 and "\n" == result.stdout[-1] and " " not in result.stdout
        assert "range 12025550500+100" in result.stderr

    def test_ca_token_under_a_sub_delegating_delegation(self, tnca) -> None:
        delegation_id = create(tnca, "--range", "12025550600:100", "--ca")
        result = tnca("token", "mint", "--delegation", delegation_id, "--fingerprint", fingerprint(), "--ca", "--json")
        assert result.exit_code == 0, result.output

    @pytest.mark.parametrize(
        "extra, option, fragment",
        [
            (["--ttl", "48h"], "--ttl", "exceeds the policy maximum 1d"),
            (["--ttl", "0s"], "--ttl", "must be positive"),
            (["--ttl", "soon"], "--ttl", "expected a duration"),
            (["--ca"], "--ca", "does not allow sub-delegation"),
            (["--tn", "12025551999"], "--tn", "is not inside delegation"),
            (["--range", "12025550700:1000"], "--range", "is not inside delegation"),
            (["--spc", "12 34"], "--spc", "SPC"),
        ],
    )
    def test_bad_input_exits_2_naming_the_option_and_writes_nothing(self, tnca, home, extra, option, fragment) -> None:
        delegation_id = create(tnca, "--range", "12025550700:100")
        assert_bad_input(tnca, home, ["token", "mint", "--delegation", delegation_id, "--fingerprint", fingerprint(),
                                      *extra], option, fragment)

    def test_bad_fingerprint_exits_2(self, tnca, home) -> None:
        delegation_id = create(tnca, "--range", "12025550800:100")
        assert_bad_input(tnca, home, ["token", "mint", "--delegation", delegation_id, "--fingerprint", "SHA256 AB"],
                         "--fingerprint", "32 colon-separated hex bytes")

    def test_unknown_delegation_exits_2(self, tnca, home) -> None:
        assert_bad_input(tnca, home, ["token", "mint", "--delegation", "nope", "--fingerprint", fingerprint()],
                         "--delegation", "no delegation with id 'nope'")

    def test_revoked_delegation_exits_2(self, tnca, home) -> None:
        delegation_id = create(tnca, "--range", "12025550900:100")
        assert tnca("delegation", "revoke", delegation_id, "--reason", "x", "--execute").exit_code == 0
        assert_bad_input(tnca, home, ["token", "mint", "--delegation", delegation_id, "--fingerprint", fingerprint()],
                         "--delegation", "is revoked")


class TestTokenMintBatch:
    """``--count N`` / ``--fingerprints-from FILE``: N tokens in one process and one transaction."""

    def test_count_json_prints_one_object_a_line_each_a_distinct_single_use_token(self, tnca, home) -> None:
        delegation_id = create(tnca, "--range", "12025551100:100")
        account = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1())).public_key()
        before = counts(home)
        result = tnca("token", "mint", "--delegation", delegation_id, "--fingerprint",
                      fingerprints.account_fingerprint(account), "--tn", "12025551142", "--count", "3", "--json")
        assert result.exit_code == 0, result.output
        answers = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(answers) == 3 and len({a["jti"] for a in answers}) == 3
        assert all(set(a) == {"token", "jti", "expires", "fingerprint"} for a in answers)
        after = counts(home)
        assert after["authority_tokens"] - before["authority_tokens"] == 3
        assert after["audit_events"] - before["audit_events"] == 3
        authority = home.home.token_authority()
        for answer in answers:
            verified = verification.verify(
                answer["token"], identifier_scope=TNScope.parse(tns=["12025551142"]), account_jwk=account,
                trust=trust_config.trust_from_policy(home.home.policy.tokens, local_authority=authority.certificate),
                clock=SystemClock(), fetcher=X5UFetcher(overrides={authority.x5u: [authority.certificate]}))
            assert verified.jti == answer["jti"]

    def test_fingerprints_from_file_binds_each_token_to_its_line(self, tnca, home) -> None:
        delegation_id = create(tnca, "--range", "12025551200:100")
        wanted = [fingerprint() for _ in range(4)]
        listing = home.work / "fingerprints.txt"
        listing.write_text("\n".join(wanted) + "\n")
        result = tnca("token", "mint", "--delegation", delegation_id, "--fingerprints-from", str(listing), "--json")
        assert result.exit_code == 0, result.output
        assert [json.loads(line)["fingerprint"] for line in result.stdout.splitlines()] == wanted

    def test_without_json_one_token_a_line(self, tnca) -> None:
        delegation_id = create(tnca, "--range", "12025551300:100")
        result = tnca("token", "mint", "--delegation", delegation_id, "--fingerprint", fingerprint(), "--count", "2")
        assert result.exit_code == 0, result.output
        assert [line.count(".") for line in result.stdout.splitlines()] == [2, 2]

    def test_one_bad_fingerprint_refuses_the_whole_batch(self, tnca, home) -> None:
        delegation_id = create(tnca, "--range", "12025551400:100")
        listing = home.work / "bad-fingerprints.txt"
        listing.write_text(f"{fingerprint()}\nSHA256 AB\n")
        assert_bad_input(tnca, home, ["token", "mint", "--delegation", delegation_id, "--fingerprints-from",
                                      str(listing)], "--fingerprints-from", "32 colon-separated hex bytes")

    def test_count_must_match_the_file(self, tnca, home) -> None:
        delegation_id = create(tnca, "--range", "12025551500:100")
        listing = home.work / "two-fingerprints.txt"
        listing.write_text(f"{fingerprint()}\n{fingerprint()}\n")
        assert_bad_input(tnca, home, ["token", "mint", "--delegation", delegation_id, "--fingerprints-from",
                                      str(listing), "--count", "3"], "--count", "the file names 2 fingerprints")

    def test_neither_fingerprint_nor_file_exits_2(self, tnca, home) -> None:
        delegation_id = create(tnca, "--range", "12025551600:100")
        assert_bad_input(tnca, home, ["token", "mint", "--delegation", delegation_id, "--count", "2"],
                         "--fingerprint", "give exactly one of")


def test_console_script_round_trip(dev_home) -> None:  # type: ignore[no-untyped-def]
    """The installed `tnca` script: create, mint, bad input, revoke, each in its own process."""
    created = dev_home.run_subprocess("delegation", "create", "--delegate", "Script Co", "--range", "12025551000:100", "--json")
    assert created.returncode == 0, created.stderr
    delegation_id = json.loads(created.stdout)["id"]
    minted = dev_home.run_subprocess("token", "mint", "--delegation", delegation_id, "--fingerprint", fingerprint(), "--json")
    assert minted.returncode == 0, minted.stderr
    assert json.loads(minted.stdout)["token"].count(".") == 2
    before = dev_home.row_counts()
    bad = dev_home.run_subprocess("token", "mint", "--delegation", delegation_id, "--fingerprint", "nope")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "Error: --fingerprint: fingerprint must be 'SHA256 ' followed by 32 colon-separated "
        "hex bytes (RFC 9448 §5.4), got 'nope'"
    ]
    assert dev_home.row_counts() == before
    revoked = dev_home.run_subprocess("delegation", "revoke", delegation_id, "--reason", "done", "--execute")
    assert revoked.returncode == 0, revoked.stderr
    assert f"revoked delegation {delegation_id}" in revoked.stdout
