"""Vetting and right-to-use records of a delegation (docs/identity.md).

A delegation says *which numbers* a delegate may use; these records say *who the delegate is*
and *why it may use them*, as an auditor needs to trace a certificate to an accountable entity
(draft-wendt-stir-vesper-06 "Responsible Provider", tn-domain-binding's "entity verification …
performed under the CA's certificate policy"; spec digest §1.5, §1.8, §1.12):

* **Vetting** (:func:`record_vetting`, one per delegation; a new one replaces it and the audit
  trail keeps each): the vetted legal name, country (ISO 3166-1 alpha-2), LEI (ISO 17442, check
  digits verified) where one exists, the level of assurance (``low`` / ``substantial`` /
  ``high``), who vetted and when, and evidence *references*: ``{"uri", "sha256"}`` pairs naming
  a document and its digest. The documents themselves are never stored here.
* **Right-to-use evidence** (:func:`add_right_to_use`, any number per delegation): a TN scope
  inside the delegation's, the source (a number assignment record, a letter of authorization…),
  who checked it and when, and evidence references as above.

A delegation with the ``vesper`` profile issues nothing without both, covering every number of
the certificate (:func:`check_vesper_ready`). Every change appends an audit event
(``delegation.vet``, ``delegation.right-to-use``) with the record as JSON; the caller commits.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from sqlalchemy.orm import Session

from ca.clock import Clock
from ca.encoding import unsafe_text
from ca.errors import DelegationError, PolicyError
from ca.numbers.tnauthlist import TNScope
from ca.records import audit
from ca.records.record_json import right_to_use_json, vetting_json
from ca.records.delegations import VESPER_PROFILE, get
from ca.records.models_authority import Delegation, DelegationVetting, RightToUseEvidence

ASSURANCE_LEVELS = ("low", "substantial", "high")  # the eIDAS / ISO 29115-style ladder
MAX_EVIDENCE = 20
MAX_NAME_CHARS = 255
MAX_URI_CHARS = 2000
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_LEI = re.compile(r"[0-9A-Z]{18}[0-9]{2}")
# Evidence is referenced by a URI a person or an auditor can follow (or a URN naming a record).
_URI_SCHEMES = ("https://", "urn:")


def _text(value: object, field: str, *, limit: int = MAX_NAME_CHARS) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PolicyError(f"{field} must not be empty", field=field)
    if value != value.strip():
        raise PolicyError(f"{field} must not begin or end with white space", field=field)
    if len(value) > limit:
        raise PolicyError(f"{field} is {len(value)} characters; the limit is {limit}", field=field)
    reason = unsafe_text(value)
    if reason is not None:
        raise PolicyError(f"{field}: {reason}", field=field)
    return value


def check_lei(lei: str) -> str:
    """ISO 17442: 18 upper-case alphanumerics and two check digits, ISO 7064 MOD 97-10 (the
    letters read as 10-35, the whole number mod 97 is 1)."""
    if not _LEI.fullmatch(lei):
        raise PolicyError(f"LEI {lei[:40]!r} is not 20 characters: 18 upper-case letters or digits and 2 check digits "
                          f"(ISO 17442)", field="lei")
    if int("".join(str(int(char, 36)) for char in lei)) % 97 != 1:
        raise PolicyError(f"LEI {lei} fails its ISO 7064 MOD 97-10 check digits (ISO 17442)", field="lei")
    return lei


def parse_evidence(items: Sequence[object], *, field: str = "evidence") -> list[dict[str, str]]:
    """Evidence references: each ``{"uri": "https://…" | "urn:…", "sha256": 64 hex}`` or the
    string ``"sha256:<hex>,<uri>"`` (the CLI's form). At least one, at most :data:`MAX_EVIDENCE`."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or not items:
        raise PolicyError(f"{field}: at least one evidence reference (sha256:<hex>,<uri>) is required", field=field)
    if len(items) > MAX_EVIDENCE:
        raise PolicyError(f"{field}: {len(items)} references; at most {MAX_EVIDENCE}", field=field)
    parsed = []
    for index, item in enumerate(items):
        where = f"{field}[{index}]"
        if isinstance(item, str):
            head, _, uri = item.partition(",")
            if not head.startswith("sha256:") or not uri:
                raise PolicyError(f"{where}: expected sha256:<64 hex digits>,<uri>", field=field)
            item = {"sha256": head[len("sha256:"):], "uri": uri}
        if not isinstance(item, dict) or set(item) != {"uri", "sha256"}:
            raise PolicyError(f"{where}: expected {{\"uri\", \"sha256\"}}", field=field)
        digest, uri = item["sha256"], item["uri"]
        if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest.lower()):
            raise PolicyError(f"{where}: sha256 must be 64 hexadecimal digits (the document's SHA-256)", field=field)
        if (not isinstance(uri, str) or not uri.startswith(_URI_SCHEMES) or len(uri) > MAX_URI_CHARS
                or not uri.isprintable() or " " in uri):
            raise PolicyError(f"{where}: uri must be an https:// URL or a urn: name (no spaces, at most "
                              f"{MAX_URI_CHARS} characters)", field=field)
        parsed.append({"uri": uri, "sha256": digest.lower()})
    return parsed


def _when(value: dt.datetime, field: str, now: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise PolicyError(f"{field} must carry a time zone (UTC)", field=field)
    value = value.astimezone(dt.timezone.utc)
    if value > now + dt.timedelta(minutes=5):
        raise PolicyError(f"{field} {value.isoformat()} is in the future", field=field)
    return value


def _in_force(session: Session, delegation_id: str, now: dt.datetime) -> Delegation:
    delegation = get(session, delegation_id)
    if delegation.status != "active" or (delegation.not_after is not None and delegation.not_after <= now):
        raise PolicyError(f"delegation {delegation.id} is {delegation.status if delegation.status != 'active' else 'ended'}; "
                          f"its records no longer change", field="delegation")
    return delegation


def record_vetting(
    session: Session,
    delegation_id: str,
    *,
    legal_name: str,
    assurance: str,
    vetted_by: str,
    vetted_at: dt.datetime,
    evidence: Sequence[object],
    clock: Clock,
    actor: str,
    country: str | None = None,
    lei: str | None = None,
) -> DelegationVetting:
    """Record (or replace) the vetting of ``delegation_id``; appends ``delegation.vet`` with the
    record before and after. Refuses with PolicyError naming the field, writing nothing."""
    now = clock.now()
    delegation = _in_force(session, delegation_id, now)
    legal_name = _text(legal_name, "legal_name")
    vetted_by = _text(vetted_by, "vetted_by")
    if assurance not in ASSURANCE_LEVELS:
        raise PolicyError(f"assurance must be one of {', '.join(ASSURANCE_LEVELS)} (got {str(assurance)[:20]!r})",
                          field="assurance")
    if country is not None and not _COUNTRY.fullmatch(country):
        raise PolicyError(f"country must be an ISO 3166-1 alpha-2 code such as US (got {country[:8]!r})", field="country")
    if lei is not None:
        lei = check_lei(lei)
    references = parse_evidence(evidence)
    vetted_at = _when(vetted_at, "vetted_at", now)
    before = vetting_json(delegation.vetting)
    vetting = delegation.vetting or DelegationVetting(delegation_id=delegation.id)
    vetting.legal_name, vetting.country, vetting.lei, vetting.assurance = legal_name, country, lei, assurance
    vetting.vetted_by, vetting.vetted_at, vetting.evidence = vetted_by, vetted_at, references
    vetting.recorded_by, vetting.recorded_at = actor, now
    delegation.vetting = vetting
    session.add(vetting)
    session.flush()
    audit.append(session, actor=actor, action="delegation.vet", subject_type="delegation", subject_id=delegation.id,
                 details={"before": before, "after": vetting_json(vetting)}, clock=clock)
    return vetting


def add_right_to_use(
    session: Session,
    delegation_id: str,
    *,
    scope: TNScope,
    source: str,
    verified_by: str,
    verified_at: dt.datetime,
    evidence: Sequence[object],
    clock: Clock,
    actor: str,
) -> RightToUseEvidence:
    """Record right-to-use evidence for ``scope`` (inside the delegation's); appends
    ``delegation.right-to-use``. Refuses with PolicyError / DelegationError, writing nothing."""
    now = clock.now()
    delegation = _in_force(session, delegation_id, now)
    delegated = TNScope.from_der(delegation.scope_der, strict=False)
    if not scope.entries:
        raise PolicyError("right-to-use evidence must name at least one number, range or SPC", field="scope")
    if not delegated.contains(scope):
        raise DelegationError(f"right-to-use scope reaches outside delegation {delegation.id}: "
                              f"{delegated.difference_of(scope).describe()} is not delegated", field="scope")
    record = RightToUseEvidence(
        delegation_id=delegation.id,
        scope_der=scope.normalized().to_der(),
        source=_text(source, "source", limit=128),
        evidence=parse_evidence(evidence),
        verified_by=_text(verified_by, "verified_by"),
        verified_at=_when(verified_at, "verified_at", now),
        recorded_by=actor,
        recorded_at=now,
    )
    session.add(record)
    session.flush()
    audit.append(session, actor=actor, action="delegation.right-to-use", subject_type="delegation",
                 subject_id=delegation.id, details={"added": right_to_use_json(record)}, clock=clock)
    return record


def right_to_use_scope(delegation: Delegation) -> TNScope:
    """The union of the numbers the delegation's right-to-use evidence covers."""
    scopes = [TNScope.from_der(record.scope_der, strict=False) for record in delegation.right_to_use]
    entries = [entry for scope in scopes for entry in scope.entries]
    return TNScope(tuple(entries)).normalized() if entries else TNScope(())


def check_vesper_ready(delegation: Delegation, scope: TNScope) -> None:
    """A ``vesper`` delegation issues only with a vetting record and right-to-use evidence
    covering every number of ``scope`` (DelegationError naming ``vetting`` or ``right_to_use``)."""
    if delegation.profile != VESPER_PROFILE:
        return
    if delegation.vetting is None:
        raise DelegationError(
            f"delegation {delegation.id} has the vesper profile but no vetting record: who the delegate is has not "
            f"been vetted, so nothing is issued (operator: tnca delegation vet {delegation.id} …)",
            field="vetting",
        )
    covered = right_to_use_scope(delegation)
    if not covered.contains(scope):
        missing = covered.difference_of(scope) if covered.entries else scope
        raise DelegationError(
            f"delegation {delegation.id} has the vesper profile but no right-to-use evidence for "
            f"{missing.describe()}, so nothing is issued (operator: tnca delegation right-to-use {delegation.id} …)",
            field="right_to_use",
        )
