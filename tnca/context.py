"""What every ``tnca`` command shares: the :class:`ca.home.Home` chosen by ``--home``, the
audit actor, the one-transaction rule and the bad-input error.

Helpers that more than one command uses live here, in ``tnca/options.py`` (option parsing), in
``tnca/output.py`` (printing) or in ``tnca/worker_loop.py`` (the renewal worker's loop, which
``tnca worker`` and ``tnca dev`` run); a command never imports from a sibling command.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
from collections.abc import Iterator

import click
from sqlalchemy.orm import Session

from ca.errors import PolicyError
from ca.home import Home


def pass_home(command):  # type: ignore[no-untyped-def]
    """Hand the command the group's :class:`Home`, its ``tnca.toml`` read first: a setting the
    strict reader refuses ends the command with one line naming ``[section] key`` (exit 1)."""

    @click.pass_context
    @functools.wraps(command)
    def with_home(ctx: click.Context, *args, **kwargs):  # type: ignore[no-untyped-def]
        home = ctx.find_object(Home)
        try:
            home.config
        except PolicyError as error:
            raise click.ClickException(error.detail) from None
        return ctx.invoke(command, home, *args, **kwargs)

    return with_home


class BadInput(click.ClickException):
    """Bad input found after click parsed the options (a malformed file, a scope outside the CA).

    Exit code 2 like click's own usage errors, but printed as ONE line, ``Error: --opt: detail``,
    without the usage text: the detail already names the option and what was wrong.
    """

    exit_code = 2

    def __init__(self, option: str, detail: str) -> None:
        super().__init__(f"{option}: {detail}")
        self.option = option


def cli_actor() -> str:
    """Who the audit log names for a command-line change."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli"


def require_home(home: Home) -> None:
    """Fail (exit 1) before any work when ``--home`` is not an initialised authority home."""
    if not home.exists():
        raise click.ClickException(f"{home.path} is not a tnca home; run 'tnca --home {home.path} init' first")


@contextlib.contextmanager
def transaction(home: Home) -> Iterator[Session]:
    """One transaction for the whole command; any error rolls it back, so nothing is half-written."""
    require_home(home)
    with home.sessionmaker() as session, session.begin():
        yield session
