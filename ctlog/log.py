"""One RFC 6962 log: its key, its accepted roots, its entries and its Merkle tree.

:class:`Log` is the log without HTTP: ``add_chain``/``add_pre_chain`` accept a submission and
return an SCT (RFC 6962 §3.2), :meth:`Log.integrate` appends the pending entries to the tree and
signs a tree head (RFC 6962 §3.5), and the read methods answer the §4 GET requests. The Flask
app (``ctlog.app``) only parses requests and renders these results.

The log promises to integrate every entry within its maximum merge delay (RFC 6962 §3):
``ctlog.server`` runs :meth:`Log.integrate` every ``merge_delay`` seconds in a background thread;
tests call it directly.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ctlog import chain as chains
from ctlog import merkle, store, structures

log = logging.getLogger(__name__)

PRIVATE_KEY_FILE = "private-key.pem"  # PKCS#8, mode 0600
PUBLIC_KEY_FILE = "key.pem"  # SubjectPublicKeyInfo: what a CA configures to verify our SCTs
DATABASE_FILE = "log.db"
# Most entries one get-entries answer carries; RFC 6962 §4.6 lets a log return fewer than asked.
MAX_ENTRIES_PER_RESPONSE = 512
# Most pending entries one integration appends; the rest wait for the next round.
MAX_ENTRIES_PER_INTEGRATION = 10_000


# Built once: SQLAlchemy finds a statement's compiled form by its cache key, which it computes
# once per statement object (an insert(...).values(...) built per submission recomputed it).
_INSERT_ENTRY = insert(store.entries)


class LogError(Exception):
    """A request the log refuses; ``status`` is the HTTP status the app answers with."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class SignedTreeHead:
    tree_size: int
    timestamp: int  # ms since the epoch
    root_hash: bytes
    signature: bytes  # TLS digitally-signed struct

    def to_json(self) -> dict:
        """RFC 6962 §4.3 get-sth response."""
        return {
            "tree_size": self.tree_size,
            "timestamp": self.timestamp,
            "sha256_root_hash": base64.b64encode(self.root_hash).decode(),
            "tree_head_signature": base64.b64encode(self.signature).decode(),
        }


@dataclass(frozen=True)
class SCTResponse:
    log_id: bytes
    timestamp: int
    signature: bytes  # TLS digitally-signed struct
    extensions: bytes = b""

    def to_json(self) -> dict:
        """RFC 6962 §4.1 add-chain / add-pre-chain response."""
        return {
            "sct_version": structures.VERSION_V1,
            "id": base64.b64encode(self.log_id).decode(),
            "timestamp": self.timestamp,
            "extensions": base64.b64encode(self.extensions).decode(),
            "signature": base64.b64encode(self.signature).decode(),
        }


@dataclass(frozen=True)
class LogConfig:
    name: str
    directory: Path
    roots_file: Path
    database_url: str | None = None
    merge_delay: float = 1.0  # seconds; the integrator's interval, and the log's MMD

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.directory / DATABASE_FILE}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def load_or_create_key(directory: Path) -> ec.EllipticCurvePrivateKey:
    """The log's P-256 key (RFC 6962 §2.1.4), made on first start; the public half is (re)written
    to ``key.pem`` so a CA can be configured from it."""
    directory.mkdir(parents=True, exist_ok=True)
    private_path = directory / PRIVATE_KEY_FILE
    if private_path.exists():
        key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError(f"{private_path} is not a P-256 private key")
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    public_path = directory / PUBLIC_KEY_FILE
    if not public_path.exists() or public_path.read_bytes() != public_pem:
        public_path.write_bytes(public_pem)
    return key


class Log:
    def __init__(self, *, name: str, key: ec.EllipticCurvePrivateKey, roots: chains.RootStore, engine: Engine,
                 merge_delay: float = 1.0) -> None:
        self.name = name
        self.key = key
        self.roots = roots
        self.engine = engine
        self.merge_delay = merge_delay
        self.public_key_der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # RFC 6962 §3.2: "LogID ... is the SHA-256 hash of the log's public key ... DER encoded".
        self.log_id = hashlib.sha256(self.public_key_der).digest()

    @classmethod
    def open(cls, config: LogConfig) -> "Log":
        """Load (or create) the key, read the roots, prepare the database."""
        key = load_or_create_key(config.directory)
        try:
            roots = chains.RootStore.from_pem(config.roots_file.read_bytes())
        except OSError as exc:
            raise ValueError(f"cannot read the accepted roots {config.roots_file}: {exc.strerror}") from None
        except ValueError:
            raise ValueError(f"{config.roots_file} holds no PEM certificate to accept as a root") from None
        engine = store.make_engine(config.effective_database_url)
        instance = cls(name=config.name, key=key, roots=roots, engine=engine, merge_delay=config.merge_delay)
        instance.prepare_database()
        return instance

    # -- database ---------------------------------------------------------------------------------

    def prepare_database(self) -> None:
        """Create the tables, claim the database for this log, sign the empty tree's head."""
        store.metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            owner = conn.execute(select(store.head.c.log_id).where(store.head.c.id == store.HEAD_ROW_ID)).scalar()
            if owner is None:
                try:
                    conn.execute(insert(store.head).values(id=store.HEAD_ROW_ID, log_id=self.log_id.hex(), tree_size=0))
                except IntegrityError:  # another process claimed it first; checked below
                    pass
        with self.engine.connect() as conn:
            owner = conn.execute(select(store.head.c.log_id).where(store.head.c.id == store.HEAD_ROW_ID)).scalar_one()
        if owner != self.log_id.hex():
            raise ValueError(f"this database belongs to the log with ID {owner}, not to {self.name} ({self.log_id.hex()})")
        if self.latest_sth() is None:
            self.integrate()

    # -- signing ----------------------------------------------------------------------------------

    def _sign(self, data: bytes) -> bytes:
        signature = self.key.sign(data, ec.ECDSA(hashes.SHA256()))
        return structures.digitally_signed(signature)

    # -- submissions (RFC 6962 §4.1, §4.2) --------------------------------------------------------

    def add_chain(self, chain_ders: list[bytes]) -> SCTResponse:
        try:
            accepted = chains.accept_chain(chain_ders, self.roots)
        except chains.ChainError as exc:
            raise LogError(str(exc)) from None
        return self._record(accepted)

    def add_pre_chain(self, chain_ders: list[bytes]) -> SCTResponse:
        try:
            accepted = chains.accept_pre_chain(chain_ders, self.roots)
        except chains.ChainError as exc:
            raise LogError(str(exc)) from None
        return self._record(accepted)

    def _record(self, accepted: chains.AcceptedChain) -> SCTResponse:
        """Store the entry as pending and return its SCT; a resubmission gets the first SCT back."""
        identity = hashlib.sha256(struct_entry_type(accepted.entry_type) + accepted.signed_entry).digest()
        timestamp = now_ms()
        signature = self._sign(structures.sct_signature_input(timestamp, accepted.entry_type, accepted.signed_entry))
        leaf_input = structures.merkle_tree_leaf(timestamp, accepted.entry_type, accepted.signed_entry)
        try:
            with self.engine.begin() as conn:
                conn.execute(_INSERT_ENTRY, {
                    "identity_hash": identity,
                    "leaf_hash": merkle.leaf_hash(leaf_input),
                    "leaf_input": leaf_input,
                    "extra_data": accepted.extra_data,
                    "timestamp": timestamp,
                    "sct_signature": signature,
                })
        except IntegrityError:
            # The uniqueness of identity_hash, not a check beforehand, makes resubmission safe
            # under concurrency.
            with self.engine.connect() as conn:
                row = conn.execute(
                    select(store.entries.c.timestamp, store.entries.c.sct_signature).where(
                        store.entries.c.identity_hash == identity
                    )
                ).one()
            timestamp, signature = row.timestamp, row.sct_signature
        return SCTResponse(log_id=self.log_id, timestamp=timestamp, signature=signature)

    # -- integration (RFC 6962 §3.5) --------------------------------------------------------------

    def integrate(self) -> SignedTreeHead:
        """Append pending entries to the tree (submission order) and sign the new tree head.

        A new STH is also signed when the tree did not grow but the newest STH is older than the
        merge delay, so monitors see that the log is alive. Runs in one transaction that first
        updates ``ctlog_head``: concurrent integrators (another thread, another process) wait."""
        with self.engine.begin() as conn:
            conn.execute(
                update(store.head)
                .where(store.head.c.id == store.HEAD_ROW_ID)
                .values(integrated_at=dt.datetime.now(dt.timezone.utc))
            )
            old_size = conn.execute(select(store.head.c.tree_size).where(store.head.c.id == store.HEAD_ROW_ID)).scalar_one()
            pending = conn.execute(
                select(store.entries.c.id, store.entries.c.leaf_hash, store.entries.c.timestamp)
                .where(store.entries.c.leaf_index.is_(None))
                .order_by(store.entries.c.id)
                .limit(MAX_ENTRIES_PER_INTEGRATION)
            ).all()
            latest = self._latest_sth(conn)
            if not pending and latest is not None and now_ms() - latest.timestamp < self.merge_delay * 1000:
                return latest
            new_size = old_size + len(pending)
            known: dict[tuple[int, int], bytes] = {}
            for offset, row in enumerate(pending):
                known[(0, old_size + offset)] = row.leaf_hash
            if pending:
                conn.execute(
                    update(store.entries)
                    .where(store.entries.c.id == bindparam("entry_id"))
                    .values(leaf_index=bindparam("new_index")),
                    [{"entry_id": row.id, "new_index": old_size + offset} for offset, row in enumerate(pending)],
                )
            hashes = store.StoredSubtreeHashes(conn, known)
            new_nodes = _complete_perfect_nodes(old_size, new_size, hashes)
            if new_nodes:
                conn.execute(insert(store.nodes), [{"level": l, "idx": i, "hash": h} for (l, i), h in new_nodes.items()])
            root = hashes.subtree_hash(0, new_size) if new_size else merkle.EMPTY_TREE_HASH
            # RFC 6962 §3.5: an STH covers its entries, so it is no older than any of their SCTs,
            # and tree heads never go back in time.
            timestamp = max([now_ms(), *(row.timestamp for row in pending), latest.timestamp if latest else 0])
            signature = self._sign(structures.tree_head_signature_input(timestamp, new_size, root))
            conn.execute(insert(store.sths).values(tree_size=new_size, timestamp=timestamp, root_hash=root, signature=signature))
            conn.execute(update(store.head).where(store.head.c.id == store.HEAD_ROW_ID).values(tree_size=new_size))
        if pending:
            log.info("log %s: integrated %d entries, tree size %d", self.name, len(pending), new_size)
        return SignedTreeHead(tree_size=new_size, timestamp=timestamp, root_hash=root, signature=signature)

    # -- reads (RFC 6962 §4.3-§4.7) ---------------------------------------------------------------

    @staticmethod
    def _latest_sth(conn) -> SignedTreeHead | None:
        row = conn.execute(
            select(store.sths.c.tree_size, store.sths.c.timestamp, store.sths.c.root_hash, store.sths.c.signature)
            .order_by(store.sths.c.id.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        return SignedTreeHead(tree_size=row.tree_size, timestamp=row.timestamp, root_hash=row.root_hash, signature=row.signature)

    def latest_sth(self) -> SignedTreeHead | None:
        with self.engine.connect() as conn:
            return self._latest_sth(conn)

    def get_sth(self) -> SignedTreeHead:
        sth = self.latest_sth()
        if sth is None:  # only before prepare_database() has run
            raise LogError("the log has no tree head yet", status=503)
        return sth

    def get_sth_consistency(self, first: int, second: int) -> list[bytes]:
        current = self.get_sth().tree_size
        if not 0 < first <= second:
            raise LogError(f"'first' ({first}) must be at least 1 and at most 'second' ({second})")
        if second > current:
            raise LogError(f"'second' ({second}) is larger than the current tree size ({current})")
        with self.engine.connect() as conn:
            return merkle.consistency_proof(first, second, store.StoredSubtreeHashes(conn))

    def get_proof_by_hash(self, leaf_hash: bytes, tree_size: int) -> tuple[int, list[bytes]]:
        current = self.get_sth().tree_size
        if not 0 < tree_size <= current:
            raise LogError(f"'tree_size' ({tree_size}) must be between 1 and the current tree size ({current})")
        with self.engine.connect() as conn:
            index = conn.execute(
                select(func.min(store.entries.c.leaf_index)).where(
                    store.entries.c.leaf_hash == leaf_hash, store.entries.c.leaf_index < tree_size
                )
            ).scalar()
            if index is None:
                raise LogError(f"no leaf with hash {base64.b64encode(leaf_hash).decode()} in the tree of size {tree_size}", status=404)
            return index, merkle.inclusion_path(index, tree_size, store.StoredSubtreeHashes(conn))

    def get_entries(self, start: int, end: int) -> list[tuple[bytes, bytes]]:
        current = self.get_sth().tree_size
        if not 0 <= start <= end:
            raise LogError(f"'start' ({start}) must be at least 0 and at most 'end' ({end})")
        if start >= current:
            raise LogError(f"'start' ({start}) is beyond the last entry of the tree (size {current})")
        end = min(end, current - 1, start + MAX_ENTRIES_PER_RESPONSE - 1)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(store.entries.c.leaf_input, store.entries.c.extra_data)
                .where(store.entries.c.leaf_index >= start, store.entries.c.leaf_index <= end)
                .order_by(store.entries.c.leaf_index)
            ).all()
        return [(row.leaf_input, row.extra_data) for row in rows]

    def get_entry_and_proof(self, leaf_index: int, tree_size: int) -> tuple[bytes, bytes, list[bytes]]:
        """RFC 6962 §4.8: (leaf_input, extra_data, audit_path) of entry ``leaf_index`` in the tree
        of ``tree_size`` entries (a size this log has signed a head for, or any size up to it)."""
        current = self.get_sth().tree_size
        if not 0 < tree_size <= current:
            raise LogError(f"'tree_size' ({tree_size}) must be between 1 and the current tree size ({current})")
        if leaf_index >= tree_size:
            raise LogError(f"'leaf_index' ({leaf_index}) must be less than 'tree_size' ({tree_size})")
        with self.engine.connect() as conn:
            row = conn.execute(
                select(store.entries.c.leaf_input, store.entries.c.extra_data)
                .where(store.entries.c.leaf_index == leaf_index)
            ).one()
            return row.leaf_input, row.extra_data, merkle.inclusion_path(leaf_index, tree_size, store.StoredSubtreeHashes(conn))

    def get_roots(self) -> list[bytes]:
        return self.roots.der_list()


def struct_entry_type(entry_type: int) -> bytes:
    return entry_type.to_bytes(2, "big")  # LogEntryType is a uint16 (RFC 6962 §3.1)


def _complete_perfect_nodes(old_size: int, new_size: int, hashes: store.StoredSubtreeHashes) -> dict[tuple[int, int], bytes]:
    """Hashes of the perfect subtrees (level >= 1) that growing the tree from ``old_size`` to
    ``new_size`` completes: those whose last leaf is in [old_size, new_size). Computed level by
    level from their two children, which are either new too or already stored."""
    new_nodes: dict[tuple[int, int], bytes] = {}
    level = 1
    while (1 << level) <= new_size:
        first = old_size >> level  # the first subtree at this level that was not complete before
        last = (new_size >> level) - 1  # the last one that is complete now
        for index in range(first, last + 1):
            left, right = hashes.perfect([(level - 1, 2 * index), (level - 1, 2 * index + 1)])
            value = merkle.node_hash(left, right)
            hashes.known[(level, index)] = value
            new_nodes[(level, index)] = value
        level += 1
    return new_nodes
