"""Certificate revocation lists (RFC 5280 §5): signing, storing and refreshing them.

One CRL per issuer (the root, the issuing CA), served at the distribution point URL the
certificates below it carry (``[certificates] crl_distribution_point``). What each CRL holds:

- ``version`` v2, ``issuer`` the issuer certificate's subject, ``thisUpdate`` now (whole seconds)
  and ``nextUpdate`` ``thisUpdate + [crl] next_update`` (RFC 5280 §5.1.2.1–§5.1.2.5; a
  conforming issuer MUST include nextUpdate).
- One entry per revoked certificate of that issuer whose validity has not ended more than
  ``[crl] next_update`` ago: RFC 5280 §3.3 lets an entry go only after it "appears on one
  regularly scheduled CRL issued beyond the revoked certificate's validity period", and a
  scheduled CRL is made at least every ``[crl] refresh_interval`` (shorter than next_update).
  Each entry has the revocation date and a ``reasonCode`` extension unless the reason is
  unspecified (RFC 5280 §5.3.1: "the reason code extension SHOULD be absent instead of using the
  unspecified (0) reasonCode value").
- The ``cRLNumber`` (RFC 5280 §5.2.3, MUST) from ``issuers.crl_number``, incremented by one
  ``UPDATE`` that holds the issuer's row until the transaction ends, so numbers increase across
  processes and the newest CRL, read after the lock, lists every revocation committed before it.
- The ``authorityKeyIdentifier`` (RFC 5280 §5.2.1, MUST): the issuer's subjectKeyIdentifier.

Signing works as for certificates (``ca/x509util.py``): ``cryptography`` builds the TBSCertList
with a throwaway key of the signer's type, the real :class:`ca.issuing.signers.Signer` (a file key or an
HSM) signs those bytes, and ``assemble_crl`` checks the signature before the CRL is stored.

Every signed CRL is kept (``crls``) with a ``crl.issue`` audit event; the newest per issuer is
what the server publishes. A new CRL is made after every revocation (``ca.lifecycle.revocation.execute``)
and on a schedule (:func:`refresh_due`, which the renewal worker calls each tick).

Not done here: delta CRLs, an issuingDistributionPoint (the CRL is complete, not partitioned) and
indirect CRLs. With ``[certificates] crl_issuer`` set, the certificates point at a CRL someone
else (e.g. an STI-PA) signs; the CRLs made here are still this authority's own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ca.records import audit
from ca.clock import Clock
from ca.config import ISSUING_ISSUER
from ca.errors import NotFoundError, TNCAError
from ca.policy import Policy
from ca.records.models_authority import CRL, Certificate, Issuer, Revocation
from ca.home import Home
from ca.issuing.issuance import IssuerHandle
from ca.x509util import assemble_crl, subject_key_identifier, throwaway_key_like

log = logging.getLogger("tnca.crl")

AUDIT_ACTION_ISSUE = "crl.issue"
# Why a CRL was made (crls.trigger).
TRIGGER_REVOCATION = "revocation"
TRIGGER_SCHEDULE = "schedule"
TRIGGER_OPERATOR = "operator"

# RFC 5280 §5.3.1 reason codes as cryptography names them (7 is unused; 0 is never written).
_REASON_FLAGS = {
    1: x509.ReasonFlags.key_compromise,
    2: x509.ReasonFlags.ca_compromise,
    3: x509.ReasonFlags.affiliation_changed,
    4: x509.ReasonFlags.superseded,
    5: x509.ReasonFlags.cessation_of_operation,
    6: x509.ReasonFlags.certificate_hold,
    8: x509.ReasonFlags.remove_from_crl,
    9: x509.ReasonFlags.privilege_withdrawn,
    10: x509.ReasonFlags.aa_compromise,
}


@dataclasses.dataclass(frozen=True)
class GeneratedCRL:
    """A CRL just signed and stored (the ``crls`` row ``record_id``)."""

    issuer: str  # issuers.name
    number: int
    this_update: dt.datetime
    next_update: dt.datetime
    entries: int
    der: bytes
    record_id: int

    @property
    def pem(self) -> str:
        return x509.load_der_x509_crl(self.der).public_bytes(serialization.Encoding.PEM).decode("ascii")

    def describe(self) -> str:
        return (
            f"CRL {self.number} of {self.issuer}: {self.entries} revoked certificate(s), "
            f"thisUpdate {self.this_update.isoformat()}, nextUpdate {self.next_update.isoformat()}"
        )


def generate_crl(
    session: Session,
    issuer: "IssuerHandle",
    *,
    clock: Clock,
    policy: Policy,
    trigger: str = TRIGGER_OPERATOR,
    actor: str = "system",
) -> GeneratedCRL:
    """Sign and store the next CRL of ``issuer``, in the caller's transaction (the caller commits).

    The issuer's row stays locked from the number increment to the commit, so concurrent callers
    for one issuer queue up and each CRL lists what was committed before it. Raises SignerError
    when the signer fails (nothing is stored then; the caller rolls back the number).
    """
    now = clock.now()
    this_update = now.replace(microsecond=0)
    next_update = this_update + policy.crl.next_update
    # RFC 5280 §5.2.3: monotonically increasing. The UPDATE comes first so that the row lock
    # (PostgreSQL) or the write lock (SQLite) is held before anything is read.
    session.execute(
        update(Issuer)
        .where(Issuer.id == issuer.issuer_id)
        .values(crl_number=Issuer.crl_number + 1)
        .execution_options(synchronize_session=False)
    )
    number = session.scalar(select(Issuer.crl_number).where(Issuer.id == issuer.issuer_id))
    if number is None:
        raise NotFoundError(f"issuer {issuer.name} (id {issuer.issuer_id}) is not in the database", field="issuer")

    revoked = session.execute(
        select(Certificate.serial, Revocation.revoked_at, Revocation.reason_code)
        .join(Revocation, Revocation.certificate_id == Certificate.id)
        .where(Certificate.issuer_id == issuer.issuer_id, Certificate.not_after > this_update - policy.crl.next_update)
        .order_by(Revocation.revoked_at, Revocation.id)
    ).all()

    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(_authority_key_identifier(issuer.certificate), critical=False)
    )
    for serial, revoked_at, reason_code in revoked:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(int(serial, 16))
            .revocation_date(revoked_at.replace(microsecond=0))
        )
        if reason_code is not None:
            # RFC 5280 §5.3.1: non-critical; absent for unspecified (stored as None).
            entry = entry.add_extension(x509.CRLReason(_REASON_FLAGS[reason_code]), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    draft = builder.sign(throwaway_key_like(issuer.signer.public_key), issuer.signer.hash_algorithm)
    crl = assemble_crl(draft.tbs_certlist_bytes, issuer.signer)
    der = crl.public_bytes(serialization.Encoding.DER)

    record = CRL(
        issuer_id=issuer.issuer_id,
        number=number,
        this_update=this_update,
        next_update=next_update,
        generated_at=now,
        entries=len(revoked),
        der=der,
        trigger=trigger,
    )
    session.add(record)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action=AUDIT_ACTION_ISSUE,
        subject_type="crl",
        subject_id=f"{issuer.name}/{number}",
        details={
            "issuer": issuer.name,
            "number": number,
            "this_update": this_update.isoformat(),
            "next_update": next_update.isoformat(),
            "entries": len(revoked),
            "sha256": hashlib.sha256(der).hexdigest(),
            "trigger": trigger,
        },
        clock=clock,
    )
    return GeneratedCRL(
        issuer=issuer.name,
        number=number,
        this_update=this_update,
        next_update=next_update,
        entries=len(revoked),
        der=der,
        record_id=record.id,
    )


def _authority_key_identifier(issuer_certificate: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """RFC 5280 §5.2.1: the AKI of a CRL names the key that signed it, as the issuer's SKI does."""
    ski = subject_key_identifier(issuer_certificate)
    if ski is not None:
        return x509.AuthorityKeyIdentifier(key_identifier=ski, authority_cert_issuer=None,
                                           authority_cert_serial_number=None)
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_certificate.public_key())  # type: ignore[arg-type]


def latest(session: Session, issuer_name: str) -> CRL | None:
    """The newest CRL of the issuer called ``issuer_name`` (what the distribution point serves)."""
    return session.scalars(
        select(CRL).join(Issuer, Issuer.id == CRL.issuer_id).where(Issuer.name == issuer_name).order_by(CRL.number.desc()).limit(1)
    ).first()


def http_max_age(record: CRL, *, now: dt.datetime, policy: Policy) -> int:
    """Seconds an HTTP cache may keep ``record``: ``[crl] cache_max_age``, never past nextUpdate."""
    remaining = int((record.next_update - now).total_seconds())
    return max(0, min(remaining, int(policy.crl.cache_max_age.total_seconds())))


def issuer_names(session: Session) -> list[str]:
    """Every issuer this authority signs CRLs for, root first."""
    return list(session.scalars(select(Issuer.name).order_by(Issuer.parent_id.is_not(None), Issuer.id)))


@dataclasses.dataclass(frozen=True)
class CRLOutcome:
    """What happened to one issuer's CRL in :func:`regenerate` or :func:`refresh_due`."""

    issuer: str
    crl: GeneratedCRL | None = None
    error: str | None = None  # why no CRL could be signed (the revocations are recorded anyway)
    why: str | None = None  # for refresh_due: why it was due ("no CRL yet", …)

    def describe(self) -> str:
        if self.crl is not None:
            return self.crl.describe() + (f" ({self.why})" if self.why else "")
        return f"CRL of {self.issuer} NOT signed: {self.error}"


def regenerate(
    session: Session,
    home: "Home",
    issuers: Iterable[str],
    *,
    clock: Clock,
    trigger: str,
    actor: str = "system",
) -> list[CRLOutcome]:
    """Sign a new CRL for each named issuer, each in its own transaction; commits.

    A signer that fails (an HSM down, an offline root) does not stop the others: its outcome
    carries the error, its transaction is rolled back, and :func:`refresh_due` tries again on the
    next tick because the revocations it missed are newer than the issuer's newest CRL.
    """
    outcomes = []
    for name in dict.fromkeys(issuers):
        outcomes.append(_sign_one(session, home, name, clock=clock, trigger=trigger, actor=actor))
    return outcomes


def _sign_one(session: Session, home: "Home", name: str, *, clock: Clock, trigger: str, actor: str,
              why: str | None = None) -> CRLOutcome:
    try:
        # The issuing CA's handle is loaded once per process; the root's is read when needed.
        handle = home.issuing_ca() if name == ISSUING_ISSUER else home.load_issuer(name)
        generated = generate_crl(session, handle, clock=clock, policy=home.policy, trigger=trigger, actor=actor)
        session.commit()
    except TNCAError as error:
        session.rollback()
        log.error("could not sign the CRL of %s: %s", name, error.detail)
        return CRLOutcome(issuer=name, error=error.detail, why=why)
    return CRLOutcome(issuer=name, crl=generated, why=why)


def due(session: Session, *, now: dt.datetime, policy: Policy) -> list[tuple[str, str]]:
    """(issuer name, why) for every issuer whose CRL needs signing now.

    Due when the issuer has no CRL yet, when its newest CRL is ``[crl] refresh_interval`` old,
    or when a certificate of it was revoked after that CRL was made (a revocation whose own CRL
    could not be signed: the signer was down, or the process stopped in between).
    """
    answer = []
    for issuer_id, name in session.execute(select(Issuer.id, Issuer.name).order_by(Issuer.parent_id.is_not(None), Issuer.id)):
        newest = session.scalars(select(CRL).where(CRL.issuer_id == issuer_id).order_by(CRL.number.desc()).limit(1)).first()
        if newest is None:
            answer.append((name, "no CRL yet"))
        elif newest.this_update + policy.crl.refresh_interval <= now:
            answer.append((name, f"CRL {newest.number} is from {newest.this_update.isoformat()}"))
        elif session.scalar(
            select(Revocation.id)
            .join(Certificate, Certificate.id == Revocation.certificate_id)
            .where(Certificate.issuer_id == issuer_id, Revocation.revoked_at > newest.generated_at)
            .limit(1)
        ) is not None:
            answer.append((name, f"a revocation is newer than CRL {newest.number}"))
    return answer


def refresh_due(session: Session, home: "Home", clock: Clock, *, actor: str = "system:crl-refresh") -> list[CRLOutcome]:
    """Sign a fresh CRL for every issuer that is :func:`due`; commits each one.

    For the renewal worker to call each tick (``tnca worker``) and for ``tnca crl generate
    --due``. Returns one outcome per CRL attempted (empty when nothing was due).
    """
    wanted = due(session, now=clock.now(), policy=home.policy)
    session.rollback()  # end the read transaction before signing (each CRL commits on its own)
    return [
        _sign_one(session, home, name, clock=clock, trigger=TRIGGER_SCHEDULE, actor=actor, why=why)
        for name, why in wanted
    ]


def outcomes_ok(outcomes: Sequence[CRLOutcome]) -> bool:
    return all(outcome.error is None for outcome in outcomes)
