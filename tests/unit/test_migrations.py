"""The Alembic migrations and the SQLAlchemy models describe the same schema."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ca import store


def test_models_and_migrations_do_not_drift(engine):
    """`alembic upgrade head` builds exactly what ca/store.py declares (autogenerate finds nothing)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, store.Base.metadata)
    assert diff == [], f"models and migrations differ; run scripts/regen-initial-migration.sh: {diff}"


def test_downgrade_to_base_and_upgrade_again(tmp_path):
    """Every migration can be undone and redone (checked on a private SQLite database)."""
    from alembic import command

    from ca.migrate import alembic_config, upgrade

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
