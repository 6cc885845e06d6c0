"""``tnca dev``: the whole development stack in one command (what ``make run`` runs).

It creates the home on first use (``tnca init`` with the development scope), starts two local
RFC 6962 logs (``dev1`` and ``dev2``), points the home's policy at them (two SCTs required, from
distinct logs), then starts the ACME server (and waits until its ``/readyz`` answers 200: the
database, the signing keys and both logs checked) and the renewal worker's loop (STAR renewals,
RFC 8739; CRLs; audit checkpoints), and prints the ACME directory URL.

The logs and the renewal worker run as threads of this process (``ctlog.server.start``,
``tnca.worker_loop.run_loop``, each named at the OS level: ``ctlog dev1``, ``ctlog dev2``,
``renewal worker``); the ACME server (``tnca serve``: gunicorn's master and its workers) is the
one child process, writing its request log straight to this command's stdout and stderr. Four
processes in all with ``--workers 2``, where each part used to be a process of its own (~80 MB
each; production still runs ``tnca ctlog serve`` and ``tnca worker`` apart). Ctrl-C (or SIGTERM)
stops everything; if the server exits, or a log's or the worker's thread ends, the rest is
stopped too and the command fails naming which.

It also prints the operator pages' address and an admin login (``ca.records.users.ensure_dev_admin``):
the first run makes the person ``admin`` with a generated password and shows it once; later runs
name the admin and how to set a new password.
"""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import click

from ca.records import users
from ca.config import POLICY_FILE, ROOT_CERT_FILE
from ca.home import Home
from ca.errors import TNCAError, UserError
from ctlog import server as ctlog_server
from ctlog.log import PUBLIC_KEY_FILE, LogConfig
from tnca import worker_loop
from tnca.context import pass_home

log = logging.getLogger("tnca.dev")

DEV_LOG_NAMES = ("dev1", "dev2")
LOG_HOST = "127.0.0.1"
READY_TIMEOUT_SECONDS = 60
READY_PROBE_TIMEOUT_SECONDS = 5
WORKER_INTERVAL_SECONDS = 5.0  # tnca worker's default --interval
# How often the supervisor looks at the server process and the threads.
SUPERVISE_INTERVAL_SECONDS = 0.5
STOP_TIMEOUT_SECONDS = 15


class Part(Protocol):
    """One part of the stack the supervisor watches."""

    def failure(self) -> str | None:
        """Why the part stopped on its own, or None while it runs (or once asked to stop)."""


class Server:
    """The ACME server, ``tnca serve`` as a child process."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process

    def failure(self) -> str | None:
        code = self.process.poll()
        return None if code is None else f"the ACME server exited with code {code}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Worker:
    """A loop in a thread of this process that runs until its ``stop`` event is set (the renewal
    worker's): any other end of the thread is a failure, reported with its exception."""

    def __init__(self, name: str, loop: Callable[[threading.Event], None]) -> None:
        self.name = name
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(loop,), name=name, daemon=True)

    def _run(self, loop: Callable[[threading.Event], None]) -> None:
        ctlog_server.name_os_thread(self.name)
        try:
            loop(self.stopping)
        except BaseException as error:  # the supervisor names it; the traceback goes to the log
            self.error = error
            log.exception("the %s failed", self.name)

    def start(self) -> None:
        self.thread.start()

    def failure(self) -> str | None:
        if self.thread.is_alive() or not self.thread.ident:
            return None
        if self.error is not None:
            return f"the {self.name} failed: {self.error!r}"
        return None if self.stopping.is_set() else f"the {self.name} stopped"

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.ident:
            self.thread.join(timeout=STOP_TIMEOUT_SECONDS)


class _Stopped(Exception):
    """SIGTERM or SIGINT: stop the stack and exit 0."""


def _tnca(home: Home, *args: str) -> list[str]:
    return [sys.executable, "-m", "tnca", "--home", str(home.path), *args]


def _wait_until_ready(server: Server, url: str) -> None:
    """Poll the server's ``/readyz`` until it answers 200 (database, signing keys and CT logs
    checked: ca/readiness.py); fail if the server exits or is not ready in time, with its last
    answer. Its own output goes straight to the terminal meanwhile."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    last = "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise click.ClickException(f"the ACME server exited before it was ready (exit code {server.process.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=READY_PROBE_TIMEOUT_SECONDS) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:  # 503: not ready yet, the body says why
            last = f"HTTP {error.code}: {error.read(500).decode(errors='replace')}"
        except OSError as error:  # not listening yet
            last = str(error)
        time.sleep(0.2)
    raise click.ClickException(f"the ACME server was not ready after {READY_TIMEOUT_SECONDS}s ({url}: {last})")


def _relative_to(path: Path, base: Path) -> str:
    """``path`` as the policy names it: relative to ``base`` (the home) when inside it, since the
    policy resolves relative paths against its own directory; absolute otherwise."""
    absolute, base = path.resolve(), base.resolve()
    return absolute.relative_to(base).as_posix() if absolute.is_relative_to(base) else str(absolute)


def configure_dev_logs(policy_path: Path, logs: list[tuple[str, str, Path]]) -> bool:
    """Point a policy that names no logs at the dev logs, requiring one SCT from each.

    Returns False (and changes nothing) when the operator already configured logs: the dev
    command never overrides a deliberate choice.
    """
    text = policy_path.read_text()
    if not re.search(r"(?m)^logs = \[\]$", text):
        return False
    entries = ",\n".join(
        f'  {{ name = "{name}", url = "{url.rstrip("/")}", public_key = "{_relative_to(key, policy_path.parent)}" }}'
        for name, url, key in logs
    )
    text = re.sub(r"(?m)^logs = \[\]$", lambda _m: f"logs = [\n{entries},\n]", text)
    text = re.sub(r"(?m)^required_scts = \d+$", f"required_scts = {len(logs)}", text)
    policy_path.write_text(text)
    return True


def admin_login(home: Home) -> list[str]:
    """The banner lines naming the operator pages and an admin login, making the admin if needed."""
    lines = [f"  Operator pages:  {home.base_url}/admin/"]
    with home.sessionmaker() as session:
        try:
            name, password = users.ensure_dev_admin(session, home.clock)
        except UserError as error:  # a person "admin" exists and is not an active admin
            return [*lines, f"  Admin login:     none made: {error.detail}"]
        session.commit()
    if password is not None:
        lines.append(f"  Admin login:     {name} / {password}   (shown this once)")
    else:
        lines.append(f"  Admin login:     {name}   (new password: tnca --home {home.path} user passwd {name})")
    return lines


@click.command("dev")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), metavar="N",
              help="ACME server worker processes.")
@click.option("--profile", type=click.Choice(("stir", "shaken")), default=None,
              help="The profile of a home made now (tnca init --profile): shaken serves deployed SHAKEN clients "
                   "(docs/shaken.md). An existing home keeps its own.")
@click.option("--ct-port", default=8091, show_default=True, type=click.IntRange(1, 65534), metavar="PORT",
              help="Port of the first CT log; the second listens on the next one.")
@pass_home
def command(home: Home, workers: int, profile: str | None, ct_port: int) -> None:
    """Run the development stack: init if needed, two CT logs, the ACME server, a renewal worker.

    A SHAKEN home (--profile shaken) gets no CT logs: the SHAKEN certificate profile allows no
    extension it does not name (ATIS-1000080 §6.4.1), an SCT list included.
    """
    if not home.exists():
        click.echo(f"Creating the development home {home.path} …")
        result = subprocess.run(_tnca(home, "init", *(("--profile", profile) if profile else ())), text=True)
        if result.returncode != 0:
            raise click.ClickException("tnca init failed (see above)")
    try:
        shaken = Home(home.path).policy.certificates.profile == "shaken"
    except TNCAError as error:
        raise click.ClickException(error.detail) from None
    # The logs' integrations and the worker's failed ticks, on stderr as when they were processes.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    stopping = False

    def on_signal(*_args: object) -> None:
        if not stopping:  # once: a second Ctrl-C must not cut the stopping short
            raise _Stopped

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    parts: list = []  # what has started, stopped in reverse: the worker, the server, then the logs
    try:
        logs = _start_logs(home, () if shaken else DEV_LOG_NAMES, ct_port, parts)
        if logs and configure_dev_logs(home.path / POLICY_FILE, [(r.log.name, r.url, _log_key(home, r.log.name))
                                                                 for r in logs]):
            click.echo(f"Configured {POLICY_FILE}: SCTs from {', '.join(r.log.name for r in logs)} required")

        bind = urllib.parse.urlsplit(home.base_url)
        host, port = bind.hostname or "127.0.0.1", bind.port or 8080
        server = Server(subprocess.Popen(_tnca(home, "serve", "--host", host, "--port", str(port),
                                               "--workers", str(workers))))
        parts.append(server)
        _wait_until_ready(server, f"http://{host}:{port}/readyz")

        # The worker reads the policy as it is now, with the logs (a fresh Home: nothing cached).
        worker_home = Home(home.path)
        parts.append(_Closing(worker_home))
        worker = _start_worker(worker_home, parts)

        login = admin_login(home)
        click.echo("")
        click.echo("tnca development stack is running")
        click.echo(f"  ACME directory:  {home.base_url}/acme/directory")
        for line in login:
            click.echo(line)
        for running in logs:
            click.echo(f"  CT log {running.log.name}:     {running.url}")
        if shaken:
            click.echo(f"  STI-PA API:      {home.base_url}/stipa   (logins: tnca --home {home.path} stipa credentials "
                       "--delegation ID; docs/shaken.md)")
        click.echo("  renewal worker:  STAR orders renewed as they fall due")
        click.echo(f"  home:            {home.path}")
        click.echo("Walk-through: README.md, 'Issue a certificate'. Ctrl-C stops everything.")
        click.echo("")
        supervise([server, worker, *logs])
    except _Stopped:
        pass
    finally:
        stopping = True
        for part in reversed(parts):
            part.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Closing:
    """A Home closed (its database engine disposed) when the stack stops."""

    def __init__(self, home: Home) -> None:
        self.home = home

    def stop(self) -> None:
        self.home.close()


def _log_key(home: Home, name: str) -> Path:
    return home.path / "ctlog" / name / PUBLIC_KEY_FILE


def _start_logs(home: Home, names: Sequence[str], first_port: int, parts: list) -> list:
    """Each dev log served from threads of this process on ``first_port`` + its position, as
    ``tnca ctlog serve --name NAME --port PORT`` would serve it (its files in HOME/ctlog/NAME/,
    the authority's root accepted, a merge delay of 1 s)."""
    roots = home.path / ROOT_CERT_FILE
    started = []
    for offset, name in enumerate(names):
        config = LogConfig(name=name, directory=home.path / "ctlog" / name, roots_file=roots)
        try:
            running = ctlog_server.start(config, host=LOG_HOST, port=first_port + offset)
        except (ValueError, OSError) as exc:  # a port taken, say
            raise click.ClickException(f"log {name} cannot start on port {first_port + offset}: {exc}") from None
        parts.append(running)
        started.append(running)
    return started


def _start_worker(home: Home, parts: list) -> Worker:
    """The renewal worker's loop in a thread, ticking as ``tnca worker`` does by default; its
    lines carry a ``[renewal worker]`` prefix."""
    try:
        worker_loop.check_home(home)
    except TNCAError as error:
        raise click.ClickException(error.detail) from None
    worker = Worker("renewal worker", lambda stop: worker_loop.run_loop(
        home, interval_seconds=WORKER_INTERVAL_SECONDS, limit=worker_loop.DEFAULT_LIMIT, stop=stop,
        report=lambda line: click.echo(f"[renewal worker] {line}")))
    parts.append(worker)
    worker.start()
    return worker


def supervise(parts: Sequence[Part], *, interval: float = SUPERVISE_INTERVAL_SECONDS) -> None:
    """Return never: raise naming the first part that stopped on its own (the caller stops the rest)."""
    while True:
        for part in parts:
            failure = part.failure()
            if failure:
                raise click.ClickException(f"{failure}; stopping the stack")
        time.sleep(interval)
