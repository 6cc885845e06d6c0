"""What every ``tnca`` command receives: the :class:`ca.home.Home` chosen by ``--home``."""

import click

from ca.home import Home

pass_home = click.make_pass_decorator(Home)


class BadInput(click.ClickException):
    """Bad input found after click parsed the options (a malformed file, a scope outside the CA).

    Exit code 2 like click's own usage errors, but printed as ONE line, ``Error: --opt: detail``,
    without the usage text: the detail already names the option and what was wrong.
    """

    exit_code = 2

    def __init__(self, option: str, detail: str) -> None:
        super().__init__(f"{option}: {detail}")
        self.option = option
