"""Vetting and right-to-use records (ca/records/vetting.py, docs/identity.md).

Over ACME (certbot's client, the live server): a ``vesper`` delegation issues nothing without a
vetting record and right-to-use evidence covering the certificate's numbers — the finalize is
refused with ``unauthorized`` naming what is missing, no certificate row, no log contacted —
and with both, the certificate names the vetted organisation and the issue event records who
vouched for it. The CLI records both (exit 2 naming the option on bad input, nothing written).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from acme import messages
from click.testing import CliRunner
from cryptography import x509
from sqlalchemy import select

from ca.errors import DelegationError, PolicyError
from ca.numbers.tnauthlist import TNScope
from ca.records import vetting
from ca.records.models_audit import AuditEvent
from ca.records.models_authority import Certificate
from protocol.support import TN_SCOPE, make_csr, table_counts
from tnca.cli import cli

LEI = "5493001KJTIIGC8Y1R12"
DOC = "sha256:" + "ab" * 32 + ",https://records.example/kyb/4711.pdf"
VETTED_AT = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


def vet(session_factory, home, delegation_id, **overrides):
    values = dict(legal_name="Example Retail LLC", country="US", lei=LEI, assurance="substantial",
                  vetted_by="KYB desk (A. Vetter)", vetted_at=VETTED_AT, evidence=[DOC])
    values.update(overrides)
    with session_factory() as session:
        vetting.record_vetting(session, delegation_id, clock=home.clock, actor="test:operator", **values)
        session.commit()


def right_to_use(session_factory, home, delegation_id, scope=TN_SCOPE):
    with session_factory() as session:
        vetting.add_right_to_use(session, delegation_id, scope=scope, source="number assignment record",
                                 verified_by="numbering desk", verified_at=VETTED_AT,
                                 evidence=["sha256:" + "cd" * 32 + ",urn:tnca:assignment:12025550100"],
                                 clock=home.clock, actor="test:operator")
        session.commit()


def vesper_delegation(authority, session_factory):
    delegation_id = authority.delegate()
    with session_factory() as session:
        from ca.records.models_authority import Delegation
        session.get(Delegation, delegation_id).profile = "vesper"
        session.commit()
    return delegation_id


def _order(subscriber, authority, delegation_id):
    if subscriber.account is None:
        subscriber.register(terms_of_service_agreed=True)
    orderr = subscriber.new_order(TN_SCOPE.to_identifier_value())
    subscriber.answer(orderr, authority.token(delegation_id, subscriber.public_jwk, TN_SCOPE))
    return orderr


@pytest.mark.parametrize("records, missing", [((), "no vetting record"), (("vet",), "no right-to-use evidence")])
def test_vesper_issuance_without_vetting_or_right_to_use_is_refused(
        subscriber, authority, home, session_factory, records, missing):
    delegation_id = vesper_delegation(authority, session_factory)
    if "vet" in records:
        vet(session_factory, home, delegation_id)
    orderr = _order(subscriber, authority, delegation_id)
    before = table_counts(session_factory)
    with pytest.raises(messages.Error) as caught:
        subscriber.finalize(orderr, make_csr()[0])
    assert caught.value.typ == "urn:ietf:params:acme:error:unauthorized", caught.value
    assert missing in caught.value.detail and "vesper" in caught.value.detail
    after = table_counts(session_factory)
    assert after["certificates"] == before["certificates"] == 0
    assert subscriber.poll(orderr).status == messages.STATUS_INVALID


def test_vesper_issuance_with_both_records_names_the_vetted_entity(subscriber, authority, home, session_factory):
    delegation_id = vesper_delegation(authority, session_factory)
    vet(session_factory, home, delegation_id)
    right_to_use(session_factory, home, delegation_id)
    orderr = _order(subscriber, authority, delegation_id)
    leaf = x509.load_pem_x509_certificates(subscriber.finalize(orderr, make_csr()[0]).fullchain_pem.encode())[0]
    assert leaf.subject == x509.Name.from_rfc4514_string("O=Example Retail LLC,C=US")
    with session_factory() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "certificate.issue")).one()
        assert event.details["profile"] == "vesper"
        assert event.details["vetting"]["lei"] == LEI and event.details["vetting"]["assurance"] == "substantial"
        assert event.details["vetting"]["evidence_sha256"] == ["ab" * 32]
        assert len(event.details["right_to_use"]) == 1
        actions = [e.action for e in session.scalars(select(AuditEvent).order_by(AuditEvent.seq))]
        assert "delegation.vet" in actions and "delegation.right-to-use" in actions


@pytest.mark.parametrize("overrides, field", [
    ({"lei": "5493001KJTIIGC8Y1R13"}, "lei"),            # ISO 7064 check digits wrong
    ({"lei": "short"}, "lei"),
    ({"country": "usa"}, "country"),
    ({"assurance": "medium"}, "assurance"),
    ({"legal_name": "Example \u202eLLC"}, "legal_name"),
    ({"evidence": []}, "evidence"),
    ({"evidence": ["sha256:zz,https://x.example/a"]}, "evidence"),
    ({"evidence": ["sha256:" + "ab" * 32 + ",http://plain.example/a"]}, "evidence"),
    ({"vetted_at": dt.datetime(2999, 1, 1, tzinfo=dt.timezone.utc)}, "vetted_at"),
    ({"vetted_by": " "}, "vetted_by"),
])
def test_bad_vetting_input_is_refused_naming_the_field_and_writes_nothing(
        authority, home, session_factory, overrides, field):
    delegation_id = authority.delegate()
    before = table_counts(session_factory)
    with pytest.raises(PolicyError) as caught:
        vet(session_factory, home, delegation_id, **overrides)
    assert caught.value.field == field
    assert table_counts(session_factory) == before


def test_right_to_use_outside_the_delegation_is_refused(authority, home, session_factory):
    delegation_id = authority.delegate()
    before = table_counts(session_factory)
    with pytest.raises(DelegationError) as caught:
        right_to_use(session_factory, home, delegation_id, scope=TNScope.parse(tns=["12025559999"]))
    assert caught.value.field == "scope" and "12025559999" in caught.value.detail
    assert table_counts(session_factory) == before


def test_cli_records_vetting_and_right_to_use_and_shows_them(authority, home, session_factory):
    delegation_id = authority.delegate()
    def run(*args: str):
        return CliRunner().invoke(cli, ["--home", str(home.path), *args], catch_exceptions=False)

    bad = run("delegation", "vet", delegation_id, "--legal-name", "Example Retail LLC", "--lei", "5493001KJTIIGC8Y1R13",
              "--assurance", "high", "--vetted-by", "desk", "--vetted-at", "2026-11-01", "--evidence", DOC)
    assert bad.exit_code == 2 and "--lei" in bad.output, bad.output
    ok = run("delegation", "vet", delegation_id, "--legal-name", "Example Retail LLC", "--country", "US", "--lei", LEI,
             "--assurance", "high", "--vetted-by", "desk", "--vetted-at", "2026-11-01", "--evidence", DOC, "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["vetting"]["lei"] == LEI
    rtu = run("delegation", "right-to-use", delegation_id, "--tn", "12025550100", "--source", "LOA",
              "--verified-by", "desk", "--verified-at", "2026-11-01", "--evidence", DOC, "--json")
    assert rtu.exit_code == 0, rtu.output
    assert json.loads(rtu.output)["right_to_use"][0]["scope"] == "TN 12025550100"
    outside = run("delegation", "right-to-use", delegation_id, "--tn", "13105550100", "--source", "LOA",
                  "--verified-by", "desk", "--verified-at", "2026-11-01", "--evidence", DOC)
    assert outside.exit_code != 0 and "13105550100" in outside.output
    unknown = run("delegation", "vet", "no-such-delegation", "--legal-name", "X", "--assurance", "low",
                  "--vetted-by", "desk", "--vetted-at", "2026-11-01", "--evidence", DOC)
    assert unknown.exit_code == 2 and "ID" in unknown.output, unknown.output
    shown = run("delegation", "show", delegation_id)
    assert "Example Retail LLC" in shown.output and "right_to_use" in shown.output
