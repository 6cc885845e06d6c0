"""``make bench --stored N``: an authority that already has N orders and certificates.

Before the stack starts, N past issuances are bulk-inserted into the home's database (one
transaction; SQLite or PostgreSQL): per issuance a valid
order, its valid authorization and ``tkauth-01`` challenge, the issued certificate with its scope
entry, and its ``certificate.issue`` audit event, chained onto the home's audit head exactly as
``ca/records/audit.py`` chains (so ``tnca audit verify`` still holds). They are daily renewals of
the benchmark's numbers over the past N / 10,000 days, under one delegation, by one account.
Rows go to the database driver's ``executemany`` in batches of 5,000, in the session's one
transaction. The certificates' ``der`` is a fixed 650-byte placeholder and keys and serials are random: what
the hot path's queries and indexes see, not what a relying party would parse.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import secrets
import time

from sqlalchemy import select

from ca.home import Home
from ca.numbers.tnauthlist import TNScope
from ca.records import audit
from ca.records.models_acme import Account, Authorization, Challenge, Order
from ca.records.models_audit import AuditEvent, AuditHead
from ca.records.models_authority import Certificate, CertificateScopeEntry, Issuer
from bench.generate_certificates import DER_PLACEHOLDER

BATCH = 5000
NUMBERS = 10000
FIRST_NUMBER = 12025550000


def _id() -> str:
    return secrets.token_hex(10)


def _stored(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


def load(home: Home, count: int, seed: int = 20261204) -> dict:
    """Insert ``count`` past issuances; returns what was stored and how long it took."""
    from bench.issuance import create_delegation  # noqa: PLC0415 (bench.issuance imports this module lazily too)

    rng = random.Random(seed)
    started = time.perf_counter()
    now = dt.datetime.now(dt.timezone.utc)
    with home.sessionmaker() as session:
        delegation = create_delegation(session, home)
        account = Account(id=_id(), jwk=json.dumps({"kty": "EC", "crv": "P-256", "x": "history", "y": "history"}),
                          jwk_thumbprint=secrets.token_hex(32), status="valid", contact=[], terms_agreed=True,
                          created_at=now - dt.timedelta(days=count // NUMBERS + 2))
        session.add(account)
        session.flush()
        issuer_id = session.scalars(select(Issuer.id).order_by(Issuer.id)).first()
        head = audit.locked_head(session)
        seq, prev = head.seq, head.hash
        next_certificate_id = (session.scalars(select(Certificate.id).order_by(Certificate.id.desc())).first() or 0) + 1
        batch: dict[str, list[dict]] = {"orders": [], "authorizations": [], "challenges": [], "certificates": [],
                                        "entries": [], "events": []}

        raw = session.connection().connection.dbapi_connection  # the session's transaction
        marker = "?" if home.engine.dialect.name == "sqlite" else "%s"

        def flush() -> None:
            # Straight to the driver's executemany: SQLAlchemy's per-row bind processing was most
            # of the load time. Values are converted here as the column types would: UTC
            # datetimes stored naive, JSON as text.
            for table, key in ((Order.__table__, "orders"), (Authorization.__table__, "authorizations"),
                               (Challenge.__table__, "challenges"), (Certificate.__table__, "certificates"),
                               (CertificateScopeEntry.__table__, "entries"), (AuditEvent.__table__, "events")):
                rows = batch[key]
                if not rows:
                    continue
                columns = list(rows[0])
                sql = (f"INSERT INTO {table.name} ({', '.join(columns)}) "
                       f"VALUES ({', '.join([marker] * len(columns))})")
                cursor = raw.cursor()
                try:
                    cursor.executemany(sql, [tuple(_stored(row[c]) for c in columns) for row in rows])
                finally:
                    cursor.close()
                rows.clear()

        for index in range(count):
            number = str(FIRST_NUMBER + index % NUMBERS)
            scope = TNScope.parse(tns=[number])
            scope_der = scope.to_der()
            day = index // NUMBERS
            issued = now - dt.timedelta(days=count // NUMBERS + 1 - day, seconds=rng.randrange(86400))
            order_id, authz_id, certificate_id = _id(), _id(), next_certificate_id + index
            serial = f"{rng.getrandbits(127) | (1 << 126):x}"
            identifier = [{"type": "TNAuthList", "value": scope.to_identifier_value()}]
            batch["orders"].append({
                "id": order_id, "account_id": account.id, "status": "valid", "expires": issued + dt.timedelta(days=7),
                "identifiers": identifier, "scope_der": scope_der, "not_before": None, "not_after": None,
                "error": None, "auto_renewal": None, "next_renewal_at": None, "csr_der": None, "renewal_claim": None,
                "replaces_serial": None, "replaces": None, "created_at": issued})
            batch["authorizations"].append({
                "id": authz_id, "order_id": order_id, "account_id": account.id, "identifier_type": "TNAuthList",
                "identifier_value": identifier[0]["value"], "scope_der": scope_der, "status": "valid",
                "expires": issued + dt.timedelta(days=7), "token_jti": secrets.token_urlsafe(16), "token_ca": False,
                "token_expires": issued + dt.timedelta(hours=1), "delegation_id": delegation.id, "created_at": issued})
            batch["challenges"].append({
                "id": _id(), "authorization_id": authz_id, "type": "tkauth-01", "status": "valid",
                "token": secrets.token_urlsafe(16), "validated": issued, "error": None})
            not_before = issued - dt.timedelta(minutes=1)
            batch["certificates"].append({
                "id": certificate_id, "serial": serial, "issuer_id": issuer_id, "delegation_id": delegation.id,
                "account_id": account.id, "order_id": order_id, "kind": "end-entity", "stage": "issued",
                "scope_der": scope_der, "subject": "CN=Bench Enterprise", "spki_sha256": f"{rng.getrandbits(256):064x}",
                "not_before": not_before, "not_after": not_before + dt.timedelta(hours=24), "precertificate_der": None,
                "der": DER_PLACEHOLDER, "fingerprint_sha256": f"{rng.getrandbits(256):064x}", "scts": [],
                "error": None, "created_at": issued})
            value = int(number)
            batch["entries"].append({"certificate_id": certificate_id, "width": len(number), "lo": value, "hi": value,
                                     "spc": None, "literal": None, "span_digits": 0})
            seq += 1
            details = {"kind": "end-entity", "issuer": "issuing", "scope": scope.describe(),
                       "delegation_id": delegation.id, "not_before": not_before.isoformat(),
                       "not_after": (not_before + dt.timedelta(hours=24)).isoformat()}
            body = {"seq": seq, "occurred_at": audit.utc_timestamp(issued), "actor": f"acme:{account.id}",
                    "action": "certificate.issue", "subject_type": "certificate", "subject_id": serial,
                    "details": details}
            digest = audit.event_hash(prev, body)
            batch["events"].append({"seq": seq, "occurred_at": issued, "actor": body["actor"],
                                    "action": "certificate.issue", "subject_type": "certificate", "subject_id": serial,
                                    "details": details, "prev_hash": prev, "hash": digest})
            prev = digest
            if len(batch["orders"]) >= BATCH:
                flush()
        flush()
        session.execute(AuditHead.__table__.update().where(AuditHead.__table__.c.id == head.id)
                        .values(seq=seq, hash=prev))
        session.commit()
    engine = home.engine
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            from sqlalchemy import text

            connection.execute(text("SELECT setval(pg_get_serial_sequence('certificates', 'id'), "
                                    "(SELECT max(id) FROM certificates))"))
            connection.execute(text("VACUUM ANALYZE"))
    else:
        with engine.connect() as connection:
            from sqlalchemy import text

            connection.execute(text("ANALYZE"))
    home.close()
    return {"orders": count, "certificates": count, "audit_events": count,
            "seconds": round(time.perf_counter() - started, 1)}
