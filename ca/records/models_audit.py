"""Models of the audit trail: the hash-chained events, the chain head and signed checkpoints.

The rules (what is hashed, how appends are serialized, what a checkpoint signs) are in
``ca/records/audit.py`` and ``ca/records/audit_checkpoints.py``; these are only the rows.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    BigInteger,
    Index,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from ca.records.models_base import Base, UTCDateTime


class AuditEvent(Base):
    """An append-only, hash-chained record of a state change (see ``ca/records/audit.py``)."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64), index=True)  # e.g. "certificate.issue"
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)

    __table_args__ = (Index("ix_audit_events_subject", "subject_type", "subject_id"),)


class AuditHead(Base):
    """The single row holding the chain head; locking it serializes appends across processes."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)  # always 1
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A signed statement of the audit chain head (``ca/records/audit.py``): truncation below it is detectable.

    ``statement`` is the exact canonical JSON that was signed (``seq``, ``head_hash``,
    ``signed_at``, the authority); the other columns repeat its fields for queries. The signing
    certificate is kept with each checkpoint so that every row verifies on its own, also after
    the audit key is replaced.
    """

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, index=True)
    head_hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    statement: Mapped[str] = mapped_column(Text)
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    # The same head published as a C2SP tlog-checkpoint signed note (ca/records/audit_notes.py):
    # the Merkle root over events 1..seq (hex) and the note text. None for checkpoints made
    # before notes existed.
    tree_root: Mapped[Optional[str]] = mapped_column(String(64))
    note: Mapped[Optional[str]] = mapped_column(Text)
