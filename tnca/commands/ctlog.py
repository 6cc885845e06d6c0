"""``tnca ctlog serve``: run a standalone RFC 6962 log (the dev stack runs two, dev1 and dev2).

The log lives in HOME/ctlog/NAME/: its P-256 key (private-key.pem, 0600), its public key
(key.pem, for the authority's policy ``[ct] logs``) and its SQLite database (log.db) unless
``--database-url`` names another. It accepts chains to the roots in ``--roots`` (default: the
authority's own root, HOME/certs/root.pem).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import click

from ca.config import ROOT_CERT_FILE
from ca.home import Home
from tnca.context import pass_home

LOG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


@click.group("ctlog")
def command() -> None:
    """A certificate-transparency log service (RFC 6962) for development and tests."""


@command.command("serve")
@click.option("--name", required=True, metavar="NAME", help="The log's name; its files live in HOME/ctlog/NAME/.")
@click.option("--host", default="127.0.0.1", show_default=True, metavar="ADDRESS", help="Address to listen on.")
@click.option("--port", default=8091, show_default=True, type=click.IntRange(0, 65535), metavar="PORT",
              help="Port to listen on; 0 picks a free one (the ready line names it).")
@click.option("--roots", "roots_file", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help=f"PEM file of the accepted roots. Default: HOME/{ROOT_CERT_FILE}.")
@click.option("--database-url", metavar="URL", help="SQLAlchemy URL of the log's database. Default: HOME/ctlog/NAME/log.db.")
@click.option("--merge-delay", default=1.0, show_default=True, type=click.FloatRange(0.05, 86400), metavar="SECONDS",
              help="Maximum merge delay: pending entries are integrated and a tree head signed this often.")
@click.option("--access-log", is_flag=True, help="Log one line per request to stderr.")
@pass_home
def serve_command(home: Home, name: str, host: str, port: int, roots_file: Path | None, database_url: str | None,
                  merge_delay: float, access_log: bool) -> None:
    """Serve the RFC 6962 §4 API under /ct/v1/ and /stict/v1/ until SIGTERM."""
    from ctlog.log import LogConfig
    from ctlog.server import serve

    if not LOG_NAME.fullmatch(name):
        raise click.BadParameter("use letters, digits, '-' and '_' (at most 63)", param_hint="'--name'")
    roots = roots_file or home.path / ROOT_CERT_FILE
    if not roots.is_file():
        raise click.BadParameter(f"{roots} does not exist (run 'tnca init' or pass --roots)", param_hint="'--roots'")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = LogConfig(name=name, directory=home.path / "ctlog" / name, roots_file=roots,
                       database_url=database_url, merge_delay=merge_delay)
    try:
        serve(config, host=host, port=port, access_log=access_log)
    except (ValueError, OSError) as exc:
        raise click.ClickException(f"log {name} cannot start: {exc}") from None
    except RuntimeError as exc:  # its server or integrator thread ended on its own
        raise click.ClickException(str(exc)) from None
