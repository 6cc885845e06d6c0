"""Do the records agree with the trail? Replay the audit events and compare with the tables that
serve clients.

The hash chain proves the events were not changed; it says nothing about the tables that the
ACME server, the repository (``/cert-repo``), the CRLs and the auditor queries read. Someone with
database access could delete a revocation row (the certificate is served again: its repository
URL goes from 410 back to 200) or edit a certificate's subject, and the chain would still verify.
:func:`compare` rebuilds what the events say each table must hold and reports, by name:

* a row that no event explains (a certificate, revocation, delegation, authority token, person or
  API token without the event that created it), and
* an event whose effect is missing or different (the row is gone, or a field the event recorded
  now holds something else).

What is compared, per table (the fields each event records; nothing the events do not record):

| table | events | fields |
|---|---|---|
| certificates (stage issued) | ``certificate.issue`` | subject, validity, delegation, account, fingerprint (and the stored DER hashes to it) |
| revocations | ``certificate.revoke`` | reason code, time, source |
| delegations | ``delegation.create`` / ``.update`` / ``.revoke`` | every field of the last ``after`` |
| authority_tokens | ``token.mint`` | delegation, fingerprint, ca, expiry |
| users | ``user.create`` / ``.update`` / ``.disable`` / ``.enable`` | role, disabled |
| api_tokens | ``api_token.create`` / ``.revoke`` | owner, role, revoked |

One pass over the events and one over each table (``yield_per``), holding one small record per
entity: an audit job, not a request path.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ca.records.models_acme import AuthorityToken
from ca.records.models_audit import AuditEvent
from ca.records.models_authority import Certificate, Delegation, Revocation
from ca.records.models_people import APIToken, User
from ca.records.record_json import delegation_fields
from ca.records.statuses import CertificateStage
from ca.x509util import fingerprint_sha256

BATCH = 1000
MAX_REPORTED = 100  # discrepancies listed at most; the count is always exact


@dataclasses.dataclass(frozen=True)
class Discrepancy:
    table: str
    name: str  # the row, e.g. "certificate 1a2b" or "revocation of certificate 1a2b"
    detail: str
    seq: int | None = None  # the event that says otherwise, when there is one

    def __str__(self) -> str:
        where = f" (event {self.seq})" if self.seq is not None else ""
        return f"{self.name}{where}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Replay:
    """What the events say each table holds (key -> (seq of the last event, expected fields))."""

    certificates: dict[str, tuple[int, dict[str, Any]]] = dataclasses.field(default_factory=dict)
    revocations: dict[str, tuple[int, dict[str, Any]]] = dataclasses.field(default_factory=dict)
    delegations: dict[str, tuple[int, dict[str, Any]]] = dataclasses.field(default_factory=dict)
    tokens: dict[str, tuple[int, dict[str, Any]]] = dataclasses.field(default_factory=dict)
    users: dict[str, tuple[int, dict[str, Any]]] = dataclasses.field(default_factory=dict)
    api_tokens: dict[str, tuple[int, dict[str, Any]]] = dataclasses.field(default_factory=dict)

    def apply(self, event: AuditEvent) -> None:
        details: Mapping[str, Any] = event.details or {}
        action, key = event.action, event.subject_id
        if action == "certificate.issue":
            self.certificates[key] = (event.seq, {
                "subject": details.get("subject"),
                "not_before": details.get("not_before"),
                "not_after": details.get("not_after"),
                "delegation_id": details.get("delegation_id"),
                "account_id": details.get("account_id"),
                "fingerprint_sha256": details.get("fingerprint_sha256"),
            })
        elif action == "certificate.revoke":
            self.revocations[key] = (event.seq, {
                "reason_code": details.get("reason_code"),
                "revoked_at": details.get("revoked_at"),
                "source": details.get("source"),
            })
        elif action in ("delegation.create", "delegation.update", "delegation.revoke"):
            self.delegations[key] = (event.seq, dict(details.get("after") or {}))
        elif action == "token.mint":
            self.tokens[key] = (event.seq, {
                "delegation_id": details.get("delegation_id"),
                "fingerprint": details.get("fingerprint"),
                "ca": details.get("ca"),
                "expires": details.get("expires"),
            })
        elif action in ("user.create", "user.update", "user.disable", "user.enable"):
            after = details.get("after") or {}
            self.users[key] = (event.seq, {"role": after.get("role"), "disabled": after.get("disabled")})
        elif action in ("api_token.create", "api_token.revoke"):
            after = details.get("after") or {}
            self.api_tokens[key] = (event.seq, {"user": after.get("user"), "role": after.get("role"),
                                                "revoked": after.get("revoked_at") is not None})


def replay(session: Session) -> Replay:
    state = Replay()
    for event in session.scalars(select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=BATCH)):
        state.apply(event)
    return state


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _same_time(recorded: Any, stored: dt.datetime | None) -> bool:
    """An event's ISO time and a column's: equal as instants (the column is UTC, maybe naive)."""
    if recorded is None or stored is None:
        return recorded is None and stored is None
    try:
        moment = dt.datetime.fromisoformat(str(recorded))
    except ValueError:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    if stored.tzinfo is None:
        stored = stored.replace(tzinfo=dt.timezone.utc)
    return moment == stored


def _differences(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    return [f"{name} is {actual.get(name)!r}, the trail says {value!r}"
            for name, value in expected.items() if actual.get(name) != value]


def compare(session: Session) -> list[Discrepancy]:
    """Every disagreement between the tables and the replayed events (module docstring)."""
    state = replay(session)
    found: list[Discrepancy] = []
    found += _certificates(session, state)
    found += _revocations(session, state)
    found += _keyed(session, state.delegations, select(Delegation), "delegations", "delegation",
                    lambda row: row.id, delegation_fields)
    found += _keyed(session, state.tokens, select(AuthorityToken), "authority_tokens", "authority token",
                    lambda row: row.jti, lambda row: {
                        "delegation_id": row.delegation_id, "fingerprint": row.fingerprint, "ca": row.ca,
                        "expires": _iso(_utc(row.expires_at))})
    found += _keyed(session, state.users, select(User), "users", "person", lambda row: row.name,
                    lambda row: {"role": row.role, "disabled": row.disabled_at is not None})
    names = {row.id: row.name for row in session.scalars(select(User))}
    found += _keyed(session, state.api_tokens, select(APIToken), "api_tokens", "API token", lambda row: row.id,
                    lambda row: {"user": names.get(row.user_id), "role": row.role, "revoked": row.revoked_at is not None})
    return found


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


def _rows(session: Session, stmt: Any) -> Iterator[Any]:
    return iter(session.scalars(stmt.execution_options(yield_per=BATCH)))


def _certificates(session: Session, state: Replay) -> list[Discrepancy]:
    found, seen = [], set()
    for row in _rows(session, select(Certificate).where(Certificate.stage == CertificateStage.ISSUED)):
        name = f"certificate {row.serial}"
        seen.add(row.serial)
        if row.serial not in state.certificates:
            found.append(Discrepancy("certificates", name, "no certificate.issue event explains this row"))
            continue
        seq, expected = state.certificates[row.serial]
        actual = {"subject": row.subject, "delegation_id": row.delegation_id, "account_id": row.account_id,
                  "fingerprint_sha256": row.fingerprint_sha256}
        problems = _differences({k: v for k, v in expected.items() if k in actual}, actual)
        for column in ("not_before", "not_after"):
            if not _same_time(expected[column], getattr(row, column)):
                problems.append(f"{column} is {_iso(getattr(row, column))}, the trail says {expected[column]}")
        if row.der is not None and fingerprint_sha256(row.der) != expected["fingerprint_sha256"]:
            problems.append("the stored certificate is not the one issued (its SHA-256 differs)")
        found += [Discrepancy("certificates", name, problem, seq) for problem in problems]
    for serial, (seq, _) in state.certificates.items():
        if serial not in seen:
            found.append(Discrepancy("certificates", f"certificate {serial}",
                                     "issued according to the trail, but no issued certificate row holds it", seq))
    return found


def _revocations(session: Session, state: Replay) -> list[Discrepancy]:
    found, seen = [], set()
    stmt = select(Revocation, Certificate.serial).join(Certificate, Revocation.certificate_id == Certificate.id)
    for revocation, serial in session.execute(stmt.execution_options(yield_per=BATCH)):
        name = f"revocation of certificate {serial}"
        seen.add(serial)
        if serial not in state.revocations:
            found.append(Discrepancy("revocations", name, "no certificate.revoke event explains this row"))
            continue
        seq, expected = state.revocations[serial]
        problems = _differences({"reason_code": expected["reason_code"], "source": expected["source"]},
                                {"reason_code": revocation.reason_code, "source": revocation.source})
        if not _same_time(expected["revoked_at"], revocation.revoked_at):
            problems.append(f"revoked_at is {_iso(revocation.revoked_at)}, the trail says {expected['revoked_at']}")
        found += [Discrepancy("revocations", name, problem, seq) for problem in problems]
    for serial, (seq, _) in state.revocations.items():
        if serial not in seen:
            found.append(Discrepancy(
                "revocations", f"revocation of certificate {serial}",
                "revoked according to the trail, but the revocation row is missing: the certificate is served "
                "as not revoked", seq))
    return found


def _keyed(session: Session, expected_by_key: dict[str, tuple[int, dict[str, Any]]], stmt: Any, table: str,
           what: str, key_of: Any, fields_of: Any) -> list[Discrepancy]:
    found, seen = [], set()
    for row in _rows(session, stmt):
        key = str(key_of(row))
        seen.add(key)
        if key not in expected_by_key:
            found.append(Discrepancy(table, f"{what} {key}", "no event explains this row"))
            continue
        seq, expected = expected_by_key[key]
        actual = fields_of(row)
        found += [Discrepancy(table, f"{what} {key}", problem, seq)
                  for problem in _differences({k: v for k, v in expected.items() if k in actual}, actual)]
    for key, (seq, _) in expected_by_key.items():
        if key not in seen:
            found.append(Discrepancy(table, f"{what} {key}", "recorded by the trail, but the row is missing", seq))
    return found


def describe(found: list[Discrepancy]) -> str:
    lines = [str(item) for item in found[:MAX_REPORTED]]
    if len(found) > MAX_REPORTED:
        lines.append(f"… and {len(found) - MAX_REPORTED} more")
    return "\n".join(lines)


