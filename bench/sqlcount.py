"""SQL statements and server CPU per step of an issuance, on the benchmark's own home and database.

The timed server runs in other processes, whose statements this process cannot see; so after
the window the benchmark serves the same home (same database, same policy, the same two CT logs
still running) with the ACME app in this process, behind a real werkzeug server on loopback,
and runs bench/client.py's whole flow (7 requests) a few times with a ``before_cursor_execute``
listener on the app's engine. Account creation and the token are made before counting starts.
SAVEPOINT/RELEASE count; BEGIN/COMMIT do not (they are not cursor executions).

The same runs give the ACME server's own CPU per step: a WSGI wrapper reads the CPU clock of the
thread handling each request (``time.thread_time``) around the app, so the client in this process
is not counted; the CT logs, in their own processes, are not either. One client at a time, no
contention: the floor of what each request costs the ACME workers.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import socket
import threading
import time
from pathlib import Path

import josepy as jose
from acme import client as acme_client
from acme import messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import event
from werkzeug.serving import make_server

from bench.client import STEPS, Flow
from ca.home import BASE_URL_ENV, Home
from ca.numbers.tnauthlist import TNScope
from ca.records import delegations
from ca.tokens import fingerprints, minting


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def count(home_path: Path, delegation_id: str, number: str, issuances: int = 11) -> dict:
    """Statements per issuance (the last of ``issuances`` runs, caches warm) and per step; the
    ACME server's CPU per step, averaged over all runs but the first."""
    from acme_server import create_app  # the web layer only here: the bench's parent stays light

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log lines in the summary
    port = _free_port()
    previous = os.environ.get(BASE_URL_ENV)
    os.environ[BASE_URL_ENV] = f"http://127.0.0.1:{port}"
    home = Home(home_path)
    try:
        app = create_app(home)
        cpu: list[float] = []

        def timed(environ, start_response):  # type: ignore[no-untyped-def]
            started = time.thread_time()
            try:
                return app(environ, start_response)
            finally:
                cpu.append(time.thread_time() - started)

        httpd = make_server("127.0.0.1", port, timed, threaded=True)
        thread = threading.Thread(target=httpd.serve_forever, name="sql-count-server", daemon=True)
        thread.start()
        try:
            return _run(home, port, delegation_id, number, issuances, cpu)
        finally:
            httpd.shutdown()
            httpd.server_close()
    finally:
        home.close()
        if previous is None:
            os.environ.pop(BASE_URL_ENV, None)
        else:
            os.environ[BASE_URL_ENV] = previous


def _run(home: Home, port: int, delegation_id: str, number: str, issuances: int, cpu: list[float]) -> dict:
    directory_url = f"http://127.0.0.1:{port}/acme/directory"
    net = acme_client.ClientNetwork(None, user_agent="tnca-bench")  # type: ignore[arg-type]
    directory = messages.Directory.from_json(net.get(directory_url).json())
    scope = TNScope.parse(tns=[number])
    flows = []
    with home.sessionmaker() as session:
        delegation = delegations.get(session, delegation_id)
        for _ in range(issuances):
            key = ec.generate_private_key(ec.SECP256R1())
            minted = minting.mint(
                session, delegation=delegation, scope=scope, ca=False, ttl=dt.timedelta(hours=1),
                fingerprint=fingerprints.account_fingerprint(jose.JWKEC(key=key.public_key())),
                authority=home.token_authority(), clock=home.clock, actor="bench")
            key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
            flows.append(Flow(directory, key_pem, minted.token, scope.to_identifier_value()))
        session.commit()
    for flow in flows:
        flow.register()

    per_step: collections.Counter[str] = collections.Counter()
    cpu_per_step: collections.defaultdict[str, float] = collections.defaultdict(float)
    statements: list[str] = []
    current = {"step": STEPS[0]}

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)
        per_step[current["step"]] += 1

    def on_step(name: str) -> None:
        cpu_per_step[name] += sum(cpu)  # the requests this step made (polls may make several)
        cpu.clear()
        index = STEPS.index(name)
        current["step"] = STEPS[index + 1] if index + 1 < len(STEPS) else "after"

    totals = []
    for number_of_run, flow in enumerate(flows):
        if number_of_run == 1:  # the first run warms the process's caches; not averaged
            cpu_per_step.clear()
        cpu.clear()
        per_step.clear()
        statements.clear()
        current["step"] = STEPS[0]
        event.listen(home.engine, "before_cursor_execute", record)
        try:
            flow.issue(on_step)
        finally:
            event.remove(home.engine, "before_cursor_execute", record)
            flow.net.session.close()
        totals.append(len(statements))
    averaged = max(1, len(flows) - 1)
    return {"per_issuance": totals[-1], "runs": totals, "per_step": {step: per_step[step] for step in STEPS},
            "acme_cpu_ms_per_step": {step: round(cpu_per_step[step] / averaged * 1000, 2) for step in STEPS},
            "acme_cpu_ms_per_issuance": round(sum(cpu_per_step.values()) / averaged * 1000, 2),
            "statements": [s.splitlines()[0][:120] for s in statements]}
