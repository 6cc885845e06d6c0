"""``tnca worker``: the background worker that keeps STAR orders renewed (RFC 8739).

Every ``--interval`` it issues the next certificate of each STAR order that is due
(``ca.lifecycle.renewal_worker.renew_due``: through the whole issuance pipeline, CT included, with the audit
event), signs a fresh CRL for each issuer whose CRL is due (``ca.lifecycle.crl.refresh_due``), and
signs an audit checkpoint when one is due (``ca.lifecycle.renewal_worker.checkpoint_if_due``). Run
as many as you like against one PostgreSQL database: each renewal happens once (ca/lifecycle/renewal_worker.py
says how). ``tnca dev`` starts one.

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

from ca.lifecycle import crl, renewal_worker
from ca.home import Home
from ca.errors import TNCAError
from ca.policy import format_duration, parse_duration
from tnca.context import pass_home

DEFAULT_INTERVAL = "5s"
# Orders renewed per tick at most; the rest are due again at the next tick.
DEFAULT_LIMIT = 100

log = logging.getLogger("tnca.worker")


def _interval(_ctx: click.Context, _param: click.Parameter, value: str) -> dt.timedelta:
    try:
        interval = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if interval < dt.timedelta(seconds=1):
        raise click.BadParameter(f"must be at least 1s, got {value!r}")
    return interval


def run_tick(home: Home, *, limit: int) -> int:
    """One tick: renew what is due, refresh the CRLs that are due, sign an audit checkpoint when
    one is due. Returns renewals issued."""
    renewed = renewal_worker.renew_due(home.sessionmaker, home, clock=home.clock, limit=limit)
    with home.sessionmaker() as session:
        crl.refresh_due(session, home, home.clock)  # commits each CRL it signs
    try:
        renewal_worker.checkpoint_if_due(home, clock=home.clock)
    except TNCAError as error:  # no root key on this host for the first audit certificate, say
        log.warning("no audit checkpoint signed: %s", error.detail)
    return renewed


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
        # Fail here, with a readable message, rather than at the first due order.
        home.issuing_ca()
        home.transparency()  # the CT logs' keys
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
        while not stop.is_set():
            try:
                renewed = run_tick(home, limit=limit)
            except Exception:  # the database went away, a bug: log it and try again next tick
                log.exception("worker tick failed; retrying in %s", format_duration(interval))
            else:
                if renewed:
                    click.echo(f"renewed {renewed} STAR order(s)")
            stop.wait(interval.total_seconds())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("renewal worker stopped")
