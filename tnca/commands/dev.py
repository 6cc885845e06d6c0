"""``tnca dev``: the whole development stack in one command (what ``make run`` runs).

It creates the home on first use (``tnca init`` with the development scope), starts two local
RFC 6962 logs (``dev1`` and ``dev2``), points the home's policy at them (two SCTs required, from
distinct logs), then starts the ACME server (and waits until its ``/readyz`` answers 200: the
database, the signing keys and both logs checked) and one renewal worker (``tnca worker``: STAR
renewals, RFC 8739), and prints the ACME directory URL. Everything runs as child processes of
this one; Ctrl-C (or SIGTERM) stops them all, and if any of them dies the others are stopped too
and the command fails.

It also prints the operator pages' address and an admin login (``ca.records.users.ensure_dev_admin``):
the first run makes the person ``admin`` with a generated password and shows it once; later runs
name the admin and how to set a new password.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import click

from ca.records import users
from ca.config import POLICY_FILE
from ca.home import Home
from ca.errors import TNCAError, UserError
from tnca.context import pass_home

DEV_LOG_NAMES = ("dev1", "dev2")
READY_TIMEOUT_SECONDS = 60
READY_PROBE_TIMEOUT_SECONDS = 5
_LOG_READY = re.compile(r"^ctlog (\S+) listening on (\S+) ")


@dataclass
class Child:
    name: str
    process: subprocess.Popen[str]


def _tnca(home: Home, *args: str) -> list[str]:
    return [sys.executable, "-m", "tnca", "--home", str(home.path), *args]


def _wait_for_line(child: Child, pattern: re.Pattern[str]) -> re.Match[str]:
    """Read the child's output until ``pattern`` matches (echoing it), or fail."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    assert child.process.stdout is not None
    while time.monotonic() < deadline:
        line = child.process.stdout.readline()
        if not line:
            raise click.ClickException(f"{child.name} exited before it was ready (exit code {child.process.wait()})")
        match = pattern.search(line)
        if match:
            return match
    raise click.ClickException(f"{child.name} was not ready after {READY_TIMEOUT_SECONDS}s")


def _wait_until_ready(child: Child, url: str) -> None:
    """Poll the server's ``/readyz`` until it answers 200 (database, signing keys and CT logs
    checked: ca/readiness.py), reading the server's output meanwhile so it never blocks on a
    full pipe; fail if the server exits or is not ready in time, with its last answer."""
    import selectors
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    selector = selectors.DefaultSelector()
    assert child.process.stdout is not None
    selector.register(child.process.stdout, selectors.EVENT_READ)
    last = "no answer"
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise click.ClickException(f"{child.name} exited before it was ready (exit code {child.process.returncode})")
        for key, _events in selector.select(timeout=0.2):
            key.fileobj.readline()
        try:
            with urllib.request.urlopen(url, timeout=READY_PROBE_TIMEOUT_SECONDS) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:  # 503: not ready yet, the body says why
            last = f"HTTP {error.code}: {error.read(500).decode(errors='replace')}"
        except OSError as error:  # not listening yet
            last = str(error)
    raise click.ClickException(f"{child.name} was not ready after {READY_TIMEOUT_SECONDS}s ({url}: {last})")


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

    children: list[Child] = []

    def stop_all(*_args: object) -> None:
        for child in children:
            if child.process.poll() is None:
                child.process.terminate()
        for child in children:
            try:
                child.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.process.kill()

    signal.signal(signal.SIGTERM, lambda *_: (stop_all(), sys.exit(0)))
    try:
        shaken = Home(home.path).policy.certificates.profile == "shaken"
    except TNCAError as error:
        raise click.ClickException(error.detail) from None
    try:
        logs = []
        for offset, name in enumerate(() if shaken else DEV_LOG_NAMES):
            port = ct_port + offset
            child = Child(f"ctlog {name}", subprocess.Popen(
                _tnca(home, "ctlog", "serve", "--name", name, "--port", str(port)),
                stdout=subprocess.PIPE, text=True, bufsize=1))
            children.append(child)
            url = _wait_for_line(child, _LOG_READY).group(2)
            logs.append((name, url, home.path / "ctlog" / name / "key.pem"))
        if logs and configure_dev_logs(home.path / POLICY_FILE, logs):
            click.echo(f"Configured {POLICY_FILE}: SCTs from {', '.join(n for n, _u, _k in logs)} required")

        bind = urllib.parse.urlsplit(home.base_url)
        server = Child("ACME server", subprocess.Popen(
            _tnca(home, "serve", "--host", bind.hostname or "127.0.0.1", "--port", str(bind.port or 8080),
                  "--workers", str(workers)),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1))
        children.append(server)
        _wait_until_ready(server, f"http://{bind.hostname or '127.0.0.1'}:{bind.port or 8080}/readyz")

        worker = Child("renewal worker", subprocess.Popen(
            _tnca(home, "worker"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1))
        children.append(worker)
        _wait_for_line(worker, re.compile(r"^renewal worker started"))

        login = admin_login(home)
        click.echo("")
        click.echo("tnca development stack is running")
        click.echo(f"  ACME directory:  {home.base_url}/acme/directory")
        for line in login:
            click.echo(line)
        for name, url, _key in logs:
            click.echo(f"  CT log {name}:     {url}")
        if shaken:
            click.echo(f"  STI-PA API:      {home.base_url}/stipa   (logins: tnca --home {home.path} stipa credentials "
                       "--delegation ID; docs/shaken.md)")
        click.echo("  renewal worker:  STAR orders renewed as they fall due")
        click.echo(f"  home:            {home.path}")
        click.echo("Walk-through: README.md, 'Issue a certificate'. Ctrl-C stops everything.")
        click.echo("")
        _supervise(children)
    except KeyboardInterrupt:
        pass
    finally:
        stop_all()


def _supervise(children: list[Child]) -> None:
    """Relay the server's and the worker's log lines; stop when any child exits."""
    import selectors

    selector = selectors.DefaultSelector()
    for child in children:
        if child.process.stdout is not None:
            selector.register(child.process.stdout, selectors.EVENT_READ, child)
    while True:
        for child in children:
            code = child.process.poll()
            if code is not None:
                raise click.ClickException(f"{child.name} exited with code {code}; stopping the stack")
        for key, _events in selector.select(timeout=1.0):
            line = key.fileobj.readline()
            if line:
                click.echo(f"[{key.data.name}] {line}", nl=False)
