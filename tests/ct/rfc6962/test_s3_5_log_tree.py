"""RFC 6962 §3.4-§3.5 and §4.1: the log's stored tree (ctlog.log.Log on real SQL, without HTTP).

Entries are integrated in uneven batches; after every batch the signed tree head, every audit
path and every consistency proof the log serves (read from its cached subtree hashes) must equal
the brute-force RFC 6962 reference over the leaf inputs it serves.
"""

from __future__ import annotations

import hashlib
import struct
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select, update

from ctlog import merkle
from ctlog import store as log_store
from ctlog.log import LogError
from ct_helpers import make_delegate, ref_mth, ref_path, ref_proof


def verify_sth_signature(public_key: ec.EllipticCurvePublicKey, sth) -> None:
    """RFC 6962 §3.5 TreeHeadSignature, packed here independently of ctlog/structures.py."""
    signed = struct.pack(">BBQQ", 0, 1, sth.timestamp, sth.tree_size) + sth.root_hash
    hash_algorithm, signature_algorithm, length = struct.unpack(">BBH", sth.signature[:4])
    assert (hash_algorithm, signature_algorithm, length) == (4, 3, len(sth.signature) - 4)
    public_key.verify(sth.signature[4:], signed, ec.ECDSA(hashes.SHA256()))


def submit(ct_log, pki, count: int) -> None:
    for _ in range(count):
        ct_log.add_pre_chain([make_delegate(pki.issuing).precert_der, pki.issuing.der])


def served_leaves(ct_log, size: int) -> list[bytes]:
    leaves: list[bytes] = []
    while len(leaves) < size:
        leaves += [leaf for leaf, _ in ct_log.get_entries(len(leaves), size - 1)]
    return leaves


@pytest.mark.parametrize("batches", [[1, 1, 1, 1, 1, 1, 1, 1, 1], [3, 4, 2, 8, 1], [16, 1, 15, 2], [5, 0, 6]])
def test_s3_5_tree_heads_and_proofs_match_the_reference_across_batches(in_process_log, pki, batches):
    """RFC 6962 §3.5: "Periodically each log appends all its new entries to the Merkle Tree and
    signs the root"; proofs come from the stored subtree hashes, not from rehashing entries."""
    ct_log = in_process_log()
    public_key = ct_log.key.public_key()
    heads = {0: merkle.EMPTY_TREE_HASH}
    for batch in batches:
        submit(ct_log, pki, batch)
        sth = ct_log.integrate()
        verify_sth_signature(public_key, sth)
        leaves = served_leaves(ct_log, sth.tree_size)
        assert sth.root_hash == ref_mth(leaves)
        heads[sth.tree_size] = sth.root_hash
        for index, leaf in enumerate(leaves):
            assert ct_log.get_proof_by_hash(merkle.leaf_hash(leaf), sth.tree_size) == (index, ref_path(index, leaves))
        for first, first_root in heads.items():
            if 0 < first <= sth.tree_size:
                proof = ct_log.get_sth_consistency(first, sth.tree_size)
                assert proof == ref_proof(first, leaves)
                merkle.verify_consistency(first, sth.tree_size, first_root, sth.root_hash, proof)


def test_s3_4_leaf_input_is_a_timestamped_precert_entry(in_process_log, pki):
    """RFC 6962 §3.4 MerkleTreeLeaf: v1, timestamped_entry, timestamp of the SCT, precert_entry,
    issuer_key_hash, the TBS without poison (what the final certificate's TBS minus SCTs will be)."""
    ct_log = in_process_log()
    delegate = make_delegate(pki.issuing)
    sct = ct_log.add_pre_chain([delegate.precert_der, pki.issuing.der])
    ct_log.integrate()
    [(leaf, extra)] = ct_log.get_entries(0, 0)
    version, leaf_type, timestamp, entry_type = struct.unpack(">BBQH", leaf[:12])
    assert (version, leaf_type, timestamp, entry_type) == (0, 0, sct.timestamp, 1)
    issuer_spki = pki.issuing.certificate.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert leaf[12:44] == hashlib.sha256(issuer_spki).digest()
    tbs_length = int.from_bytes(leaf[44:47], "big")
    assert leaf[47:47 + tbs_length] == delegate.builder.sign(pki.issuing.key, hashes.SHA256()).tbs_certificate_bytes
    assert leaf[47 + tbs_length:] == b"\x00\x00"  # empty CtExtensions
    # RFC 6962 §4.6: extra_data of a precert entry is the whole PrecertChainEntry.
    precert_length = int.from_bytes(extra[:3], "big")
    assert extra[3:3 + precert_length] == delegate.precert_der
    chain = extra[3 + precert_length + 3:]
    first_length = int.from_bytes(chain[:3], "big")
    assert chain[3:3 + first_length] == pki.issuing.der
    assert chain[3 + first_length + 3:] == pki.root.der  # the log completes the chain with its root


def test_s4_1_resubmission_returns_the_same_sct_and_one_entry(in_process_log, pki):
    """RFC 6962 §4.1: for a chain it has seen, the log "MAY return the same SCT"; it logs it once."""
    ct_log = in_process_log()
    chain = [make_delegate(pki.issuing).precert_der, pki.issuing.der]
    first = ct_log.add_pre_chain(chain)
    time.sleep(0.01)
    second = ct_log.add_pre_chain(chain)
    assert second == first
    with ct_log.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(log_store.entries)).scalar_one() == 1


def test_s3_5_idle_log_signs_a_fresh_tree_head_once_per_merge_delay(in_process_log):
    """RFC 6962 §3.5: tree heads are signed periodically; an idle log's newest STH stays within
    one merge delay of now, and no extra STH is signed before that."""
    ct_log = in_process_log(merge_delay=0.2)
    first = ct_log.integrate()
    assert ct_log.integrate() == first
    time.sleep(0.25)
    refreshed = ct_log.integrate()
    assert refreshed.tree_size == first.tree_size and refreshed.root_hash == first.root_hash
    assert refreshed.timestamp > first.timestamp


def test_s3_5_rewritten_leaf_hash_breaks_consistency_with_the_earlier_tree_head(in_process_log, pki):
    """A log that rewrites history (here: a stored leaf hash edited in its database) produces a
    tree head no consistency proof can link to the earlier one: auditors detect the fork."""
    ct_log = in_process_log()
    submit(ct_log, pki, 5)
    before = ct_log.integrate()
    with ct_log.engine.begin() as conn:
        # The last leaf of an odd-sized tree has no cached parent yet, so the edit reaches the next root.
        conn.execute(update(log_store.entries).where(log_store.entries.c.leaf_index == 4).values(leaf_hash=b"\xee" * 32))
    submit(ct_log, pki, 3)
    after = ct_log.integrate()
    proof = ct_log.get_sth_consistency(before.tree_size, after.tree_size)
    with pytest.raises(merkle.ProofError, match="does not lead to the first root"):
        merkle.verify_consistency(before.tree_size, after.tree_size, before.root_hash, after.root_hash, proof)
    assert after.root_hash != ref_mth(served_leaves(ct_log, after.tree_size))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda log: log.get_sth_consistency(0, 1), "'first' (0) must be at least 1"),
        (lambda log: log.get_sth_consistency(2, 1), "'first' (2) must be at least 1 and at most 'second' (1)"),
        (lambda log: log.get_sth_consistency(1, 3), "'second' (3) is larger than the current tree size (2)"),
        (lambda log: log.get_proof_by_hash(b"\x00" * 32, 0), "'tree_size' (0) must be between 1 and the current tree size (2)"),
        (lambda log: log.get_proof_by_hash(b"\x00" * 32, 2), "no leaf with hash AAAA"),
        (lambda log: log.get_entries(2, 5), "'start' (2) is beyond the last entry of the tree (size 2)"),
        (lambda log: log.get_entries(1, 0), "'start' (1) must be at least 0 and at most 'end' (0)"),
    ],
)
def test_s4_reads_outside_the_tree_are_refused(in_process_log, pki, call, message):
    """RFC 6962 §4.4-§4.6: sizes and indices refer to the published tree."""
    ct_log = in_process_log()
    submit(ct_log, pki, 2)
    ct_log.integrate()
    with pytest.raises(LogError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(ct_log)


def test_database_of_another_log_is_refused(in_process_log):
    """One database holds one log: a second key pointed at it is refused, so two logs never mix trees."""
    from ctlog.log import Log

    ct_log = in_process_log()
    other = Log(name="other", key=ec.generate_private_key(ec.SECP256R1()), roots=ct_log.roots, engine=ct_log.engine)
    with pytest.raises(ValueError, match=f"belongs to the log with ID {ct_log.log_id.hex()}"):
        other.prepare_database()
