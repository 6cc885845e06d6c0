"""What the load-and-fault tests under tests/e2e share: ``tnca serve`` as a process group that can
be killed and started again on the same port, and an ACME client that resumes its order after any
failure (tests/e2e/test_crash_safety.py, tests/e2e/test_postgres_restart.py)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from acme import errors as acme_errors
from acme import messages

from bench.soak import process_tree
from tests.e2e.devhome import TNCA_SCRIPT
from tests.helpers import free_port
from tnca.acme_client import STIRClient

WORKERS = 3
THREADS = 4
JOB_DEADLINE_SECONDS = 150.0


# -- the server, killed and restarted --------------------------------------------------------------

class Server:
    """``tnca serve`` in its own process group, so one killpg reaches the master and its workers."""

    def __init__(self, home: Path, env: dict[str, str], log_path: Path, *, workers: int = WORKERS) -> None:
        self.workers_count = workers
        self.home, self.env, self.port = home, env, free_port()
        # Every URL the server hands out, the tokens' x5u included, names this port.
        config = home / "tnca.toml"
        text = config.read_text()
        assert 'base_url = "http://127.0.0.1:8080"' in text
        config.write_text(text.replace('base_url = "http://127.0.0.1:8080"', f'base_url = "http://127.0.0.1:{self.port}"'))
        self.log = open(log_path, "ab")  # noqa: SIM115 (closed in stop)
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def directory_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/acme/directory"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(TNCA_SCRIPT), "--home", str(self.home), "serve", "--port", str(self.port),
             "--workers", str(self.workers_count), "--threads", str(THREADS)],
            stdout=self.log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.starts += 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"tnca serve exited with {self.process.returncode}; see {self.log.name}")
            try:
                requests.get(self.directory_url, timeout=2)
                return
            except requests.RequestException:
                time.sleep(0.1)
        pytest.fail("tnca serve did not answer within 60 s")

    def workers(self) -> list[int]:
        assert self.process is not None
        return [pid for pid in process_tree([self.process.pid]) if pid != self.process.pid]

    def kill_worker(self, rng: random.Random) -> bool:
        """SIGKILL to a random worker (waiting up to 10 s for the master to have one)."""
        deadline = time.monotonic() + 10
        while not (workers := self.workers()):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        os.kill(rng.choice(workers), signal.SIGKILL)
        return True

    def kill_all(self) -> None:
        """SIGKILL to the master and every worker at once (no graceful anything)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGKILL, like every other end of this server in these tests: a graceful shutdown
        would only make the teardown wait."""
        if self.process is not None and self.process.poll() is None:
            self.kill_all()
        self.log.close()


# -- a client that resumes its own order after any failure -----------------------------------------

@dataclass
class Outcome:
    chain: str | None = None
    failure: str | None = None
    transient: Counter = field(default_factory=Counter)


TRANSIENT = (requests.RequestException, acme_errors.ClientError, messages.Error, ValueError)


def _kind(error: BaseException) -> str:
    if isinstance(error, messages.Error):
        return f"acme:{error.code}"
    if isinstance(error, acme_errors.ClientError) and error.args and isinstance(error.args[0], requests.Response):
        return f"http:{error.args[0].status_code}"  # an error without a JSON body (newNonce is HEAD)
    return type(error).__name__


def connect(directory_url: str, key) -> STIRClient:
    """A client with its account: new, or the existing one (RFC 8555 §7.3.1: 200 and its URL,
    which certbot's ``acme`` raises as ConflictError) when an earlier answer was lost."""
    client = STIRClient.connect(directory_url, key, user_agent="tnca-crash-test")
    try:
        client.register(terms_of_service_agreed=True)
    except acme_errors.ConflictError as exists:
        client.acme.net.account = messages.RegistrationResource(uri=exists.location, body=messages.Registration())
    return client


def run_job(directory_url: str, job, csr_pem: bytes) -> Outcome:
    """One issuance to the end, surviving the server's deaths. Without failures it sends what a
    plain client sends (no extra polls); after any failure it looks at the order again and does
    what its status asks. Gives up only on an invalid order or the deadline."""
    key, identifier, token = job
    outcome = Outcome()
    deadline = time.monotonic() + JOB_DEADLINE_SECONDS
    client = None
    orderr = None
    body = None  # the order as last seen; None: poll it
    while time.monotonic() < deadline:
        try:
            if client is None:
                client = connect(directory_url, key)
            if orderr is None:
                orderr = client.new_order(identifier)
                body = orderr.body
            if body is None:
                body = client.poll(orderr)
            if body.status == messages.STATUS_VALID:
                outcome.chain = client.acme._post_as_get(body.certificate).text
                return outcome
            if body.status == messages.STATUS_INVALID:
                authz = client.acme._post_as_get(body.authorizations[0]).json()
                outcome.failure = (f"order {orderr.uri} invalid: {body.error}; challenge errors "
                                   f"{[c.get('error') for c in authz.get('challenges', [])]}; errors {dict(outcome.transient)}")
                return outcome
            if body.status == messages.STATUS_PENDING:
                answered = client.answer(orderr, token)
                # One authorization per order: a valid challenge makes the order ready.
                body = body.update(status=messages.STATUS_READY) if answered.body.status == messages.STATUS_VALID else None
            elif body.status == messages.STATUS_READY:
                body = None
                body = client.acme.begin_finalization(orderr.update(csr_pem=csr_pem)).body
            else:  # processing (RFC 8555 §7.4): poll again after Retry-After (1 s)
                time.sleep(1.0)
                body = None
        except TRANSIENT as error:
            body = None
            outcome.transient[_kind(error)] += 1
            if isinstance(error, messages.Error) and error.code in ("unauthorized", "malformed", "badCSR"):
                outcome.failure = f"refused: {error}"
                return outcome
            time.sleep(0.3)
    outcome.failure = (f"not done within {JOB_DEADLINE_SECONDS:g} s (order {orderr.uri if orderr else None}; "
                       f"errors {dict(outcome.transient)})")
    return outcome
