"""Run the Alembic migrations programmatically (``tnca init`` and the tests; there is no separate
upgrade command)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema at ``engine`` to ``revision`` in one transaction on that engine."""
    cfg = alembic_config(engine)
    with engine.begin() as connection:
        # migrations/env.py runs on this connection when it is given, so the upgrade is this one
        # transaction rather than a second engine of its own.
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
