"""The database goes away under a running server (a PostgreSQL restart or failover): clients get a
retryable problem, 503 with ``Retry-After`` (RFC 9110 §10.2.3), never a bare 500, and the server
recovers by itself."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from acme_server.nonces import NonceStore
from acme_server.state import EXTENSION_KEY
from ca.records import store
from protocol.support import TN_SCOPE, table_counts
from tests.helpers import free_port


def test_s6_7_an_unreachable_database_is_a_retryable_503_problem(app, client):
    """The nonce store's engine pointed at a port where no database listens: the driver's own
    OperationalError, answered as 503 serverInternal with Retry-After, and nothing else breaks."""
    state = app.extensions[EXTENSION_KEY]
    working = state.nonces
    unreachable = store.make_engine(f"postgresql+psycopg://tnca@127.0.0.1:{free_port()}/none?connect_timeout=2")
    state.nonces = NonceStore(unreachable, lifetime=state.policy.acme.nonce_lifetime, clock=state.clock)
    try:
        response = client.get("/acme/new-nonce")
    finally:
        state.nonces = working
        unreachable.dispose()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    problem = response.get_json(force=True)
    assert problem["type"] == "urn:ietf:params:acme:error:serverInternal"
    assert "the database is unavailable for a moment" in problem["detail"]
    assert "Replay-Nonce" not in response.headers
    assert client.get("/acme/new-nonce").status_code == 204  # back as soon as the database is


def _terminate_every_other_connection(database_url: str) -> int:
    killer = create_engine(database_url)
    try:
        with killer.connect() as connection:
            return len(connection.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )).all())
    finally:
        killer.dispose()


def test_s6_7_after_its_connections_were_terminated_the_server_recovers_without_a_restart(
    registered, client, home, engine, database_url, session_factory
):
    if not database_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL: its server connections are terminated from outside, as a restart does")
    payload = {"identifiers": [{"type": "TNAuthList", "value": TN_SCOPE.to_identifier_value()}]}
    assert registered.post("/acme/new-order", payload).status_code == 201  # the server's pool is warm
    assert _terminate_every_other_connection(database_url) >= 1
    engine.dispose()  # the test's own pool lost its connections too

    # Handing out a nonce touches no database (acme_server/nonces.py): the first signed request
    # meets the dead pooled connection. It, and any retry before the pool has been replaced, gets
    # the retryable problem; then the request succeeds.
    before = table_counts(session_factory)
    statuses = []
    for _ in range(5):
        response = registered.post("/acme/new-order", payload)
        statuses.append(response.status_code)
        if response.status_code == 201:
            break
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.headers["Retry-After"] == "2"
        problem = response.get_json(force=True)
        assert problem["type"] == "urn:ietf:params:acme:error:serverInternal"
        assert "the database is unavailable for a moment" in problem["detail"]
    assert statuses[-1] == 201, statuses
    assert 503 in statuses  # the dead connection was met, not skipped
    # Recovered without a restart: exactly the one order, nothing half-written by the failures.
    assert table_counts(session_factory)["orders"] == before["orders"] + 1


def test_s6_7_a_connection_lost_after_the_answer_was_made_does_not_turn_it_into_a_500(app, engine, database_url):
    """The database restarted between a request's last query and the end of the request: closing
    its session (a ROLLBACK on the dead connection) raised, and the teardown's exception replaced
    the answer already made by a bodiless 500 (seen under load by tests/e2e/test_postgres_restart.py).
    The dead connection is discarded instead; the next request connects afresh."""
    if not database_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL: its server connections are terminated from outside, as a restart does")
    from acme_server.state import close_db_session, db_session

    with app.app_context():
        session = db_session()
        session.execute(text("SELECT 1"))  # the request's transaction is open on a connection
        assert _terminate_every_other_connection(database_url) >= 1
        engine.dispose()  # the test's own pool lost its connections too
        close_db_session()  # raised OperationalError before
    assert app.test_client().get("/acme/new-nonce").status_code in (204, 503)
    assert app.test_client().get("/acme/new-nonce").status_code == 204
