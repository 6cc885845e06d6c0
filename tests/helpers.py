"""Helpers shared by test modules (import as ``from tests.helpers import …``).

They live here rather than in a conftest.py: several directories have a conftest, and
``from conftest import …`` resolves to whichever of them was imported last.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from ca import store


def row_counts(session: Session) -> dict[str, int]:
    """Row count of every table: negative tests assert it is unchanged."""
    counts = {}
    for table in store.Base.metadata.sorted_tables:
        counts[table.name] = session.execute(text(f"SELECT COUNT(*) FROM {table.name}")).scalar_one()
    return counts
