"""Several renewal workers against one database: each renewal happens exactly once.

ca/lifecycle/renewal_worker.py claims due orders with ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)``
on PostgreSQL (SQLite: its write lock serializes the claim) and fences each renewal on its claim.
Run with ``TNCA_TEST_DATABASE_URL`` naming PostgreSQL for the multi-worker case that matters in
production; on SQLite the same tests check that serialized workers agree too.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from sqlalchemy import func, select

from ca.lifecycle import renewal_worker
from ca.records import audit
from ca.clock import FixedClock
from ca.records.models_acme import Order
from ca.records.models_authority import Certificate
from ca.numbers.tnauthlist import TNScope
from protocol.rfc8739.star_support import auto_renewal, star_valid_order
from protocol.support import DELEGATED_SCOPE, app, authority, client, home, port, registered  # noqa: F401  (fixtures)

ORDERS = 6

# One worker process: wait for the start signal, run one tick at the given time, print the count.
WORKER_SCRIPT = """
import datetime as dt, pathlib, sys, time
from ca.lifecycle import renewal_worker
from ca.clock import FixedClock
from ca.home import Home
home = Home(sys.argv[1])
home.issuing_ca()  # load keys and open the database before the race starts
go = pathlib.Path(sys.argv[3])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.005)
print(renewal_worker.renew_due(home.sessionmaker, home, clock=FixedClock(dt.datetime.fromisoformat(sys.argv[2]))), flush=True)
"""


def due_star_orders(registered, authority, count: int) -> tuple[list[str], object]:  # noqa: F811
    """``count`` valid STAR orders for distinct numbers, and the time all of them are due."""
    delegation_id = authority.delegate()
    order_ids = []
    for index in range(count):
        scope = TNScope.parse(tns=[f"120255502{index:02d}"])
        assert DELEGATED_SCOPE.contains(scope)
        order = star_valid_order(registered, authority, auto_renewal(), scope=scope, delegation_id=delegation_id)
        order_ids.append(order.url.rsplit("/", 1)[1])
    with authority.session_factory() as session:
        latest = session.scalar(select(func.max(Order.next_renewal_at)).where(Order.id.in_(order_ids)))
    return order_ids, latest


def issued_per_order(session_factory, order_ids: list[str]) -> dict[str, int]:
    with session_factory() as session:
        rows = session.execute(
            select(Certificate.order_id, func.count())
            .where(Certificate.order_id.in_(order_ids), Certificate.stage == "issued")
            .group_by(Certificate.order_id)
        ).all()
    return dict(rows)


def test_worker_processes_racing_renew_each_due_order_exactly_once(registered, authority, home, session_factory, tmp_path):  # noqa: F811
    order_ids, due = due_star_orders(registered, authority, ORDERS)
    go = tmp_path / "go"
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, str(home.path), due.isoformat(), str(go)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
        for _ in range(3)
    ]
    try:
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready", worker.stderr.read()
        go.touch()
        counts = [int(worker.communicate(timeout=120)[0].strip()) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert sum(counts) == ORDERS, counts
    assert issued_per_order(session_factory, order_ids) == {order_id: 2 for order_id in order_ids}
    with session_factory() as session:
        assert audit.verify(session) > 0  # concurrent appends kept one unbroken chain
        assert session.scalars(select(Order.renewal_claim).where(Order.id.in_(order_ids))).all() == [None] * ORDERS


def test_worker_threads_racing_renew_each_due_order_exactly_once(registered, authority, home, session_factory):  # noqa: F811
    """Eight workers, one claim each of at most two orders, started together."""
    order_ids, due = due_star_orders(registered, authority, ORDERS)
    start = threading.Barrier(8)
    counts: list[int] = []
    failures: list[BaseException] = []

    def work() -> None:
        try:
            start.wait(timeout=30)
            counts.append(renewal_worker.renew_due(session_factory, home, clock=FixedClock(due), limit=2))
        except BaseException as error:  # surfaced below
            failures.append(error)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert sum(counts) == ORDERS, counts
    assert issued_per_order(session_factory, order_ids) == {order_id: 2 for order_id in order_ids}


def test_a_second_tick_at_the_same_time_finds_nothing_due(registered, authority, home, session_factory):  # noqa: F811
    order_ids, due = due_star_orders(registered, authority, 2)
    assert renewal_worker.renew_due(session_factory, home, clock=FixedClock(due)) == 2
    assert renewal_worker.renew_due(session_factory, home, clock=FixedClock(due)) == 0
    assert issued_per_order(session_factory, order_ids) == {order_id: 2 for order_id in order_ids}
