"""The authority's certificate-transparency client (RFC 6962 §3.1-§3.3, §4.1-§4.2).

Every call-signing certificate carries its SCTs embedded (RFC 6962 §3.3), obtained through the
precertificate route at issuance, because a verifier checks them during a call and cannot query
logs then. So the authority fails closed: :func:`submit_precertificate` sends the
precertificate to every configured log at once, verifies each SCT it gets back, and raises
:class:`ca.errors.TransparencyError` unless the policy's number of *valid* SCTs from *distinct*
logs arrived within the deadline. Building the precertificate (final TBS + critical poison) is
the issuance pipeline's job; :func:`sct_list_extension` turns the SCTs into the extension of the
final certificate, and :func:`verify_embedded_scts` checks a finished certificate.

SCT verification here is this module's own (the log's code in ``ctlog/`` is not imported), so the
two sides check each other. TLS structures are packed with ``struct``, one field per line.

Not checked: that a log is trustworthy or still qualified (the policy decides which logs count),
and nothing about inclusion: an SCT is a promise to include within the log's maximum merge delay.
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import datetime as dt
import hashlib
import os
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ

from ca import metrics
from ca.clock import Clock, SystemClock
from ca.errors import TransparencyError
from ca.policy import CTLog, CTPolicy
from ca.x509util import tbs_without_extension

# RFC 6962 §3.3: the X.509v3 extension carrying embedded SCTs.
SCT_LIST_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
# RFC 6962 §3.1: the critical extension that makes a precertificate unusable as a certificate.
PRECERT_POISON_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.3")

SCT_VERSION_V1 = 0  # RFC 6962 §3.2: enum { v1(0), (255) } Version
SIGNATURE_TYPE_CERTIFICATE_TIMESTAMP = 0  # RFC 6962 §3.2: SignatureType certificate_timestamp(0)
ENTRY_TYPE_PRECERT = 1  # RFC 6962 §3.1: LogEntryType precert_entry(1)
HASH_ALGORITHM_SHA256 = 4  # RFC 5246 §7.4.1.4.1: HashAlgorithm sha256(4)
SIGNATURE_ALGORITHM_RSA = 1  # RFC 5246 §7.4.1.4.1: SignatureAlgorithm rsa(1)
SIGNATURE_ALGORITHM_ECDSA = 3  # RFC 5246 §7.4.1.4.1: SignatureAlgorithm ecdsa(3)
LOG_ID_BYTES = 32  # RFC 6962 §3.2: struct { opaque key_id[32]; } LogID
# RFC 6962 §5.2: clients reject an SCT whose timestamp is in the future, so an SCT from a log
# whose clock runs ahead would make the certificate fail for a while. Allow this much.
MAX_SCT_CLOCK_SKEW = dt.timedelta(seconds=60)
# How much of a log's error body is quoted in a TransparencyError detail.
MAX_QUOTED_ERROR = 200

USER_AGENT = "tnca-ct-client/0.1"


@dataclass(frozen=True)
class SCT:
    """A v1 SignedCertificateTimestamp (RFC 6962 §3.2)."""

    log_id: bytes
    timestamp: int  # milliseconds since the epoch
    extensions: bytes
    hash_algorithm: int
    signature_algorithm: int
    signature: bytes  # DER Ecdsa-Sig-Value or RSA PKCS#1 v1.5 signature
    version: int = SCT_VERSION_V1
    # Not part of the SCT: where it came from, for the issuance record (set by submit_precertificate).
    log_url: str = field(default="", compare=False)

    @property
    def datetime(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.timestamp / 1000, tz=dt.timezone.utc)

    def serialize(self) -> bytes:
        """The TLS encoding of the SCT: one SerializedSCT of a SignedCertificateTimestampList."""
        return b"".join((
            struct.pack(">B", self.version),                          # Version sct_version
            self.log_id,                                              # LogID id (opaque key_id[32])
            struct.pack(">Q", self.timestamp),                        # uint64 timestamp
            struct.pack(">H", len(self.extensions)), self.extensions,  # CtExtensions extensions<0..2^16-1>
            struct.pack(">B", self.hash_algorithm),                   # digitally-signed: HashAlgorithm hash
            struct.pack(">B", self.signature_algorithm),              # digitally-signed: SignatureAlgorithm signature
            struct.pack(">H", len(self.signature)), self.signature,   # digitally-signed: opaque signature<0..2^16-1>
        ))

    @classmethod
    def from_tls(cls, data: bytes) -> "SCT":
        """Parse exactly one TLS-encoded SCT; raises TransparencyError on anything malformed."""
        reader = _Reader(data, "SCT")
        version = reader.uint(1)
        if version != SCT_VERSION_V1:
            raise TransparencyError(f"SCT version {version} is not v1 (0): cannot verify it", field="sct")
        sct = cls(
            log_id=reader.take(LOG_ID_BYTES),
            timestamp=reader.uint(8),
            extensions=reader.take(reader.uint(2)),
            hash_algorithm=reader.uint(1),
            signature_algorithm=reader.uint(1),
            signature=reader.take(reader.uint(2)),
            version=version,
        )
        reader.finish()
        return sct

    @classmethod
    def from_json(cls, body: Any) -> "SCT":
        """Parse an add-chain / add-pre-chain response (RFC 6962 §4.1)."""
        if not isinstance(body, dict):
            raise TransparencyError("the log's response is not a JSON object", field="sct")
        version = body.get("sct_version")
        # RFC 6962 §4.1 calls sct_version "the version of the SignedCertificateTimestamp
        # structure"; v1 is 0. Anything else cannot be verified by this client.
        if version != SCT_VERSION_V1 or isinstance(version, bool):
            raise TransparencyError(f"'sct_version' is {version!r}, expected 0 (v1)", field="sct_version")
        timestamp = body.get("timestamp")
        if isinstance(timestamp, bool) or not isinstance(timestamp, int) or not 0 <= timestamp < 2**64:
            raise TransparencyError(f"'timestamp' is {timestamp!r}, expected milliseconds as an integer", field="timestamp")
        log_id = _b64_field(body, "id")
        if len(log_id) != LOG_ID_BYTES:
            raise TransparencyError(f"'id' is {len(log_id)} bytes, expected {LOG_ID_BYTES}", field="id")
        extensions = _b64_field(body, "extensions")
        reader = _Reader(_b64_field(body, "signature"), "'signature'")
        hash_algorithm, signature_algorithm = reader.uint(1), reader.uint(1)
        signature = reader.take(reader.uint(2))
        reader.finish()
        return cls(log_id=log_id, timestamp=timestamp, extensions=extensions, hash_algorithm=hash_algorithm,
                   signature_algorithm=signature_algorithm, signature=signature)


class _Reader:
    """Reads TLS fields off a byte string; every shortfall is a TransparencyError."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.offset, self.what = data, 0, what

    def take(self, count: int) -> bytes:
        if self.offset + count > len(self.data):
            raise TransparencyError(f"{self.what} is truncated at byte {self.offset}", field="sct")
        chunk = self.data[self.offset:self.offset + count]
        self.offset += count
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def finish(self) -> None:
        if self.offset != len(self.data):
            raise TransparencyError(f"{self.what} has {len(self.data) - self.offset} trailing bytes", field="sct")


def _b64_field(body: dict, name: str) -> bytes:
    value = body.get(name)
    if not isinstance(value, str):
        raise TransparencyError(f"'{name}' is missing or not a string", field=name)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise TransparencyError(f"'{name}' is not valid base64", field=name) from None


# -- signature input and verification --------------------------------------------------------------

def issuer_key_hash(issuer: x509.Certificate) -> bytes:
    """RFC 6962 §3.2: SHA-256 of the DER SubjectPublicKeyInfo of the CA that issues the final certificate."""
    spki = issuer.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


def precert_signature_input(sct: SCT, issuer_key_hash: bytes, tbs_certificate: bytes) -> bytes:
    """What the log signed for a precertificate SCT (RFC 6962 §3.2 ``digitally-signed struct``)."""
    if len(tbs_certificate) >= 2**24:
        raise TransparencyError("TBSCertificate is too large for a CT entry", field="tbs_certificate")
    return b"".join((
        struct.pack(">B", sct.version),                           # Version sct_version
        struct.pack(">B", SIGNATURE_TYPE_CERTIFICATE_TIMESTAMP),  # SignatureType signature_type
        struct.pack(">Q", sct.timestamp),                         # uint64 timestamp
        struct.pack(">H", ENTRY_TYPE_PRECERT),                    # LogEntryType entry_type = precert_entry
        issuer_key_hash,                                          # PreCert: opaque issuer_key_hash[32]
        struct.pack(">I", len(tbs_certificate))[1:],              # PreCert: TBSCertificate length (uint24)
        tbs_certificate,                                          # PreCert: TBSCertificate, no poison
        struct.pack(">H", len(sct.extensions)), sct.extensions,    # CtExtensions extensions
    ))


class LogClient:
    """One log the authority submits to: its URL, its key (hence its log ID), one keep-alive
    HTTP session. ``requests.Session`` shares a thread-safe connection pool; nothing else on it
    (cookies, auth) is used, so request threads may share one client."""

    def __init__(self, name: str, url: str, public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
                 *, session: requests.Session | None = None) -> None:
        if not isinstance(public_key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
            raise TransparencyError(f"log {name}: RFC 6962 §2.1.4 log keys are ECDSA or RSA", field="public_key")
        self.name = name
        self.url = url.rstrip("/")
        self.public_key = public_key
        self.public_key_der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        # RFC 6962 §3.2: "LogID ... the SHA-256 hash of the log's public key".
        self.log_id = hashlib.sha256(self.public_key_der).digest()
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", USER_AGENT)

    @classmethod
    def from_pem_file(cls, name: str, url: str, public_key_file: Path, *, session: requests.Session | None = None) -> "LogClient":
        try:
            key = serialization.load_pem_public_key(Path(public_key_file).read_bytes())
        except OSError as exc:
            raise TransparencyError(f"log {name}: cannot read its public key {public_key_file}: {exc.strerror}", field="public_key") from None
        except (ValueError, TypeError):
            raise TransparencyError(f"log {name}: {public_key_file} is not a PEM public key", field="public_key") from None
        return cls(name, url, key, session=session)

    @classmethod
    def from_policy(cls, log: CTLog) -> "LogClient":
        """From the policy's ``[ct] logs`` entry (name, url, public_key file)."""
        return cls.from_pem_file(log.name, log.url, log.public_key)

    def __repr__(self) -> str:
        return f"LogClient({self.name!r}, {self.url!r}, log_id={self.log_id_b64})"

    @property
    def log_id_b64(self) -> str:
        return base64.b64encode(self.log_id).decode()

    def describe(self) -> dict[str, str]:
        """What ``tnca ct logs --json`` prints for the log."""
        return {
            "name": self.name,
            "url": self.url,
            "log_id": self.log_id_b64,
            "public_key": base64.b64encode(self.public_key_der).decode(),
        }

    def add_pre_chain(self, chain_ders: Sequence[bytes], *, timeout: float) -> SCT:
        """POST add-pre-chain (RFC 6962 §4.2); the SCT as the log sent it, not yet verified."""
        body = {"chain": [base64.b64encode(der).decode() for der in chain_ders]}
        try:
            response = self.session.post(f"{self.url}/ct/v1/add-pre-chain", json=body, timeout=timeout)
        except requests.Timeout:
            # The same words as a future still running at the deadline in submit_precertificate:
            # which of the two timers fires first is a race, and the operator sees one outcome.
            raise TransparencyError(f"no SCT within the deadline of {timeout:g} s", field="log", reason="deadline") from None
        except requests.RequestException as exc:
            raise TransparencyError(f"cannot reach the log: {_short(exc)}", field="log", reason="unreachable") from None
        if response.status_code != 200:
            raise TransparencyError(f"HTTP {response.status_code}: {_quoted_error(response)}", field="log", reason="refused")
        try:
            payload = response.json()
        except ValueError:
            raise TransparencyError("the response is not JSON", field="log", reason="malformed") from None
        return SCT.from_json(payload)

    def verify_sct(self, sct: SCT, *, issuer_key_hash: bytes, tbs_certificate: bytes) -> None:
        """Raise TransparencyError unless ``sct`` is this log's signature over the precert entry."""
        if sct.version != SCT_VERSION_V1:
            raise TransparencyError(f"SCT version {sct.version} is not v1", field="sct")
        if sct.log_id != self.log_id:
            raise TransparencyError(
                f"SCT log ID {base64.b64encode(sct.log_id).decode()} is not this log's ({self.log_id_b64})", field="sct"
            )
        if sct.hash_algorithm != HASH_ALGORITHM_SHA256:
            raise TransparencyError(f"SCT hash algorithm {sct.hash_algorithm} is not sha256 (4)", field="sct")
        data = precert_signature_input(sct, issuer_key_hash, tbs_certificate)
        try:
            if isinstance(self.public_key, ec.EllipticCurvePublicKey):
                if sct.signature_algorithm != SIGNATURE_ALGORITHM_ECDSA:
                    raise TransparencyError(f"SCT signature algorithm {sct.signature_algorithm} is not ecdsa (3)", field="sct")
                self.public_key.verify(sct.signature, data, ec.ECDSA(hashes.SHA256()))
            else:
                if sct.signature_algorithm != SIGNATURE_ALGORITHM_RSA:
                    raise TransparencyError(f"SCT signature algorithm {sct.signature_algorithm} is not rsa (1)", field="sct")
                self.public_key.verify(sct.signature, data, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise TransparencyError("SCT signature does not verify over the precertificate entry", field="sct") from None


def _short(exc: Exception) -> str:
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    return text[:MAX_QUOTED_ERROR]


def _quoted_error(response: requests.Response) -> str:
    try:
        message = response.json().get("error_message")
    except (ValueError, AttributeError):
        message = None
    text = message if isinstance(message, str) else response.text
    return (text or response.reason or "").strip()[:MAX_QUOTED_ERROR]


# -- submission ------------------------------------------------------------------------------------

def submit_precertificate(
    logs: Sequence[LogClient],
    precert_der: bytes,
    chain_ders: Sequence[bytes],
    *,
    deadline_per_log: float,
    required: int,
    clock: Clock | None = None,
) -> list[SCT]:
    """Submit a precertificate to every log at once; return the verified SCTs (policy order).

    ``chain_ders`` is the precertificate's issuer and, optionally, the certificates up to the
    root (RFC 6962 §4.2). All logs are asked concurrently, each with ``deadline_per_log`` seconds;
    the call returns when every log has answered or the deadline has passed, so one dead log
    costs at most the deadline and the others' SCTs are all embedded. Each SCT is verified
    against its log's key over the precertificate entry (issuer key hash + TBSCertificate
    without the poison, RFC 6962 §3.2) and must not be dated in the future.

    Raises :class:`TransparencyError` naming every log that failed and why, unless at least
    ``required`` valid SCTs from distinct logs arrived (RFC 6962 §3.3, STI-CT fail-closed).
    """
    clock = clock or SystemClock()
    if required > len(logs):
        raise TransparencyError(f"{required} SCTs are required but only {len(logs)} log(s) are configured", field="ct")
    if len({log.log_id for log in logs}) != len(logs):
        raise TransparencyError("two configured logs have the same key: their SCTs would not be from distinct logs", field="ct")
    if not logs:
        return []
    precertificate = _load_precertificate(precert_der)
    if not chain_ders:
        raise TransparencyError("the precertificate must be submitted with its issuer", field="chain")
    try:
        issuer = x509.load_der_x509_certificate(chain_ders[0])
    except ValueError as exc:
        raise TransparencyError(f"the precertificate's issuer is not a DER certificate: {exc}", field="chain") from None
    if precertificate.issuer != issuer.subject:
        raise TransparencyError(
            "the precertificate was not issued by chain[0] (a Precertificate Signing Certificate is not supported here)",
            field="chain",
        )
    key_hash = issuer_key_hash(issuer)
    tbs = tbs_without_poison(precertificate)
    submitted_chain = [precert_der, *chain_ders]

    start = time.monotonic()
    executor = _submission_threads()
    futures = {executor.submit(_timed_add_pre_chain, log, submitted_chain, deadline_per_log): log for log in logs}
    done, not_done = concurrent.futures.wait(futures, timeout=deadline_per_log)
    # Never wait for a hung log: its thread is free again when its request times out. A
    # submission still queued behind busy threads is dropped (it has missed its deadline).
    for future in not_done:
        future.cancel()
    elapsed = time.monotonic() - start

    verified: dict[bytes, SCT] = {}
    failures: list[str] = []
    latest_acceptable = clock.now() + MAX_SCT_CLOCK_SKEW
    for log in logs:
        future = next(f for f, owner in futures.items() if owner is log)
        if future in not_done:
            failures.append(f"{log.name} ({log.url}): no SCT within the deadline of {deadline_per_log:g} s")
            metrics.ct_submission_failed(log.name, "deadline")
            continue
        stage = "malformed"  # an answer that is no SCT; once parsed, one that does not verify
        try:
            sct = future.result()
            stage = "invalid_sct"
            log.verify_sct(sct, issuer_key_hash=key_hash, tbs_certificate=tbs)
            if sct.datetime > latest_acceptable:
                raise TransparencyError(f"SCT timestamp {sct.datetime.isoformat()} is in the future", field="sct")
        except TransparencyError as exc:
            failures.append(f"{log.name} ({log.url}): {exc.detail}")
            metrics.ct_submission_failed(log.name, exc.reason or stage)
            continue
        verified[log.log_id] = replace(sct, log_url=log.url)

    if len(verified) < required:
        raise TransparencyError(
            f"{len(verified)} valid SCT(s) from distinct logs after {elapsed:.1f} s, {required} required; "
            + "; ".join(failures),
            field="ct",
        )
    return [verified[log.log_id] for log in logs if log.log_id in verified]


# The submissions of one process run on one pool of long-lived threads: a pool made per
# precertificate started (and tore down) a thread per log for every issuance, ~1 ms of CPU each.
# Sized for every request thread of a worker submitting to a handful of logs at once, plus hung
# submissions still waiting out their deadline; threads start only as they are needed.
SUBMISSION_THREADS = 32
_submission_pool: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None
_submission_pool_lock = threading.Lock()


def _submission_threads() -> concurrent.futures.ThreadPoolExecutor:
    """This process's submission pool (made again after a fork: a child inherits no threads)."""
    global _submission_pool
    with _submission_pool_lock:
        if _submission_pool is None or _submission_pool[0] != os.getpid():
            _submission_pool = (os.getpid(), concurrent.futures.ThreadPoolExecutor(
                max_workers=SUBMISSION_THREADS, thread_name_prefix="ct-submit"))
        return _submission_pool[1]


def _timed_add_pre_chain(log: LogClient, chain: Sequence[bytes], timeout: float) -> SCT:
    """``log.add_pre_chain``, its duration observed per log (``tnca_ct_submission_duration_seconds``)."""
    started = time.monotonic()
    try:
        return log.add_pre_chain(chain, timeout=timeout)
    finally:
        metrics.observe_ct_submission(log.name, time.monotonic() - started)


def tbs_without_poison(precertificate: x509.Certificate) -> bytes:
    """RFC 6962 §3.2: the precert entry's TBSCertificate is the precertificate's "without the
    signature and the poison extension". (cryptography's ``tbs_precertificate_bytes`` strips the
    SCT list of a final certificate and refuses a precertificate, which has none.) The DER is
    edited in place (``ca.x509util.tbs_without_extension``): every other byte is the precertificate's."""
    try:
        return tbs_without_extension(precertificate.tbs_certificate_bytes, PRECERT_POISON_OID)
    except ValueError as exc:
        raise TransparencyError(f"cannot take the poison out of the precertificate's TBSCertificate: {exc}",
                                field="precertificate") from None


def _load_precertificate(precert_der: bytes) -> x509.Certificate:
    try:
        precertificate = x509.load_der_x509_certificate(precert_der)
        poison = precertificate.extensions.get_extension_for_oid(PRECERT_POISON_OID)
    except x509.ExtensionNotFound:
        raise TransparencyError("the precertificate has no poison extension 1.3.6.1.4.1.11129.2.4.3", field="precertificate") from None
    except ValueError as exc:
        raise TransparencyError(f"the precertificate is not a DER certificate: {exc}", field="precertificate") from None
    if not poison.critical:
        raise TransparencyError("the precertificate's poison extension must be critical (RFC 6962 §3.1)", field="precertificate")
    return precertificate


# -- embedding (RFC 6962 §3.3) ---------------------------------------------------------------------

class SerializableSCT(Protocol):
    """What the list needs of an SCT: :class:`SCT`, or ``ca.issuing.issuance.EmbeddableSCT``."""

    def serialize(self) -> bytes: ...


def sct_list_bytes(scts: Sequence[SerializableSCT]) -> bytes:
    """The TLS ``SignedCertificateTimestampList`` (RFC 6962 §3.3).

    The one encoder of the list: issuance embeds it, the tests check it against RFC 6962 §3.3
    and against cryptography's parser (tests/ct/rfc6962/test_s3_2_sct.py)."""
    if not scts:
        raise TransparencyError("an SCT list holds at least one SCT (RFC 6962 §3.3: sct_list<1..2^16-1>)", field="sct")
    serialized = b"".join(struct.pack(">H", len(tls)) + tls for tls in (sct.serialize() for sct in scts))  # SerializedSCT<1..2^16-1>
    return struct.pack(">H", len(serialized)) + serialized  # sct_list<1..2^16-1>


def sct_list_extension(scts: Sequence[SerializableSCT]) -> x509.UnrecognizedExtension:
    """The embedded-SCT extension's value, for ``CertificateBuilder.add_extension(..., critical=False)``.

    RFC 6962 §3.3: "SignedCertificateTimestampList ... encoded as an ASN.1 OCTET STRING and
    inserted into the extnValue", which is itself an OCTET STRING: two layers. The builder writes
    the outer one (extnValue); the value here is the inner OCTET STRING. cryptography's own
    ``PrecertificateSignedCertificateTimestamps`` cannot be used in a builder with SCTs made
    from bytes (it has no public constructor for them), hence UnrecognizedExtension.
    """
    return x509.UnrecognizedExtension(SCT_LIST_OID, der_encoder.encode(univ.OctetString(sct_list_bytes(scts))))


def parse_sct_list(extension_value: bytes) -> list[SCT]:
    """The SCTs of an embedded-SCT extension value (the inner OCTET STRING, DER)."""
    try:
        inner, rest = der_decoder.decode(extension_value, asn1Spec=univ.OctetString())
    except PyAsn1Error:
        raise TransparencyError("the SCT list extension is not a DER OCTET STRING (RFC 6962 §3.3)", field="sct") from None
    if rest:
        raise TransparencyError("trailing bytes after the SCT list's OCTET STRING", field="sct")
    reader = _Reader(bytes(inner), "SCT list")
    body = _Reader(reader.take(reader.uint(2)), "SCT list")
    reader.finish()
    scts = []
    while body.offset < len(body.data):
        scts.append(SCT.from_tls(body.take(body.uint(2))))
    if not scts:
        raise TransparencyError("the SCT list is empty", field="sct")
    return scts


def verify_embedded_scts(cert: x509.Certificate, issuer_cert: x509.Certificate, logs: Sequence[LogClient],
                         *, required: int = 1) -> list[SCT]:
    """Verify the SCTs embedded in a final certificate (RFC 6962 §3.3, the checks of a verifier).

    The precertificate entry is rebuilt from the certificate: its TBSCertificate without the SCT
    list (cryptography's ``tbs_precertificate_bytes``) and ``issuer_cert``'s key hash. SCTs from
    logs not in ``logs`` cannot be checked and do not count; an SCT from a known log that does
    not verify is an error. Returns the verified SCTs; raises TransparencyError unless at least
    ``required`` verified SCTs come from distinct logs. Nothing about the certificate's own
    signature or chain is checked here.
    """
    try:
        extension = cert.extensions.get_extension_for_oid(SCT_LIST_OID)
    except x509.ExtensionNotFound:
        raise TransparencyError("the certificate carries no embedded SCT list (1.3.6.1.4.1.11129.2.4.2)", field="sct") from None
    value = extension.value
    raw = value.value if isinstance(value, x509.UnrecognizedExtension) else value.public_bytes()
    scts = parse_sct_list(raw)
    by_id = {log.log_id: log for log in logs}
    key_hash = issuer_key_hash(issuer_cert)
    tbs = cert.tbs_precertificate_bytes
    verified: dict[bytes, SCT] = {}
    unknown = []
    for sct in scts:
        log = by_id.get(sct.log_id)
        if log is None:
            unknown.append(base64.b64encode(sct.log_id).decode())
            continue
        try:
            log.verify_sct(sct, issuer_key_hash=key_hash, tbs_certificate=tbs)
        except TransparencyError as exc:
            raise TransparencyError(f"embedded SCT from log {log.name}: {exc.detail}", field="sct") from None
        verified.setdefault(sct.log_id, sct)
    if len(verified) < required:
        detail = f"{len(verified)} verified SCT(s) from distinct known logs, {required} required"
        if unknown:
            detail += f"; SCTs from unknown logs: {', '.join(unknown)}"
        raise TransparencyError(detail, field="sct")
    return list(verified.values())


# -- the issuance pipeline's seam ------------------------------------------------------------------

class Issuer(Protocol):
    """What :meth:`CTSubmitter.submit` needs of an issuer handle (``ca.issuing.issuance.IssuerHandle``)."""

    certificate: x509.Certificate
    chain: Sequence[x509.Certificate]


class CTSubmitter:
    """The ``transparency`` argument of ``ca.issuing.issuance.issue``: the policy's logs, count, deadline."""

    def __init__(self, logs: Sequence[LogClient], *, required: int, deadline: float, clock: Clock | None = None) -> None:
        if required > len(logs):
            raise TransparencyError(f"{required} SCTs are required but only {len(logs)} log(s) are configured", field="ct")
        self.logs = tuple(logs)
        self.required = required
        self.deadline = deadline
        self.clock = clock

    @classmethod
    def from_policy(cls, ct_policy: CTPolicy, *, clock: Clock | None = None) -> "CTSubmitter":
        """From the policy's ``[ct]`` (required_scts, submission_deadline, logs)."""
        return cls(
            [LogClient.from_policy(log) for log in ct_policy.logs],
            required=ct_policy.required_scts,
            deadline=ct_policy.submission_deadline.total_seconds(),
            clock=clock,
        )

    def submit(self, precertificate_der: bytes, issuer: Issuer | x509.Certificate) -> list[SCT]:
        """Verified SCTs for the precertificate, or TransparencyError (see submit_precertificate)."""
        if isinstance(issuer, x509.Certificate):
            chain = [issuer]
        else:
            chain = list(issuer.chain) or [issuer.certificate]
            if chain[0] != issuer.certificate:
                chain.insert(0, issuer.certificate)
        return submit_precertificate(
            self.logs,
            precertificate_der,
            [c.public_bytes(serialization.Encoding.DER) for c in chain],
            deadline_per_log=self.deadline,
            required=self.required,
            clock=self.clock,
        )
