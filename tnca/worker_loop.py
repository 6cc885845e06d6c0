"""The renewal worker's loop, shared by ``tnca worker`` (a process of its own, as production
runs it) and ``tnca dev`` (a thread of the development stack's process).

Every interval it issues the next certificate of each STAR order that is due (RFC 8739 §3.1.3;
``ca.lifecycle.renewal_worker.renew_due``: through the whole issuance pipeline, CT included, with
the audit event), signs a fresh CRL for each issuer whose CRL is due
(``ca.lifecycle.crl.refresh_due``), and signs an audit checkpoint when one is due
(``ca.lifecycle.renewal_worker.checkpoint_if_due``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ca.errors import TNCAError
from ca.home import Home
from ca.lifecycle import crl, renewal_worker

# Orders renewed per tick at most; the rest are due again at the next tick.
DEFAULT_LIMIT = 100

log = logging.getLogger("tnca.worker")


def check_home(home: Home) -> None:
    """Load what every tick needs, so that a broken home fails at start with a readable
    :class:`TNCAError` rather than at the first due order: the issuing CA, the CT logs' keys."""
    home.issuing_ca()
    home.transparency()


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


def run_loop(home: Home, *, interval_seconds: float, limit: int, stop: threading.Event,
             report: Callable[[str], None]) -> None:
    """Tick every ``interval_seconds`` until ``stop`` is set (a tick under way finishes first).
    A failed tick (the database went away, a bug) is logged and retried at the next one, so the
    loop itself only ends when asked to; ``report`` gets one line per tick that renewed."""
    while not stop.is_set():
        try:
            renewed = run_tick(home, limit=limit)
        except Exception:
            log.exception("worker tick failed; retrying in %gs", interval_seconds)
        else:
            if renewed:
                report(f"renewed {renewed} STAR order(s)")
        stop.wait(interval_seconds)
