"""``tnca worker``: the background worker that keeps STAR orders renewed (RFC 8739).

Every ``--interval`` it issues the next certificate of each STAR order that is due, refreshes the
CRLs that are due and signs an audit checkpoint when one is due (``tnca.worker_loop``, the loop
``tnca dev`` also runs, in a thread of its own process). Run as many as you like against one
PostgreSQL database: each renewal happens once (ca/lifecycle/renewal_worker.py says how).

Prints ``renewal worker started (interval …)`` when ready and one line per tick that did
something. SIGTERM or Ctrl-C stops it after the current tick. Exit codes: 0 after a clean stop
(or one ``--once`` tick), 1 when the home is missing or not initialised, 2 for a bad option.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading

import click

from ca.home import Home
from ca.errors import TNCAError
from ca.policy import format_duration, parse_duration
from tnca.context import pass_home
from tnca.worker_loop import DEFAULT_LIMIT, check_home, run_loop, run_tick

DEFAULT_INTERVAL = "5s"


def _interval(_ctx: click.Context, _param: click.Parameter, value: str) -> dt.timedelta:
    try:
        interval = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if interval < dt.timedelta(seconds=1):
        raise click.BadParameter(f"must be at least 1s, got {value!r}")
    return interval


@click.command("worker")
@click.option("--interval", default=DEFAULT_INTERVAL, show_default=True, metavar="DURATION", callback=_interval,
              help='Time between ticks ("5s", "1m").')
@click.option("--once", is_flag=True, help="Run one tick and exit.")
@click.option("--limit", default=DEFAULT_LIMIT, show_default=True, type=click.IntRange(1, 10000), metavar="N",
              help="STAR orders renewed per tick at most.")
@pass_home
def command(home: Home, interval: dt.timedelta, once: bool, limit: int) -> None:
    """Renew STAR certificates when they are due (RFC 8739) and refresh CRLs."""
    if not home.exists():
        raise click.ClickException(f"{home.path} is not an authority home; run 'tnca --home {home.path} init' first")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        check_home(home)
    except TNCAError as error:
        raise click.ClickException(error.detail) from None

    if once:
        renewed = run_tick(home, limit=limit)
        click.echo(f"renewed {renewed} STAR order(s)")
        return

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    click.echo(f"renewal worker started (interval {format_duration(interval)}, home {home.path})")
    try:
        run_loop(home, interval_seconds=interval.total_seconds(), limit=limit, stop=stop, report=click.echo)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("renewal worker stopped")
