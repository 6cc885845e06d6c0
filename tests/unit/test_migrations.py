"""The Alembic migrations and the SQLAlchemy models describe the same schema, on the databases supported."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

from ca.records import store
from ca.errors import PolicyError


def test_models_and_migrations_do_not_drift(engine):
    """`alembic upgrade head` builds exactly what the models in ca/records/ declare (autogenerate finds nothing)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, store.METADATA)
    assert diff == [], f"models and migrations differ; run scripts/regen-initial-migration.sh: {diff}"


def test_downgrade_to_base_and_upgrade_again(tmp_path):
    """Every migration can be undone and redone (checked on a private SQLite database)."""
    from alembic import command

    from ca.records.migrate import alembic_config, upgrade

    engine = store.make_engine(f"sqlite:///{tmp_path / 'roundtrip.db'}")
    upgrade(engine)
    cfg = alembic_config(engine)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "base")
    upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert context.get_current_revision() is not None


class _UnsupportedDialect(SQLiteDialect_pysqlite):
    """A database SQLAlchemy can talk to but this project does not support (any other than
    SQLite and PostgreSQL: the migrations, row locks and upserts are written for those two)."""

    name = "unsupported"


registry.register("unsupported", __name__, "_UnsupportedDialect")


def test_make_engine_refuses_a_database_other_than_sqlite_and_postgresql():
    with pytest.raises(PolicyError) as caught:
        store.make_engine("unsupported://")
    assert (caught.value.field, caught.value.detail) == (
        "[database] url", "database unsupported is not supported: use SQLite or PostgreSQL")
