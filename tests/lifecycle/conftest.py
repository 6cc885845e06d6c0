"""Fixtures for the lifecycle tests that drive the ``tnca`` command line.

``dev_home`` is a home made by ``tnca init`` (as tests/e2e's fixture of the same name). The ACME
fixtures (``home``, ``server``, ``authority``…) are imported from ``protocol.support`` by the
modules that use them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import sessionmaker

from tests.e2e.devhome import DevHome
from tnca.cli import cli


@pytest.fixture
def dev_home(tmp_path: Path, session_factory: sessionmaker, database_url: str) -> Iterator[DevHome]:
    """A home made by ``tnca init`` over empty tables (dev scope: range 12025550000:10000, SPC 1234)."""
    work = tmp_path / "work"
    work.mkdir()
    dev = DevHome(path=tmp_path / "devhome", database_url=database_url, work=work)
    result = CliRunner().invoke(cli, ["--home", str(dev.path), "init"], env=dev.env(), catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    yield dev
    dev.close()
