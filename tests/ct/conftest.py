"""Fixtures of the certificate-transparency tests (helpers live in ct_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ct_helpers import PKI, RunningLog, postgres_database, make_root, start_log, stop_log


@pytest.fixture(scope="session")
def pki() -> PKI:
    root = make_root()
    return PKI(root=root, issuing=root.issue_ca("Test STI-CA"))


@pytest.fixture
def log_factory(tmp_path: Path, pki: PKI) -> Iterator[Callable[..., RunningLog]]:
    """Starts logs accepting ``pki.root``; all are stopped (and their databases dropped) afterwards."""
    home = tmp_path / "home"
    home.mkdir()
    roots_file = tmp_path / "roots.pem"
    roots_file.write_bytes(pki.root.pem)
    started: list[RunningLog] = []
    drops: list[Callable[[], None]] = []

    def factory(name: str, *, merge_delay: float = 0.3, roots: Path | None = None) -> RunningLog:
        database_url = None
        postgres = postgres_database(name)
        if postgres:
            database_url, drop = postgres
            drops.append(drop)
        running = start_log(home, name, roots or roots_file, merge_delay=merge_delay, database_url=database_url)
        started.append(running)
        return running

    yield factory
    for running in started:
        stop_log(running)
    for drop in drops:
        drop()


@pytest.fixture
def two_logs(log_factory) -> tuple[RunningLog, RunningLog]:
    return log_factory("dev1"), log_factory("dev2")


@pytest.fixture
def in_process_log(tmp_path: Path, pki: PKI) -> Iterator[Callable[..., "Log"]]:
    """A :class:`ctlog.log.Log` in this process, on its own SQLite file or PostgreSQL database."""
    from ctlog import chain as chains
    from ctlog import store as log_store
    from ctlog.log import Log

    made: list[Log] = []
    drops: list[Callable[[], None]] = []

    def factory(name: str = "inproc", *, merge_delay: float = 3600.0) -> Log:
        postgres = postgres_database(name)
        if postgres:
            url, drop = postgres
            drops.append(drop)
        else:
            url = f"sqlite:///{tmp_path / f'{name}.db'}"
        ct_log = Log(name=name, key=ec.generate_private_key(ec.SECP256R1()), roots=chains.RootStore([pki.root.certificate]),
                     engine=log_store.make_engine(url), merge_delay=merge_delay)
        ct_log.prepare_database()
        made.append(ct_log)
        return ct_log

    yield factory
    for ct_log in made:
        ct_log.engine.dispose()
    for drop in drops:
        drop()
