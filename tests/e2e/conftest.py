"""Fixtures for end-to-end tests; the helpers they use live in tests/e2e/devhome.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.orm import sessionmaker

from tests.e2e.devhome import DevHome
from tests.helpers import row_counts  # noqa: F401  (re-exported for 'from conftest import row_counts')
from tnca.cli import cli


@pytest.fixture
def dev_home(tmp_path: Path, session_factory: sessionmaker, database_url: str) -> Iterator[DevHome]:
    """A home made by ``tnca init`` (default dev scope: range 12025550000:10000 and SPC 1234).

    Depends on ``session_factory`` so the tables are empty before ``init`` (which refuses a
    database that already has issuers) and emptied again afterwards.
    """
    work = tmp_path / "work"
    work.mkdir()
    dev = DevHome(path=tmp_path / "home", database_url=database_url, work=work)
    result = CliRunner().invoke(cli, ["--home", str(dev.path), "init"], env=dev.env(), catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    yield dev
    dev.close()
