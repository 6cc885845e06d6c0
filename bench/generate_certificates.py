"""Fill a PostgreSQL database with a year of an authority's life: 1,000,000 certificates by default.

    python -m bench.generate_certificates --database-url postgresql+psycopg://postgres@127.0.0.1:5432/tnca_bench

The database is wiped (schema ``public`` dropped) and built by the Alembic migrations, exactly as
``tnca init`` builds it; then rows are streamed in with ``COPY … FROM STDIN`` (psycopg 3),
which is what makes a million rows take a minute rather than an hour. ``bench/audit_query.py``
then measures the audit queries over it.

What a year looks like here (the mix matters: it decides how many index entries share a number):

- 2,000 delegations of 1,000-number blocks to 500 delegates, spread over 200 NPA-NXX prefixes of
  the +1 numbering plan.
- 60 % STAR-style daily renewals (RFC 8739): 1,644 "hot" numbers, one 24-hour certificate each
  per day, so a hot number has 365 certificates and exactly one valid at any instant.
- 30 % one-off certificates for single numbers anywhere in the delegated blocks.
- 9 % ranges of 10 to 1,000 numbers inside a block, renewed weekly (7-day certificates).
- 1 % an SPC, or a whole 1,000-number block.
- 5 % of certificates carry a second entry (the delegation's SPC); 1 % are revoked.
- Every issuance, revocation and delegation has its audit event, hash-chained exactly as
  ``ca/records/audit.py`` chains them, so ``tnca audit verify`` holds over the result.

Rows are what ``ca.issuing.issuance.issue`` writes, except that ``der`` is one fixed 650-byte blob (the
size of a typical delegate certificate; the audit queries never parse it) and keys, serials and
fingerprints are random. The TNAuthList DER is real (checked against ``ca.numbers.tnauthlist_der.encode``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import text

from ca.records import audit
from ca.records.migrate import upgrade
from ca.records.models_authority import span_digits
from ca.records.store import make_engine
from ca.numbers.tn_entries import SPC, TN, TNRange
from ca.numbers.tnauthlist_der import encode

DEFAULT_COUNT = 1_000_000
YEAR_START = dt.datetime(2025, 1, 1)  # naive UTC, as stored
DAYS = 365
BLOCK = 1000
DELEGATIONS = 2000
DELEGATES = 500
PREFIXES = 200  # NPA-NXX prefixes of 10,000 numbers; 2,000 blocks of 1,000 fill them
DER_PLACEHOLDER = bytes(range(256)) * 2 + bytes(138)  # 650 bytes


# ------------------------------------------------------------------------------------------
# TNAuthList DER without pyasn1 (a million encodings through pyasn1 take minutes)
# ------------------------------------------------------------------------------------------


def _tlv(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes((tag, length)) + content
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(octets))) + octets + content


def _integer(value: int) -> bytes:
    return _tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def der_tn(number: str) -> bytes:
    return _tlv(0xA2, _tlv(0x16, number.encode("ascii")))  # one [2] EXPLICIT TelephoneNumber


def der_range(start: str, count: int) -> bytes:
    return _tlv(0xA1, _tlv(0x30, _tlv(0x16, start.encode("ascii")) + _integer(count)))  # range [1]


def der_spc(code: str) -> bytes:
    return _tlv(0xA0, _tlv(0x16, code.encode("ascii")))  # spc [0]


def der_list(*entries: bytes) -> bytes:
    return _tlv(0x30, b"".join(entries))


def _check_encoder() -> None:
    """The hand encoder must produce exactly what ca.numbers.tnauthlist does."""
    assert der_list(der_tn("12025550100")) == encode([TN("12025550100")])
    assert der_list(der_range("12025550100", 300)) == encode([TNRange("12025550100", 300)])
    assert der_list(der_range("12025550100", 128)) == encode([TNRange("12025550100", 128)])
    assert der_list(der_spc("1234"), der_tn("12025550100")) == encode([SPC("1234"), TN("12025550100")])


# ------------------------------------------------------------------------------------------
# The year
# ------------------------------------------------------------------------------------------


@dataclass
class Delegation:
    id: str
    delegate: str
    spc: str
    block_start: int  # first number of its 1,000-number block (11 digits)
    created_at: dt.datetime


@dataclass
class Certificate:
    id: int
    serial: str
    delegation: Delegation
    entries: list[tuple]  # ("tn", number) | ("range", start, count) | ("spc", code)
    not_before: dt.datetime
    not_after: dt.datetime
    spki: str


def _prefixes(rng: random.Random) -> list[int]:
    """PREFIXES distinct +1 NPA-NXX values as 7-digit integers (1 NPA NXX)."""
    seen: set[int] = set()
    while len(seen) < PREFIXES:
        npa, nxx = rng.randrange(201, 990), rng.randrange(200, 999)
        seen.add(1_000_000 + npa * 1000 + nxx)
    return sorted(seen)


def make_delegations(rng: random.Random) -> list[Delegation]:
    blocks = [prefix * 10_000 + b * BLOCK for prefix in _prefixes(rng) for b in range(10_000 // BLOCK)]
    rng.shuffle(blocks)
    result = []
    for index in range(DELEGATIONS):
        delegate = index % DELEGATES
        result.append(Delegation(
            id=f"bench{index:06d}", delegate=f"Enterprise {delegate:03d}", spc=f"S{delegate:03d}",
            block_start=blocks[index], created_at=YEAR_START - dt.timedelta(days=30, minutes=index)))
    return result


def make_certificates(rng: random.Random, delegations: list[Delegation], count: int) -> Iterator[Certificate]:
    star = int(count * 0.60)
    hot_numbers = max(1, star // DAYS)
    one_off = int(count * 0.30)
    ranges = int(count * 0.09)
    rest = count - star - one_off - ranges
    next_id = 1

    def make(delegation: Delegation, entries: list[tuple], not_before: dt.datetime, lifetime: dt.timedelta,
             spki: str) -> Certificate:
        nonlocal next_id
        if rng.random() < 0.05 and entries[0][0] != "spc":
            entries = [("spc", delegation.spc), *entries]
        certificate = Certificate(next_id, f"{rng.getrandbits(127) | (1 << 126):x}", delegation, entries, not_before,
                                  not_before + lifetime, spki)
        next_id += 1
        return certificate

    # STAR-style: each hot number renewed daily, one valid certificate at any instant.
    hot = [(rng.choice(delegations), rng.randrange(BLOCK)) for _ in range(hot_numbers)]
    made = 0
    for day in range(DAYS):
        for delegation, offset in hot:
            if made >= star:
                break
            not_before = YEAR_START + dt.timedelta(days=day, seconds=offset * 7)
            spki = hashlib.sha256(f"{delegation.id}{offset}".encode()).hexdigest()
            yield make(delegation, [("tn", str(delegation.block_start + offset))], not_before, dt.timedelta(days=1), spki)
            made += 1
    one_off += star - made  # whatever the hot numbers did not fill
    for _ in range(one_off):
        delegation = rng.choice(delegations)
        not_before = YEAR_START + dt.timedelta(seconds=rng.randrange(DAYS * 86400))
        yield make(delegation, [("tn", str(delegation.block_start + rng.randrange(BLOCK)))], not_before,
                   dt.timedelta(days=1), f"{rng.getrandbits(256):064x}")
    for _ in range(ranges):
        delegation = rng.choice(delegations)
        size = rng.choice([10, 20, 50, 100, 100, 200, 500, 1000])
        start = delegation.block_start + rng.randrange(BLOCK - size + 1)
        not_before = YEAR_START + dt.timedelta(seconds=rng.randrange(DAYS * 86400))
        yield make(delegation, [("range", str(start), size)], not_before, dt.timedelta(days=7),
                   f"{rng.getrandbits(256):064x}")
    for _ in range(rest):
        delegation = rng.choice(delegations)
        entries = [("spc", delegation.spc)] if rng.random() < 0.5 else [("range", str(delegation.block_start), BLOCK)]
        not_before = YEAR_START + dt.timedelta(seconds=rng.randrange(DAYS * 86400))
        yield make(delegation, entries, not_before, dt.timedelta(days=1), f"{rng.getrandbits(256):064x}")


def scope_der(entries: list[tuple]) -> bytes:
    parts = []
    for entry in entries:
        if entry[0] == "tn":
            parts.append(der_tn(entry[1]))
        elif entry[0] == "range":
            parts.append(der_range(entry[1], entry[2]))
        else:
            parts.append(der_spc(entry[1]))
    return der_list(*parts)


def describe(entries: list[tuple]) -> str:
    return ", ".join({"tn": lambda e: f"TN {e[1]}", "range": lambda e: f"range {e[1]}+{e[2]}",
                      "spc": lambda e: f"SPC {e[1]}"}[e[0]](e) for e in entries)


def index_rows(entries: list[tuple]) -> Iterator[tuple]:
    """(width, lo, hi, spc, literal, span_digits) as TNScope.index_rows / ca.records.store give them."""
    for entry in entries:
        if entry[0] == "tn":
            number = int(entry[1])
            yield len(entry[1]), number, number, None, None, 0
        elif entry[0] == "range":
            lo = int(entry[1])
            hi = lo + entry[2] - 1
            yield len(entry[1]), lo, hi, None, None, span_digits(lo, hi)
        else:
            yield None, None, None, entry[1], None, None


# ------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------


class Chain:
    """Appends audit events with the hashes ca/records/audit.py would compute."""

    def __init__(self) -> None:
        self.seq = 0
        self.hash = audit.GENESIS_HASH

    def event(self, occurred_at: dt.datetime, actor: str, action: str, subject_type: str, subject_id: str,
              details: dict) -> tuple:
        self.seq += 1
        body = {"seq": self.seq, "occurred_at": occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "actor": actor,
                "action": action, "subject_type": subject_type, "subject_id": subject_id, "details": details}
        prev, self.hash = self.hash, audit.event_hash(self.hash, body)
        return (self.seq, occurred_at, actor, action, subject_type, subject_id,
                json.dumps(details, sort_keys=True, separators=(",", ":")), prev, self.hash)


def load(database_url: str, count: int, seed: int) -> dict:
    _check_encoder()
    rng = random.Random(seed)
    engine = make_engine(database_url)
    if engine.dialect.name != "postgresql":
        raise SystemExit("the benchmark needs PostgreSQL (COPY); got " + engine.dialect.name)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    upgrade(engine)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    chain = Chain()
    delegations = make_delegations(rng)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(
            "INSERT INTO issuers (id, name, certificate_der, signer_uri, crl_number, created_at) "
            "VALUES (1, 'issuing', %s, 'file:keys/issuing.key', 0, %s)", (DER_PLACEHOLDER, YEAR_START))
        with cursor.copy("COPY delegations (id, delegate, scope_der, ca_allowed, max_lifetime_seconds, not_before, "
                         "status, created_by, created_at, updated_at) FROM STDIN") as copy:
            for d in delegations:
                copy.write_row((d.id, d.delegate, der_list(der_spc(d.spc), der_range(str(d.block_start), BLOCK)), False,
                                7 * 86400, d.created_at, "active", "cli:operator", d.created_at, d.created_at))
        with cursor.copy("COPY delegation_scope_entries (delegation_id, width, lo, hi, spc, literal, span_digits) "
                         "FROM STDIN") as copy:
            for d in delegations:
                copy.write_row((d.id, None, None, None, d.spc, None, None))
                copy.write_row((d.id, 11, d.block_start, d.block_start + BLOCK - 1, None, None, 3))
        events = [chain.event(d.created_at, "cli:operator", "delegation.create", "delegation", d.id,
                              {"after": {"delegate": d.delegate, "scope": f"SPC {d.spc}, range {d.block_start}+{BLOCK}"}})
                  for d in delegations]
        timings["delegations_s"] = time.perf_counter() - started

        revoked: list[tuple[int, str, dt.datetime]] = []
        certificate_columns = ("id, serial, issuer_id, delegation_id, kind, stage, scope_der, subject, spki_sha256, "
                               "not_before, not_after, der, fingerprint_sha256, created_at")
        entry_columns = "certificate_id, width, lo, hi, spc, literal, span_digits"
        event_columns = "seq, occurred_at, actor, action, subject_type, subject_id, details, prev_hash, hash"
        with cursor.copy(f"COPY certificates ({certificate_columns}) FROM STDIN") as certificates_copy:
            entries_buffer: list[tuple] = []
            for c in make_certificates(rng, delegations, count):
                issued_at = c.not_before + dt.timedelta(minutes=1)  # issue() backdates notBefore
                der = scope_der(c.entries)
                certificates_copy.write_row((
                    c.id, c.serial, 1, c.delegation.id, "end-entity", "issued", der, f"CN={c.delegation.delegate}",
                    c.spki, c.not_before, c.not_after, DER_PLACEHOLDER, f"{rng.getrandbits(256):064x}", issued_at))
                entries_buffer.extend((c.id, *row) for row in index_rows(c.entries))
                events.append(chain.event(issued_at, "acme:account", "certificate.issue", "certificate", c.serial, {
                    "kind": "end-entity", "issuer": "issuing", "scope": describe(c.entries),
                    "delegation_id": c.delegation.id, "not_before": c.not_before.isoformat() + "+00:00",
                    "not_after": c.not_after.isoformat() + "+00:00"}))
                if rng.random() < 0.01:
                    revoked.append((c.id, c.serial, issued_at + dt.timedelta(hours=rng.randrange(1, 20))))
        timings["certificates_s"] = time.perf_counter() - started
        with cursor.copy(f"COPY certificate_scope_entries ({entry_columns}) FROM STDIN") as copy:
            for row in entries_buffer:
                copy.write_row(row)
        timings["scope_entries_s"] = time.perf_counter() - started
        with cursor.copy("COPY revocations (certificate_id, reason_code, revoked_at, actor, source) FROM STDIN") as copy:
            for certificate_id, serial, revoked_at in revoked:
                copy.write_row((certificate_id, 1, revoked_at, "user:olivia", "operator"))
                events.append(chain.event(revoked_at, "user:olivia", "certificate.revoke", "certificate", serial,
                                          {"reason_code": 1, "reason": "key_compromise", "source": "operator",
                                           "comment": None, "revoked_at": revoked_at.isoformat() + "+00:00"}))
        with cursor.copy(f"COPY audit_events ({event_columns}) FROM STDIN") as copy:
            for row in events:
                copy.write_row(row)
        cursor.execute("INSERT INTO audit_head (id, seq, hash) VALUES (1, %s, %s)", (chain.seq, chain.hash))
        for table in ("certificates", "certificate_scope_entries", "delegation_scope_entries", "revocations", "issuers"):
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        raw.commit()
        timings["loaded_s"] = time.perf_counter() - started
        driver = raw.driver_connection  # VACUUM runs outside a transaction
        driver.autocommit = True
        cursor = driver.cursor()
        cursor.execute("VACUUM ANALYZE")
        timings["vacuum_analyze_s"] = time.perf_counter() - started
        cursor.execute("SELECT count(*) FROM certificates")
        certificates = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM certificate_scope_entries")
        scope_entries = cursor.fetchone()[0]
        cursor.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        size = cursor.fetchone()[0]
    finally:
        raw.close()
        engine.dispose()
    return {"certificates": certificates, "scope_entries": scope_entries, "revocations": len(revoked),
            "audit_events": chain.seq, "delegations": len(delegations), "database_size": size,
            "seconds": {k: round(v, 1) for k, v in timings.items()}, "seed": seed}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("TNCA_BENCH_DATABASE_URL"),
                        help="PostgreSQL URL (env TNCA_BENCH_DATABASE_URL). Its public schema is DROPPED.")
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="certificates (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=20250101)
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("--database-url is required (a PostgreSQL database the benchmark may wipe)")
    result = load(args.database_url, args.count, args.seed)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
