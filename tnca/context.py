"""What every ``tnca`` command receives: the :class:`ca.config.Home` chosen by ``--home``."""

import click

from ca.config import Home

pass_home = click.make_pass_decorator(Home)
