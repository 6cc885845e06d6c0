"""Run the Alembic migrations programmatically (``tnca init``, tests, ``tnca db upgrade``)."""

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
        # Alembic cookbook, "Sharing a Connection": env.py uses this connection.
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
