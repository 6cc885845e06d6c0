"""The issuer chain a submission carries is checked once per root store (ctlog/chain.py,
``RootStore.verified_tail``): later submissions with the same tail parse and check only their
leaf, get byte-for-byte the entry a first check gives, and a bad leaf or a different tail is
still refused (RFC 6962 §3.1: "each certificate ... signed by the next", ending at an accepted
root)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization

from ct_helpers import make_delegate, make_root
from ctlog import chain as chains


def test_a_second_submission_with_the_same_tail_parses_only_its_leaf(pki, monkeypatch):
    roots = chains.RootStore([pki.root.certificate])
    first, second = make_delegate(pki.issuing), make_delegate(pki.issuing)
    chains.accept_pre_chain([first.precert_der, pki.issuing.der], roots)
    parsed = []
    real = chains.parse_certificate
    monkeypatch.setattr(chains, "parse_certificate", lambda der, position: parsed.append(position) or real(der, position))
    accepted = chains.accept_pre_chain([second.precert_der, pki.issuing.der], roots)
    assert parsed == [0]
    # The same entry as a store that never saw the tail makes.
    monkeypatch.setattr(chains, "parse_certificate", real)
    assert accepted == chains.accept_pre_chain([second.precert_der, pki.issuing.der],
                                               chains.RootStore([pki.root.certificate]))


def test_the_entry_names_the_final_issuer_and_carries_the_completed_chain(pki):
    """RFC 6962 §3.2 issuer_key_hash; §4.6 extra_data: the chain with the root the submitter left out."""
    roots = chains.RootStore([pki.root.certificate])
    for _ in range(2):  # the first check, then from the store
        delegate = make_delegate(pki.issuing)
        accepted = chains.accept_pre_chain([delegate.precert_der, pki.issuing.der], roots)
        assert accepted.signed_entry[:32] == chains.spki_sha256(pki.issuing.certificate)
        der = serialization.Encoding.DER
        assert accepted.extra_data == chains.structures.precert_extra_data(
            delegate.precertificate.public_bytes(der), [pki.issuing.der, pki.root.der])


def test_a_leaf_its_issuer_did_not_sign_is_refused_after_the_tail_was_accepted(pki):
    roots = chains.RootStore([pki.root.certificate])
    chains.accept_pre_chain([make_delegate(pki.issuing).precert_der, pki.issuing.der], roots)
    impostor = pki.root.issue_ca("Test STI-CA")  # the issuing CA's name, another key
    forged = make_delegate(impostor).precertificate.public_bytes(serialization.Encoding.DER)
    with pytest.raises(chains.ChainError, match=r"^chain\[0\] signature does not verify with chain\[1\]'s key$"):
        chains.accept_pre_chain([forged, pki.issuing.der], roots)


def test_a_tail_to_a_foreign_root_is_refused_even_next_to_an_accepted_one(pki):
    roots = chains.RootStore([pki.root.certificate])
    chains.accept_pre_chain([make_delegate(pki.issuing).precert_der, pki.issuing.der], roots)
    foreign = make_root("Foreign Root").issue_ca("Foreign CA")
    with pytest.raises(chains.ChainError, match=r"^chain does not end at an accepted root"):
        chains.accept_pre_chain([make_delegate(foreign).precert_der, foreign.der], roots)
    with pytest.raises(chains.ChainError, match=r"^chain does not end at an accepted root"):
        chains.accept_pre_chain([make_delegate(foreign).precert_der, foreign.der], roots)  # not remembered


def test_the_store_forgets_its_tails_when_full(pki, monkeypatch):
    monkeypatch.setattr(chains, "MAX_VERIFIED_TAILS", 2)
    roots = chains.RootStore([pki.root.certificate])
    issuers = [pki.root.issue_ca(f"CA {n}") for n in range(3)]
    for issuer in issuers:
        chains.accept_pre_chain([make_delegate(issuer).precert_der, issuer.der], roots)
    assert list(roots._tails) == [(issuers[2].der,)]  # emptied at the third, which is kept
