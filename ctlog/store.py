"""The log's SQL tables: its own metadata, kept apart from the authority's database.

One database holds one log (``ctlog_head`` records whose: a second log pointed at the same
database is refused). The schema is created by the log itself on start (``create_all``): the
log is a development and test service with no released schema to migrate.

Tables:

``ctlog_head``     one row: the log's ID (SHA-256 of its key), the integrated tree size. The
                   integrator updates it first, which serializes integrators on SQLite and
                   PostgreSQL alike.
``ctlog_entries``  one row per accepted submission: the MerkleTreeLeaf (leaf input), its hash,
                   extra_data, the SCT's timestamp and signature (returned again for a duplicate
                   submission, RFC 6962 §4.1 "MAY return the same SCT"), and ``leaf_index``,
                   NULL while the entry waits for integration.
``ctlog_nodes``    hashes of perfect subtrees above the leaves, ``(level, index)`` covering leaves
                   [index·2^level, (index+1)·2^level): any proof reads O(log² n) of them instead of
                   rehashing entries.
``ctlog_sths``     every signed tree head, newest last.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    select,
    tuple_,
)
from sqlalchemy.engine import Connection, Engine

from ctlog import merkle

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

HEAD_ROW_ID = 1

head = Table(
    "ctlog_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("log_id", String(64), nullable=False),  # hex SHA-256 of the log's SubjectPublicKeyInfo
    Column("tree_size", BigInteger, nullable=False),
    Column("integrated_at", DateTime(timezone=True), nullable=True),
)

entries = Table(
    "ctlog_entries",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    # SHA-256 over entry type and signed entry: the same (pre)certificate submitted twice is one entry.
    Column("identity_hash", LargeBinary(32), nullable=False, unique=True),
    Column("leaf_index", BigInteger, nullable=True, unique=True),
    Column("leaf_hash", LargeBinary(32), nullable=False, index=True),
    Column("leaf_input", LargeBinary, nullable=False),
    Column("extra_data", LargeBinary, nullable=False),
    Column("timestamp", BigInteger, nullable=False),  # ms since the epoch, as in the SCT
    Column("sct_signature", LargeBinary, nullable=False),  # the digitally-signed struct
)

nodes = Table(
    "ctlog_nodes",
    metadata,
    Column("level", Integer, primary_key=True),
    Column("idx", BigInteger, primary_key=True),
    Column("hash", LargeBinary(32), nullable=False),
)

sths = Table(
    "ctlog_sths",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("tree_size", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("signature", LargeBinary, nullable=False),  # the digitally-signed struct
)


def make_engine(url: str) -> Engine:
    """An engine for the log's database; SQLite gets WAL and a busy timeout, because the
    integrator thread and request threads write concurrently."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


class StoredSubtreeHashes:
    """:class:`ctlog.merkle.SubtreeHashes` over the tables, for trees up to the integrated size.

    Reads perfect subtrees (leaf hashes from ``ctlog_entries``, higher levels from
    ``ctlog_nodes``), one query per table per requested subtree, memoized; ``known`` preloads
    hashes not yet committed (the integrator's new nodes)."""

    def __init__(self, connection: Connection, known: dict[tuple[int, int], bytes] | None = None) -> None:
        self.connection = connection
        self.known: dict[tuple[int, int], bytes] = dict(known or {})

    def perfect(self, wanted: Iterable[tuple[int, int]]) -> list[bytes]:
        wanted = list(wanted)
        missing = [key for key in wanted if key not in self.known]
        leaves = [index for level, index in missing if level == 0]
        inner = [(level, index) for level, index in missing if level > 0]
        if leaves:
            rows = self.connection.execute(
                select(entries.c.leaf_index, entries.c.leaf_hash).where(entries.c.leaf_index.in_(leaves))
            )
            for index, value in rows:
                self.known[(0, index)] = value
        if inner:
            rows = self.connection.execute(
                select(nodes.c.level, nodes.c.idx, nodes.c.hash).where(tuple_(nodes.c.level, nodes.c.idx).in_(inner))
            )
            for level, index, value in rows:
                self.known[(level, index)] = value
        absent = [key for key in wanted if key not in self.known]
        if absent:
            raise LookupError(f"the log's store has no hash for subtree(s) {absent}: the tree is incomplete")
        return [self.known[key] for key in wanted]

    def subtree_hash(self, start: int, end: int) -> bytes:
        return merkle.fold_perfect_subtrees(self.perfect(merkle.perfect_subtrees(start, end)))
