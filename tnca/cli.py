"""The ``tnca`` command line: one group that owns ``--home`` and hands a :class:`Home` on.

Exit codes: 0 success, 1 a failed operation (``click.ClickException``), 2 bad input
(``click.BadParameter`` / ``click.UsageError``, naming the option).
"""

from __future__ import annotations

import importlib

import click

from ca.home import Home

# Each module defines one click command or group named ``command``, named as the module.
COMMAND_MODULES = (
    "init", "cert", "delegation", "eab", "revoke", "crl", "token", "serve", "worker", "star", "ctlog", "ct", "dev", "user", "audit",
    "stipa", "verify", "monitor",
)


class LazyGroup(click.Group):
    """A group whose commands are imported when named, not all at start: ``tnca ctlog serve``,
    ``tnca worker`` and ``tnca dev`` (long-lived processes; ``tnca dev`` runs the first two's work
    in threads of its own) never import the other commands' modules, and each process stays
    smaller (docs/performance.md)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMAND_MODULES:
            return None
        return importlib.import_module(f"tnca.commands.{cmd_name}").command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    envvar="TNCA_HOME",
    default="./tnca-home",
    show_default=True,
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="The authority's home directory (config, database, keys). Env: TNCA_HOME.",
)
@click.pass_context
def cli(ctx: click.Context, home: str) -> None:
    """tnca: a delegate-certificate authority for telephone numbers."""
    ctx.obj = Home(home)
    ctx.call_on_close(ctx.obj.close)


def main() -> None:
    cli(prog_name="tnca")
