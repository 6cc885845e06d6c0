"""Durations given to the CLI are bad input whatever their size: exit 2 naming the option, nothing
written. An unbounded "99999999999999d" used to raise OverflowError (not ValueError) where it
was added to a time or made into a timedelta: a traceback instead of a clear error."""

from __future__ import annotations

import pytest

from tests.e2e.test_delegation_cli import create

pytestmark = pytest.mark.e2e

HUGE = ["99999999999999d", "9" * 5000 + "s", "36501d"]


def assert_bad_input(tnca, home, args: list[str], option: str, fragment: str) -> None:  # type: ignore[no-untyped-def]
    """Exit 2, an error line naming the option and what is wrong, nothing printed or written."""
    before = home.row_counts()
    result = tnca(*args)
    assert result.exit_code == 2, result.output
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: ") and option in error and fragment in error, result.stderr
    assert len(error) < 300, error  # the input is not echoed whole
    assert result.stdout == ""
    assert home.row_counts() == before


@pytest.fixture
def tnca(dev_home):  # type: ignore[no-untyped-def]
    return dev_home.run


@pytest.mark.parametrize("huge", HUGE)
def test_delegation_max_lifetime(tnca, dev_home, huge) -> None:
    assert_bad_input(tnca, dev_home, ["delegation", "create", "--delegate", "X", "--tn", "12025550100",
                                      "--max-lifetime", huge], "--max-lifetime", "longest duration accepted")


@pytest.mark.parametrize("huge", HUGE)
def test_token_ttl(tnca, dev_home, huge) -> None:
    delegation_id = create(tnca, "--tn", "12025550101")
    assert_bad_input(tnca, dev_home, ["token", "mint", "--delegation", delegation_id, "--fingerprint",
                                      "SHA256 " + ":".join(["AA"] * 32), "--ttl", huge], "--ttl",
                     "longest duration accepted")


@pytest.mark.parametrize("huge", HUGE)
def test_user_token_expires(tnca, dev_home, huge) -> None:
    result = tnca("user", "add", "dana", "--role", "auditor", "--generate-password")
    assert result.exit_code == 0, result.output
    assert_bad_input(tnca, dev_home, ["user", "token-create", "dana", "--label", "script", "--expires", huge],
                     "--expires", "longest duration accepted")


@pytest.mark.parametrize("huge", HUGE)
def test_audit_checkpoint_interval(tnca, dev_home, huge) -> None:
    assert_bad_input(tnca, dev_home, ["audit", "checkpoint", "--if-due", "--interval", huge], "--interval",
                     "longest duration accepted")


@pytest.mark.parametrize("huge", HUGE)
def test_worker_interval(tnca, dev_home, huge) -> None:
    assert_bad_input(tnca, dev_home, ["worker", "--once", "--interval", huge], "--interval",
                     "longest duration accepted")
