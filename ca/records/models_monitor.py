"""Models of the number monitor (``ca/auditing/number_monitor.py``): how far each followed
RFC 6962 log was read and verified, and every certificate or precertificate with a TNAuthList
found in it, whoever issued it, with its entries flattened for indexed number queries (the
columns and the span-class index of ``certificate_scope_entries``)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ca.records.models_authority import _ScopeEntryColumns
from ca.records.models_base import Base, UTCDateTime, utcnow


class MonitoredLog(Base):
    """One followed log: the last signed tree head verified, and the compact range (the perfect
    subtree hashes, at most log2 of the size) that lets the next run check new entries against
    the next head without reading the old ones again."""

    __tablename__ = "ct_monitor_logs"

    url: Mapped[str] = mapped_column(String(512), primary_key=True)
    tree_size: Mapped[int] = mapped_column(BigInteger, default=0)
    root_hash: Mapped[str] = mapped_column(String(64))  # hex
    compact_range: Mapped[list[Any]] = mapped_column(JSON)  # [[level, hex], …], left to right
    checked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class MonitoredEntry(Base):
    """A log entry whose certificate (x509_entry) or precertificate (precert_entry) has a TNAuthList."""

    __tablename__ = "ct_monitor_entries"
    __table_args__ = (UniqueConstraint("log_url", "leaf_index", name="uq_ct_monitor_entries_log_url_leaf_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    log_url: Mapped[str] = mapped_column(String(512))
    leaf_index: Mapped[int] = mapped_column(BigInteger)
    entry_type: Mapped[str] = mapped_column(String(16))  # "x509" | "precert"
    logged_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # the MerkleTreeLeaf timestamp
    serial: Mapped[str] = mapped_column(String(64), index=True)
    issuer: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    not_before: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    scope_der: Mapped[bytes] = mapped_column(LargeBinary)
    found_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    note: Mapped[Optional[str]] = mapped_column(Text)  # e.g. a TNAuthList read leniently

    scope_entries: Mapped[list["MonitoredScopeEntry"]] = relationship(
        back_populates="entry", cascade="all, delete-orphan")


class MonitoredScopeEntry(_ScopeEntryColumns, Base):
    __tablename__ = "ct_monitor_scope_entries"
    __table_args__ = (
        Index("ix_ct_monitor_scope_entries_span", "width", "span_digits", "lo", "hi", "entry_id"),
        Index("ix_ct_monitor_scope_entries_spc", "spc"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("ct_monitor_entries.id", ondelete="CASCADE"), index=True)
    entry: Mapped[MonitoredEntry] = relationship(back_populates="scope_entries")
