"""Helpers shared by test modules (import as ``from tests.helpers import …``).

They live here rather than in a conftest.py: several directories have a conftest, and
``from conftest import …`` resolves to whichever of them was imported last.
"""

from __future__ import annotations

from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.orm import Session

from ca import store


def row_counts(session: Session) -> dict[str, int]:
    """Row count of every table: negative tests assert it is unchanged."""
    counts = {}
    for table in store.Base.metadata.sorted_tables:
        counts[table.name] = session.execute(text(f"SELECT COUNT(*) FROM {table.name}")).scalar_one()
    return counts


def mutated_der(der: bytes, data: st.DataObject) -> bytes:
    """``der`` with one byte flipped, cut short, extended or spliced (hypothesis draws which):
    the malformed inputs a parser of certificates and CSRs meets."""
    choice = data.draw(st.sampled_from(["flip", "truncate", "extend", "splice"]))
    if choice == "flip":
        position = data.draw(st.integers(0, len(der) - 1))
        return der[:position] + bytes([der[position] ^ data.draw(st.integers(1, 255))]) + der[position + 1:]
    if choice == "truncate":
        return der[:data.draw(st.integers(0, len(der) - 1))]
    if choice == "extend":
        return der + data.draw(st.binary(min_size=1, max_size=8))
    position = data.draw(st.integers(0, len(der)))
    return der[:position] + data.draw(st.binary(max_size=16)) + der[position:]
