"""Orders left ``processing`` by a finalize that will never finish (its process was killed, or it
lost the database half-way): found and reconciled, so no order stays ``processing`` for good and
no client's authority token is burned by the authority's own crash (RFC 8555 §7.1.6: an order is
``processing`` only while the certificate is being made).

Every finalize claims its order (``ca/orders/finalize.py``) with a claim naming its host, its
process (pid and start time, from ``/proc``) and a random part, and commits ``valid`` only while
that claim still stands (one conditional UPDATE). A claim is **abandoned** when

- its process is on this host and no longer runs (kill -9, a crash, the OOM killer);
- its process is this one and no request of it holds the claim any more (the finalize gave up
  after losing the database and could not record it); or
- it is older than :data:`ABANDONED_AFTER`, whatever its host (a host that never came back).

Reconciling an abandoned order (:func:`reconcile`): ``valid`` if a certificate of it was stored
(the certificate row and the order's ``valid`` are one transaction, so this is a safeguard);
otherwise its precertificates left unfinished are marked ``failed`` (they may be in a CT log, and
the row with its error explains the log entry) and the order is ``ready`` again, so the client
finalizes anew with the authorization its token already validated. Each reconciliation is an
audit event (``order.recover``). It runs when ``tnca serve`` starts (:func:`recover_abandoned`)
and whenever an order is loaded for a client (``acme_server/acme/owned.py``), so a worker killed
under a running server is reconciled at the client's next poll.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from ca.clock import Clock
from ca.records import audit
from ca.records.models_acme import Order
from ca.records.models_authority import Certificate
from ca.records.statuses import CertificateStage, OrderStatus
from ca.orders.status import apply_expiry

# A claim this old is abandoned wherever its process runs: far beyond any issuance (the CT
# submission deadline is seconds; gunicorn's worker timeout is 60 s).
ABANDONED_AFTER = dt.timedelta(minutes=5)
AUDIT_ACTION_RECOVER = "order.recover"
_HOST = socket.gethostname()[:64]
_ACTIVE: set[str] = set()  # the claims this process's requests hold right now
_ACTIVE_LOCK = threading.Lock()


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22), which
    tells a live process from a later one that reused its pid; None when it cannot be read."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


@dataclass(frozen=True)
class Claim:
    host: str
    pid: int
    start: str  # "?" when /proc cannot be read
    nonce: str

    def __str__(self) -> str:
        return f"{self.host}/{self.pid}/{self.start}/{self.nonce}"

    @classmethod
    def parse(cls, value: str) -> "Claim | None":
        parts = value.rsplit("/", 3)
        if len(parts) != 4 or not parts[1].isdigit():
            return None
        return cls(host=parts[0], pid=int(parts[1]), start=parts[2], nonce=parts[3])


def new_claim() -> str:
    """A claim for one finalize in this process, registered as held until :func:`release`."""
    pid = os.getpid()
    claim = str(Claim(host=_HOST, pid=pid, start=_start_time(pid) or "?", nonce=secrets.token_hex(6)))
    with _ACTIVE_LOCK:
        _ACTIVE.add(claim)
    return claim


def release(claim: str) -> None:
    """The request that held ``claim`` is over (whatever became of it)."""
    with _ACTIVE_LOCK:
        _ACTIVE.discard(claim)


def is_abandoned(claim_value: str | None, since: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether the finalize that claimed an order can no longer finish it (module docstring)."""
    if claim_value is None or since is None:
        return False  # claimed before claims were recorded: status.expire_order gives it up
    if since + ABANDONED_AFTER <= now:
        return True
    claim = Claim.parse(claim_value)
    if claim is None or claim.host != _HOST or claim.start == "?":
        return False
    if claim.pid == os.getpid() and claim.start == _start_time(claim.pid):
        with _ACTIVE_LOCK:
            return claim_value not in _ACTIVE
    return _start_time(claim.pid) != claim.start


def reconcile(session: Session, order: Order, *, clock: Clock, actor: str = "system:recovery") -> bool:
    """Reconcile ``order`` if it is ``processing`` under an abandoned claim (module docstring).
    Returns True when it changed something; the caller commits."""
    now = clock.now()
    if order.status != OrderStatus.PROCESSING or not is_abandoned(order.processing_claim, order.processing_since, now):
        return False
    claim = order.processing_claim
    # One conditional UPDATE takes the reconciliation: of two requests finding the same abandoned
    # order, one reconciles it, the other leaves it alone.
    taken = session.execute(
        update(Order)
        .where(Order.id == order.id, Order.status == OrderStatus.PROCESSING, Order.processing_claim == claim)
        .values(processing_claim=None, processing_since=None)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:
        return False
    set_committed_value(order, "processing_claim", None)
    set_committed_value(order, "processing_since", None)
    certificates = session.scalars(select(Certificate).where(Certificate.order_id == order.id)).all()
    issued = [c.serial for c in certificates if c.stage == CertificateStage.ISSUED]
    unfinished = [c for c in certificates if c.stage == CertificateStage.PRECERTIFICATE]
    for record in unfinished:
        record.stage = CertificateStage.FAILED
        record.error = ("the finalize issuing it stopped before the certificate was signed (process ended); "
                        "the precertificate may be in the CT logs, no certificate was issued")
    if issued:
        order.status = OrderStatus.VALID
    else:
        order.status = OrderStatus.READY  # the authorizations are as the challenge left them
        apply_expiry(order, now)
    audit.append(
        session, actor=actor, action=AUDIT_ACTION_RECOVER, subject_type="order", subject_id=order.id,
        details={"claim": claim, "status": str(order.status), "issued": issued,
                 "precertificates_failed": [record.serial for record in unfinished]},
        clock=clock,
    )
    return True


def recover_abandoned(session: Session, *, clock: Clock) -> list[str]:
    """Reconcile every abandoned ``processing`` order (``tnca serve`` at start); commits each.
    Returns the ids of the orders reconciled."""
    recovered = []
    orders = session.scalars(
        select(Order).where(Order.status == OrderStatus.PROCESSING).options(selectinload(Order.authorizations))
    ).all()
    for order in orders:
        if reconcile(session, order, clock=clock):
            session.commit()
            recovered.append(order.id)
    return recovered
