"""What every ``tnca`` command receives: the :class:`ca.home.Home` chosen by ``--home``."""

import functools

import click

from ca.errors import PolicyError
from ca.home import Home


def pass_home(command):
    """Hand the command the group's :class:`Home`, its ``tnca.toml`` read first: a setting the
    strict reader refuses ends the command with one line naming ``[section] key`` (exit 1)."""

    @click.pass_context
    @functools.wraps(command)
    def with_home(ctx: click.Context, *args, **kwargs):
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
