"""Number monitoring: follow RFC 6962 logs and find every certificate or precertificate whose
TNAuthList covers given numbers, whoever issued it (the point of STIR certificate transparency).

For each log, one run (:func:`follow`):

1. ``get-sth`` (RFC 6962 §4.3); its signature is checked when the log is one of the policy's
   ``[ct] logs`` (whose key is known), and the report says so when it is not.
2. Against the head verified last time (``ct_monitor_logs``): a smaller tree, or another root for
   the same size, is a log misbehaving and stops the run; a larger tree must be consistent with
   it, by ``get-sth-consistency`` (RFC 6962 §4.4, verified per RFC 9162 §2.1.4.2).
3. ``get-entries`` (§4.6) from where the last run stopped to the new size, in batches; each leaf is
   hashed into the stored compact range (the perfect subtrees of the tree so far), and at the end
   the range must fold to the new head's root: the entries are the ones the head signs.
4. Each entry's certificate (x509_entry) or precertificate (precert_entry; the TBSCertificate in
   the leaf, matched against the precertificate in ``extra_data``) is read; one with a TNAuthList
   is stored (``ct_monitor_entries``, its TNAuthList flattened into ``ct_monitor_scope_entries``)
   and reported when it shares a number (or the SPC) with the watched scope.

Only then is the new head stored, with the entries, in one transaction: a run that fails
anywhere leaves the state of the last good run. Every request has one timeout.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hmac
import json
import struct
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from sqlalchemy import select
from sqlalchemy.orm import Session

from ca import merkle
from ca.errors import ScopeError, TNCAError, TransparencyError
from ca.issuing.transparency import tbs_without_poison
from ca.numbers.tn_entries import SPC
from ca.numbers.tnauthlist import TNScope
from ca.records.queries import interval_probe
from ca.records.models_monitor import MonitoredEntry, MonitoredLog, MonitoredScopeEntry
from ca.x509util import serial_hex

ENTRIES_PER_REQUEST = 256  # RFC 6962 §4.6 lets a log return fewer; we ask for batches of this
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
DEFAULT_TIMEOUT_SECONDS = 10.0
X509_ENTRY, PRECERT_ENTRY = 0, 1  # RFC 6962 §3.4 LogEntryType
_TIMESTAMPED_ENTRY = 0  # RFC 6962 §3.4 MerkleTreeLeafType timestamped_entry
_TREE_HASH = 1  # RFC 6962 §3.2 SignatureType tree_hash


class MonitorError(TNCAError):
    """A log answered something that is not a consistent RFC 6962 log, or did not answer."""


@dataclasses.dataclass(frozen=True)
class SignedTreeHead:
    tree_size: int
    timestamp: int
    root: bytes
    signature: bytes


@dataclasses.dataclass(frozen=True)
class Found:
    log_url: str
    leaf_index: int
    entry_type: str
    serial: str
    issuer: str
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime
    scope: TNScope
    logged_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {"log": self.log_url, "leaf_index": self.leaf_index, "entry_type": self.entry_type,
                "serial": self.serial, "issuer": self.issuer, "subject": self.subject,
                "not_before": self.not_before.isoformat(), "not_after": self.not_after.isoformat(),
                "scope": self.scope.describe(), "logged_at": self.logged_at.isoformat()}


@dataclasses.dataclass(frozen=True)
class FollowResult:
    log_url: str
    previous_size: int
    tree_size: int
    sth_signature_checked: bool
    matches: tuple[Found, ...]
    stir_entries: int  # entries with a TNAuthList read in this run

    def to_json(self) -> dict[str, Any]:
        return {"log": self.log_url, "previous_size": self.previous_size, "tree_size": self.tree_size,
                "sth_signature_checked": self.sth_signature_checked, "stir_entries": self.stir_entries,
                "matches": [found.to_json() for found in self.matches]}


# -- talking to a log -----------------------------------------------------------------------------

class LogReader:
    """The read half of RFC 6962 §4 over HTTP, each request bounded by ``timeout``."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 http: requests.Session | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.http = http or requests.Session()

    def _get(self, path: str, **params: Any) -> Any:
        """One request under one deadline: ``timeout`` bounds each socket wait (connect, first
        byte) and, checked between chunks, the whole answer (a log dripping bytes is cut off)."""
        deadline = time.monotonic() + self.timeout
        body = bytearray()
        try:
            with self.http.get(f"{self.url}/ct/v1/{path}", params=params, timeout=self.timeout,
                               stream=True) as response:
                for chunk in response.iter_content(64 * 1024):
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise MonitorError(f"log {self.url}: {path} answered more than {MAX_RESPONSE_BYTES} bytes")
                    if time.monotonic() > deadline:
                        raise MonitorError(f"log {self.url}: {path}: no complete answer within {self.timeout} s")
        except requests.RequestException as error:
            raise MonitorError(f"log {self.url}: {path} failed: {type(error).__name__}") from None
        if response.status_code != 200:
            raise MonitorError(f"log {self.url}: {path} answered {response.status_code}")
        try:
            return json.loads(body)
        except ValueError:
            raise MonitorError(f"log {self.url}: {path} did not answer JSON") from None

    def get_sth(self) -> SignedTreeHead:
        body = self._get("get-sth")
        try:
            return SignedTreeHead(int(body["tree_size"]), int(body["timestamp"]),
                                  base64.b64decode(body["sha256_root_hash"], validate=True),
                                  base64.b64decode(body["tree_head_signature"], validate=True))
        except (KeyError, TypeError, ValueError) as error:
            raise MonitorError(f"log {self.url}: get-sth is not an RFC 6962 §4.3 answer ({error})") from None

    def get_consistency(self, first: int, second: int) -> list[bytes]:
        body = self._get("get-sth-consistency", first=first, second=second)
        try:
            return [base64.b64decode(h, validate=True) for h in body["consistency"]]
        except (KeyError, TypeError, ValueError) as error:
            raise MonitorError(f"log {self.url}: get-sth-consistency is not an RFC 6962 §4.4 answer ({error})") from None

    def get_entries(self, start: int, end: int) -> list[tuple[bytes, bytes]]:
        body = self._get("get-entries", start=start, end=end)
        try:
            entries = [(base64.b64decode(e["leaf_input"], validate=True), base64.b64decode(e["extra_data"], validate=True))
                       for e in body["entries"]]
        except (KeyError, TypeError, ValueError) as error:
            raise MonitorError(f"log {self.url}: get-entries is not an RFC 6962 §4.6 answer ({error})") from None
        if not entries or len(entries) > end - start + 1:
            raise MonitorError(f"log {self.url}: get-entries {start}..{end} returned {len(entries)} entries")
        return entries


def check_sth_signature(sth: SignedTreeHead, public_key: Any, url: str) -> None:
    """RFC 6962 §3.5: the digitally-signed TreeHeadSignature (version, tree_hash, timestamp, size, root)."""
    signed = struct.pack(">BBQQ", 0, _TREE_HASH, sth.timestamp, sth.tree_size) + sth.root
    data = sth.signature
    if len(data) < 4 or struct.unpack(">H", data[2:4])[0] != len(data) - 4 or data[0] != 4:
        raise MonitorError(f"log {url}: the STH signature is not a SHA-256 DigitallySigned struct")
    signature = data[4:]
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, signed, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise MonitorError(f"log {url}: unsupported log key type")
    except InvalidSignature:
        raise MonitorError(f"log {url}: the STH signature does not verify with the log's key") from None


# -- the tree, incrementally ----------------------------------------------------------------------

def extend(compact: list[tuple[int, bytes]], leaf_hash: bytes) -> None:
    """Add one leaf to a compact range (perfect subtrees, levels strictly decreasing)."""
    level, current = 0, leaf_hash
    while compact and compact[-1][0] == level:
        _, left = compact.pop()
        current = merkle.node_hash(left, current)
        level += 1
    compact.append((level, current))


def compact_root(compact: Sequence[tuple[int, bytes]]) -> bytes:
    return merkle.fold_perfect_subtrees([h for _, h in compact]) if compact else merkle.EMPTY_TREE_HASH


# -- reading entries ------------------------------------------------------------------------------

def _read_u(data: bytes, offset: int, size: int) -> tuple[int, int]:
    if offset + size > len(data):
        raise ValueError("truncated")
    return int.from_bytes(data[offset:offset + size], "big"), offset + size


def parse_entry(leaf: bytes, extra: bytes) -> tuple[str, dt.datetime, x509.Certificate]:
    """(entry type, log timestamp, the certificate or precertificate) of one RFC 6962 §3.4 entry."""
    version, offset = _read_u(leaf, 0, 1)
    leaf_type, offset = _read_u(leaf, offset, 1)
    if version != 0 or leaf_type != _TIMESTAMPED_ENTRY:
        raise ValueError(f"MerkleTreeLeaf version {version} type {leaf_type}")
    timestamp, offset = _read_u(leaf, offset, 8)
    entry_type, offset = _read_u(leaf, offset, 2)
    logged_at = dt.datetime.fromtimestamp(timestamp / 1000, dt.timezone.utc)
    if entry_type == X509_ENTRY:
        length, offset = _read_u(leaf, offset, 3)
        return "x509", logged_at, x509.load_der_x509_certificate(leaf[offset:offset + length])
    if entry_type != PRECERT_ENTRY:
        raise ValueError(f"unknown LogEntryType {entry_type}")
    offset += 32  # issuer_key_hash
    length, offset = _read_u(leaf, offset, 3)
    tbs = leaf[offset:offset + length]
    # PrecertChainEntry (RFC 6962 §4.6): the precertificate, then its chain. The leaf is what the
    # tree signs; the precertificate is read only when its TBS (poison removed) is the leaf's.
    precert_length, precert_offset = _read_u(extra, 0, 3)
    precertificate = x509.load_der_x509_certificate(extra[precert_offset:precert_offset + precert_length])
    if tbs_without_poison(precertificate) != tbs:
        raise ValueError("the precertificate in extra_data is not the one the leaf holds")
    return "precert", logged_at, precertificate


def _watched(scope: TNScope, watch: TNScope) -> bool:
    if scope.overlaps(watch):
        return True
    spcs = {entry.code for entry in watch.entries if isinstance(entry, SPC)}
    return any(isinstance(entry, SPC) and entry.code in spcs for entry in scope.entries)


# -- one run --------------------------------------------------------------------------------------

def follow(session: Session, reader: LogReader, watch: TNScope, *, log_key: Any | None = None,
           now: Callable[[], dt.datetime], batch: int = ENTRIES_PER_REQUEST) -> FollowResult:
    """One run over one log (module docstring). The caller commits; nothing is written on error."""
    state = session.get(MonitoredLog, reader.url)
    previous = state.tree_size if state is not None else 0
    sth = reader.get_sth()
    if log_key is not None:
        check_sth_signature(sth, log_key, reader.url)
    if len(sth.root) != merkle.HASH_SIZE:
        raise MonitorError(f"log {reader.url}: the STH root is not a SHA-256 hash")
    compact: list[tuple[int, bytes]] = []
    if state is not None:
        compact = [(int(level), bytes.fromhex(value)) for level, value in state.compact_range]
        old_root = bytes.fromhex(state.root_hash)
        if sth.tree_size < state.tree_size:
            raise MonitorError(f"log {reader.url}: the tree shrank from {state.tree_size} to {sth.tree_size} entries")
        if sth.tree_size == state.tree_size and not hmac.compare_digest(sth.root, old_root):
            raise MonitorError(f"log {reader.url}: two roots for tree size {sth.tree_size}: the log forked")
        if previous and sth.tree_size > previous:
            try:
                merkle.verify_consistency(previous, sth.tree_size, old_root, sth.root,
                                          reader.get_consistency(previous, sth.tree_size))
            except merkle.ProofError as error:
                raise MonitorError(f"log {reader.url}: the head of size {sth.tree_size} is not consistent with "
                                   f"the one of size {previous} verified before: {error}") from None
    matches: list[Found] = []
    stir = 0
    index = previous
    while index < sth.tree_size:
        end = min(index + batch, sth.tree_size) - 1
        for leaf, extra in reader.get_entries(index, end):
            extend(compact, merkle.leaf_hash(leaf))
            found = _read(session, reader.url, index, leaf, extra, now())
            if found is not None:
                stir += 1
                if _watched(found.scope, watch):
                    matches.append(found)
            index += 1
    if not hmac.compare_digest(compact_root(compact), sth.root):
        raise MonitorError(f"log {reader.url}: entries {previous}..{sth.tree_size - 1} do not hash to the signed "
                           f"root of tree size {sth.tree_size}")
    if state is None:
        state = MonitoredLog(url=reader.url)
        session.add(state)
    state.tree_size, state.root_hash = sth.tree_size, sth.root.hex()
    state.compact_range = [[level, value.hex()] for level, value in compact]
    state.checked_at = now()
    session.flush()
    return FollowResult(reader.url, previous, sth.tree_size, log_key is not None, tuple(matches), stir)


def _read(session: Session, log_url: str, index: int, leaf: bytes, extra: bytes,
          now: dt.datetime) -> Found | None:
    try:
        entry_type, logged_at, certificate = parse_entry(leaf, extra)
        scope = TNScope.from_certificate(certificate)
    except (ValueError, ScopeError, TransparencyError):
        return None  # not a certificate we can read, or no readable TNAuthList: not a STIR entry
    if scope is None:
        return None
    found = Found(log_url, index, entry_type, serial_hex(certificate.serial_number),
                  certificate.issuer.rfc4514_string(), certificate.subject.rfc4514_string(),
                  certificate.not_valid_before_utc, certificate.not_valid_after_utc, scope, logged_at)
    row = MonitoredEntry(log_url=log_url, leaf_index=index, entry_type=entry_type, logged_at=logged_at,
                         serial=found.serial, issuer=found.issuer, subject=found.subject,
                         not_before=found.not_before, not_after=found.not_after, scope_der=scope.to_der(strict=False),
                         found_at=now)
    row.scope_entries = [MonitoredScopeEntry(**r) for r in scope.normalized().index_rows()]
    session.add(row)
    return found


def history(session: Session, tn: str, *, limit: int = 200) -> list[MonitoredEntry]:
    """Entries of any followed log whose TNAuthList covers ``tn`` (newest first; an SPC never does)."""
    number = int(tn)
    # The span-class probe of the auditors' certificate queries, on this table's covering index.
    probe = interval_probe(MonitoredScopeEntry.entry_id, MonitoredScopeEntry, len(tn), number, number)
    return list(session.scalars(select(MonitoredEntry).where(MonitoredEntry.id.in_(probe))
                                .order_by(MonitoredEntry.logged_at.desc()).limit(limit)))


def followed_logs(session: Session) -> list[MonitoredLog]:
    return list(session.scalars(select(MonitoredLog).order_by(MonitoredLog.url)))


def log_keys(logs: Iterable[Any]) -> Mapping[str, Any]:
    """URL -> public key of the policy's ``[ct] logs`` (ca.policy.CTLog), for STH signatures."""
    keys = {}
    for log in logs:
        try:
            keys[log.url.rstrip("/")] = load_pem_public_key(log.public_key.read_bytes())
        except (OSError, ValueError):
            continue
    return keys
