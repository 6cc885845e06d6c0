"""``tnca dev``'s process layout and supervision (tnca/commands/dev.py).

The stack is one process running both dev logs and the renewal worker as threads, with the ACME
server (``tnca serve``: gunicorn) as its one child. When any part stops on its own (the server
exits, a log's HTTP server or integrator thread ends, the worker's thread ends) the stack stops
and ``tnca dev`` fails naming it; a part asked to stop is not a failure.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import click
import pytest
import requests

from bench import proctree
from ctlog import server as ctlog_server
from ctlog.log import LogConfig
from tests.ct.ct_helpers import make_root
from tests.e2e.devhome import dev_stack_process
from tests.protocol.support import free_port, free_port_pair
from tnca.commands.dev import Server, Worker, supervise

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_the_stack_is_one_process_and_the_server_and_fails_when_the_server_exits(tmp_path, session_factory,
                                                                                   database_url):
    port = free_port()
    ct_port = free_port_pair(avoid=port)
    env = {**os.environ, "TNCA_DATABASE_URL": database_url}
    tnca = [sys.executable, "-m", "tnca", "--home", str(tmp_path / "dev-home")]
    subprocess.run([*tnca, "init", "--base-url", f"http://127.0.0.1:{port}"], check=True, env=env,
                   capture_output=True, cwd=REPO)
    with dev_stack_process([*tnca, "dev", "--ct-port", str(ct_port), "--workers", "1"], env=env,
                           cwd=REPO) as (dev, banner):
        # The one child is the ACME server; gunicorn's worker is its child, not tnca dev's.
        children = proctree.children(dev.pid)
        assert len(children) == 1 and " serve " in next(iter(children.values())), children
        (server_pid,) = children
        assert len(proctree.children(server_pid)) == 1
        # Both logs are threads of tnca dev (a log's request threads inherit its name) and answer.
        threads = proctree.thread_names(dev.pid)
        assert {"ctlog dev1", "ctlog dev2", "renewal worker"} <= set(threads), threads
        for name, url in re.findall(r"^  CT log (dev\d):\s+(\S+)$", banner, re.M):
            sth = requests.get(f"{url}ct/v1/get-sth", timeout=10)
            assert sth.status_code == 200 and "tree_size" in sth.json(), (name, sth.text)
        assert url == f"http://127.0.0.1:{ct_port + 1}/"

        os.kill(server_pid, signal.SIGTERM)  # gunicorn stops gracefully, exit code 0
        rest, _ = dev.communicate(timeout=60)
    assert dev.returncode == 1
    assert "Error: the ACME server exited with code 0; stopping the stack" in rest


# -- supervision, part by part ----------------------------------------------------------------


class _Running:
    """A part that runs for ``healthy`` looks, then reports a failure."""

    def __init__(self, healthy: int) -> None:
        self.looks, self.healthy = 0, healthy

    def failure(self) -> str | None:
        self.looks += 1
        return None if self.looks <= self.healthy else "the test part stopped"


def test_supervise_keeps_looking_until_a_part_stops():
    part = _Running(healthy=3)
    with pytest.raises(click.ClickException, match=r"^the test part stopped; stopping the stack$"):
        supervise([_Running(healthy=10**9), part], interval=0)
    assert part.looks == 4


def test_a_worker_thread_that_raises_stops_the_stack_naming_the_error():
    def loop(_stop: threading.Event) -> None:
        raise RuntimeError("database gone")

    worker = Worker("renewal worker", loop)
    assert worker.failure() is None  # not started yet
    worker.start()
    worker.thread.join()
    with pytest.raises(click.ClickException) as raised:
        supervise([worker], interval=0)
    assert raised.value.message == "the renewal worker failed: RuntimeError('database gone'); stopping the stack"


def test_a_worker_asked_to_stop_is_not_a_failure_and_one_that_returns_on_its_own_is():
    worker = Worker("renewal worker", lambda stop: stop.wait())
    worker.start()
    assert worker.failure() is None
    worker.stop()
    assert not worker.thread.is_alive() and worker.failure() is None

    returned = Worker("renewal worker", lambda _stop: None)
    returned.start()
    returned.thread.join()
    assert returned.failure() == "the renewal worker stopped"


def test_a_server_that_exits_is_a_failure_with_its_exit_code():
    server = Server(subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]))
    server.process.wait()
    assert server.failure() == "the ACME server exited with code 3"


@pytest.fixture
def log_config(tmp_path: Path) -> LogConfig:
    roots = tmp_path / "roots.pem"
    roots.write_bytes(make_root().pem)
    return LogConfig(name="t1", directory=tmp_path / "t1", roots_file=roots, merge_delay=0.05)


def test_a_log_whose_http_server_ends_is_a_failure(log_config):
    running = ctlog_server.start(log_config, host="127.0.0.1", port=0)
    try:
        assert running.failure() is None
        assert requests.get(f"{running.url}ct/v1/get-sth", timeout=10).status_code == 200
        running.server.shutdown()  # serve_forever() returns: the log no longer answers
        running.serving.join()
        assert running.failure() == "log t1: its HTTP server stopped"
    finally:
        running.stop()
    assert running.failure() is None  # stopped on purpose


def test_a_log_whose_integrator_ends_is_a_failure(log_config):
    running = ctlog_server.start(log_config, host="127.0.0.1", port=0)
    try:
        running.integrator.stop()
        running.integrator.join()
        assert running.failure() == (
            "log t1: its integrator thread stopped (entries would wait past the merge delay)")
    finally:
        running.stop()
