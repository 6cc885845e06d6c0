"""``tnca serve``: run the ACME server under gunicorn.

The directory is at ``{base_url}/acme/directory``, where ``base_url`` is the home's external URL
(``[server] base_url`` in tnca.toml, or ``TNCA_BASE_URL``): behind a proxy it differs from the
address gunicorn binds, and every URL the server hands out uses it (RFC 8555 §6.4).

Every worker process builds its own app (and so its own database engine) after the fork; they
share nothing but the database, which is what nonces and single-use tokens rely on, and the
metrics directory: a fresh ``PROMETHEUS_MULTIPROC_DIR`` made before the workers start (``ca/metrics.py``),
each dead worker's live values dropped (``child_exit``), the directory removed when the server stops.

Workers log JSON lines to stderr (``acme_server/observability.py``): one per request, with its
request id; gunicorn's own access log is off. A policy that requires no SCTs is announced at
start: transparency is off.

Exit codes: 0 after a clean shutdown; 1 when the home is missing or not initialised.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from typing import Any

import click
from gunicorn.app.base import BaseApplication

from ca.home import Home
from ca.errors import TNCAError
from ca.orders import recovery
from ca.readiness import transparency_off_reason
from tnca.context import pass_home

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class ACMEServerApplication(BaseApplication):
    """gunicorn, configured from our options instead of its command line (gunicorn's custom-app recipe)."""

    def __init__(self, home_path: str, options: dict[str, Any]) -> None:
        self.home_path = home_path
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        # Imported here so the parent process never opens the database (nor fixes how
        # prometheus_client stores values) before forking.
        from acme_server import create_app
        from acme_server.observability import configure_logging

        configure_logging()
        return create_app(Home(self.home_path))


def _child_exit(_server: Any, worker: Any) -> None:
    """gunicorn hook (in the arbiter): drop the live values of a worker that exited."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, metavar="ADDRESS", help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535), metavar="PORT",
              help="TCP port to listen on.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), metavar="N",
              help="Worker processes (each runs --threads threads).")
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64), metavar="N",
              help="Threads per worker process.")
@pass_home
def command(home: Home, host: str, port: int, workers: int, threads: int) -> None:
    """Serve the ACME API (directory at BASE_URL/acme/directory) with gunicorn."""
    if not home.exists():
        raise click.ClickException(f"{home.path} is not an authority home; run 'tnca --home {home.path} init' first")
    # Every worker's counters and histograms, for /metrics to add up: made fresh for this server
    # (values left by an earlier run would be counted again), set before anything could record a
    # metric (ca/metrics.py), removed when the server stops.
    metrics_dir = tempfile.mkdtemp(prefix="tnca-metrics-")
    os.environ[MULTIPROC_ENV] = metrics_dir
    # A SIGTERM before gunicorn installs its own handlers must still run the cleanup below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        _check_home(home)
        click.echo(f"Serving {home.base_url}/acme/directory on {host}:{port} ({workers} worker(s) × {threads} thread(s))")
        reason = transparency_off_reason(home)
        if reason is not None:
            click.echo(f"Warning: transparency is off. {reason}.")
        ACMEServerApplication(str(home.path), _gunicorn_options(host, port, workers, threads)).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _check_home(home: Home) -> None:
    try:
        # Fail here, with a readable message, rather than in every worker.
        home.issuing_ca()
        home.token_authority()
        home.transparency()  # the CT logs' keys
        # Orders a killed server left "processing" (ca/orders/recovery.py), before anyone polls.
        with home.sessionmaker() as session:
            recovered = recovery.recover_abandoned(session, clock=home.clock)
        if recovered:
            click.echo(f"Recovered {len(recovered)} order(s) left processing by a finalize that did not finish")
    except TNCAError as error:
        raise click.ClickException(error.detail) from None
    finally:
        if "engine" in home.__dict__:
            home.engine.dispose()


def _gunicorn_options(host: str, port: int, workers: int, threads: int) -> dict[str, Any]:
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "preload_app": False,
        # One JSON line per request comes from the app (acme_server/observability.py).
        "accesslog": None,
        "errorlog": "-",
        "child_exit": _child_exit,
        "timeout": 60,
        "graceful_timeout": 10,
        # gunicorn ≥ 25 opens a control socket at a per-user fixed path; two servers (the dev
        # stack and a test run) would fight over it, and nothing here uses gunicornc.
        "control_socket_disable": True,
    }
