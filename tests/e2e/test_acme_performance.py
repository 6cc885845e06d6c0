"""The SQL statement budget of one ACME issuance (docs/performance.md).

The app runs in this process behind a real werkzeug server so that a ``before_cursor_execute``
listener on the server's engine sees every statement; certbot's client drives the flow over HTTP.
"""

from __future__ import annotations

import collections
import itertools
import re
from pathlib import Path

import pytest
from flask import g, has_request_context, request
from sqlalchemy import event

from protocol.support import TN_SCOPE, Subscriber, app, authority, home, make_csr, port, server  # noqa: F401

pytestmark = pytest.mark.e2e

PERFORMANCE_DOC = Path(__file__).resolve().parents[2] / "docs" / "performance.md"


def recorded_budget() -> int:
    match = re.search(r"^Budget: (\d+) SQL statements per issuance$", PERFORMANCE_DOC.read_text(), re.MULTILINE)
    assert match, "docs/performance.md must state the budget as 'Budget: N SQL statements per issuance'"
    return int(match.group(1))


def test_one_issuance_stays_within_the_recorded_sql_budget_and_repeats_no_lookup(server, authority):
    subscriber = Subscriber(server)
    subscriber.register()
    delegation_id = authority.delegate()
    token = authority.token(delegation_id, subscriber.public_jwk, TN_SCOPE)
    csr_pem, _ = make_csr()

    statements: list[tuple[int, str, str, str]] = []

    requests_seen = itertools.count(1)

    def record(conn, cursor, statement, parameters, context, executemany):
        if has_request_context():
            # A number per request, kept on the request's g (id(g) is reused once a request's g
            # is freed, which merged two requests' statements into one).
            if "budget_request" not in g:
                g.budget_request = next(requests_seen)
            statements.append((g.budget_request, request.path, statement, repr(parameters)))
        else:
            statements.append((0, "-", statement, repr(parameters)))

    engine = server.home.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        orderr = subscriber.new_order(TN_SCOPE.to_identifier_value())
        subscriber.answer(orderr, token)
        finished = subscriber.finalize(orderr, csr_pem)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert finished.fullchain_pem

    budget = recorded_budget()
    listing = "\n".join(f"{path}: {statement.splitlines()[0][:100]}" for _, path, statement, _ in statements)
    assert len(statements) <= budget, f"{len(statements)} statements, budget {budget}:\n{listing}"
    # Every statement ran inside a request of the flow (none from a background task).
    assert all(request_id for request_id, *_ in statements)
    selects = collections.Counter(
        (request_id, statement, parameters) for request_id, _, statement, parameters in statements
        if statement.lstrip().upper().startswith("SELECT")
    )
    repeated = [key for key, count in selects.items() if count > 1]
    assert not repeated, f"the same row was selected twice in one request: {repeated}"
