"""Run the Alembic migrations programmatically (``tnca init`` and the tests; there is no separate
upgrade command).

The migrations are package data of ``ca.records`` (``ca/records/migrations/``: ``env.py``,
``script.py.mako``, ``versions/``), found with :mod:`importlib.resources`, so an installed wheel
migrates exactly as a source checkout does.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine



def migrations_dir() -> Path:
    """The Alembic script directory shipped inside the package (a real directory: Alembic reads
    it by path, and a wheel installs as files)."""
    return Path(str(importlib.resources.files("ca.records") / "migrations"))


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema at ``engine`` to ``revision`` in one transaction on that engine."""
    cfg = alembic_config(engine)
    with engine.begin() as connection:
        # ca/records/migrations/env.py runs on this connection when it is given, so the upgrade is this one
        # transaction rather than a second engine of its own.
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
