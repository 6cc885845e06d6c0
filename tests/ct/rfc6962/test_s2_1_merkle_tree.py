"""RFC 6962 §2.1 Merkle hash trees: ctlog/merkle.py against a brute-force transcription of the
RFC's recursive definitions, against pymerkle (an independent implementation from PyPI), and the
RFC 9162 §2.1.3.2 / §2.1.4.2 verifiers against tampered proofs.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymerkle import InclusionProof, InmemoryTree
from pymerkle import verify_inclusion as pymerkle_verify_inclusion

from ct_helpers import ref_mth, ref_path, ref_proof
from ctlog import merkle

# -- strategies ------------------------------------------------------------------------------------

def leaves(min_size: int = 1, max_size: int = 70):
    return st.lists(st.binary(min_size=0, max_size=8), min_size=min_size, max_size=max_size)


@st.composite
def tree_and_index(draw):
    d = draw(leaves())
    return d, draw(st.integers(0, len(d) - 1))


@st.composite
def tree_and_prefix(draw):
    d = draw(leaves())
    return d, draw(st.integers(1, len(d)))


def flip_bit(value: bytes, bit: int) -> bytes:
    data = bytearray(value)
    data[bit // 8 % len(data)] ^= 1 << (bit % 8)
    return bytes(data)


# -- tree hash -------------------------------------------------------------------------------------

def test_s2_1_empty_tree_hash_is_sha256_of_nothing():
    """RFC 6962 §2.1: "The hash of an empty list is the hash of an empty string: MTH({}) = SHA-256()"."""
    assert merkle.root_hash([]) == hashlib.sha256(b"").digest() == merkle.EMPTY_TREE_HASH


def test_s2_1_leaf_and_node_hashes_use_distinct_prefixes():
    """RFC 6962 §2.1: leaves are hashed with 0x00 and nodes with 0x01, so no leaf can pose as a node."""
    assert merkle.leaf_hash(b"ab") == hashlib.sha256(b"\x00ab").digest()
    assert merkle.node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    assert merkle.leaf_hash(b"a" * 32 + b"b" * 32) != merkle.node_hash(b"a" * 32, b"b" * 32)


@settings(max_examples=150, deadline=None)
@given(leaves(min_size=0))
def test_s2_1_tree_hash_matches_the_rfc_definition_and_pymerkle(d):
    """RFC 6962 §2.1: MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])), k < n <= 2k."""
    leaf_hashes = [merkle.leaf_hash(x) for x in d]
    independent = InmemoryTree(algorithm="sha256")
    for x in d:
        independent.append_entry(x)
    assert merkle.root_hash(leaf_hashes) == ref_mth(d) == independent.get_root()
    if d:
        assert merkle.LeafHashList(leaf_hashes).subtree_hash(0, len(d)) == ref_mth(d)


@given(st.integers(2, 10**6))
def test_s2_1_split_point_is_the_largest_power_of_two_below_n(n):
    """RFC 6962 §2.1: "k is the largest power of two smaller than n (i.e., k < n <= 2k)"."""
    k = merkle.split_point(n)
    assert k & (k - 1) == 0 and k < n <= 2 * k


@given(st.integers(0, 2**20), st.integers(1, 2**12))
def test_perfect_subtrees_cover_every_rfc_6962_subtree_exactly(start_block, size):
    """Every subtree RFC 6962's recursion visits starts at a multiple of a power of two at least
    its size; such a range splits into perfect subtrees that tile it left to right."""
    align = 1 << size.bit_length()
    start = start_block * align
    covered = start
    for level, index in merkle.perfect_subtrees(start, start + size):
        assert index << level == covered
        covered += 1 << level
    assert covered == start + size


# -- audit paths (RFC 6962 §2.1.1) -----------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(tree_and_index())
def test_s2_1_1_audit_path_matches_the_rfc_definition_and_verifies(case):
    """RFC 6962 §2.1.1: PATH(m, D[n]) is "the shortest list of additional nodes ... required to
    compute the MTH"; RFC 9162 §2.1.3.2 verifies it back to the root."""
    d, m = case
    leaf_hashes = [merkle.leaf_hash(x) for x in d]
    path = merkle.inclusion_path(m, len(d), merkle.LeafHashList(leaf_hashes))
    assert path == ref_path(m, d)
    merkle.verify_inclusion(leaf_hashes[m], m, len(d), path, ref_mth(d))


@settings(max_examples=150, deadline=None)
@given(tree_and_index())
def test_s2_1_1_audit_path_verifies_with_pymerkle(case):
    """The same audit path, checked by pymerkle's verifier (its proof shape: the leaf, then our
    path bottom-up, resolved by its own left/right rule for index and size)."""
    d, m = case
    independent = InmemoryTree(algorithm="sha256")
    for x in d:
        independent.append_entry(x)
    ours = merkle.inclusion_path(m, len(d), merkle.LeafHashList([merkle.leaf_hash(x) for x in d]))
    theirs = independent.prove_inclusion(m + 1, len(d))  # pymerkle counts leaves from one
    assert theirs.path[1:] == ours
    proof = InclusionProof("sha256", True, len(d), m + 1, theirs.rule, [merkle.leaf_hash(d[m]), *ours])
    pymerkle_verify_inclusion(merkle.leaf_hash(d[m]), independent.get_root(), proof, index=m + 1, size=len(d))


@settings(max_examples=150, deadline=None)
@given(tree_and_index(), st.integers(0, 255), st.data())
def test_s2_1_1_tampered_audit_path_is_refused(case, bit, data):
    """RFC 9162 §2.1.3.2 step 5: the recomputed root must equal the root hash, else "fail"."""
    d, m = case
    leaf_hashes = [merkle.leaf_hash(x) for x in d]
    root = ref_mth(d)
    path = merkle.inclusion_path(m, len(d), merkle.LeafHashList(leaf_hashes))
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(flip_bit(leaf_hashes[m], bit), m, len(d), path, root)
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(leaf_hashes[m], m, len(d), path, flip_bit(root, bit))
    with pytest.raises(merkle.ProofError):
        merkle.verify_inclusion(leaf_hashes[m], m, len(d), [*path, b"\x00" * 32], root)
    if path:
        position = data.draw(st.integers(0, len(path) - 1))
        tampered = list(path)
        tampered[position] = flip_bit(tampered[position], bit)
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(leaf_hashes[m], m, len(d), tampered, root)
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(leaf_hashes[m], m, len(d), path[:-1], root)
    if len(set(leaf_hashes)) == len(leaf_hashes):
        other = data.draw(st.integers(0, len(d) - 1).filter(lambda i: i != m)) if len(d) > 1 else None
        if other is not None:
            with pytest.raises(merkle.ProofError):
                merkle.verify_inclusion(leaf_hashes[m], other, len(d), path, root)


def test_s2_1_1_index_outside_the_tree_is_refused():
    """RFC 9162 §2.1.3.2 step 1: "If leaf_index >= tree_size, then stop and fail"."""
    with pytest.raises(merkle.ProofError, match="not in a tree of 3 leaves"):
        merkle.verify_inclusion(b"\x00" * 32, 3, 3, [], b"\x00" * 32)
    with pytest.raises(ValueError, match="not in a tree of 3 leaves"):
        merkle.inclusion_path(3, 3, merkle.LeafHashList([b"\x00" * 32] * 3))


# -- consistency proofs (RFC 6962 §2.1.2) ----------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(tree_and_prefix())
def test_s2_1_2_consistency_proof_matches_the_rfc_definition_and_verifies(case):
    """RFC 6962 §2.1.2: PROOF(m, D[n]) lets a verifier check that D[0:m] is a prefix of D[n]."""
    d, m = case
    leaf_hashes = [merkle.leaf_hash(x) for x in d]
    proof = merkle.consistency_proof(m, len(d), merkle.LeafHashList(leaf_hashes))
    assert proof == ref_proof(m, d)
    merkle.verify_consistency(m, len(d), ref_mth(d[:m]), ref_mth(d), proof)


@settings(max_examples=150, deadline=None)
@given(tree_and_prefix(), st.integers(0, 255), st.data())
def test_s2_1_2_tampered_consistency_proof_is_refused(case, bit, data):
    """RFC 9162 §2.1.4.2 step 7: fr must equal first_hash and sr second_hash, else "fail"."""
    d, m = case
    n = len(d)
    proof = merkle.consistency_proof(m, n, merkle.LeafHashList([merkle.leaf_hash(x) for x in d]))
    first, second = ref_mth(d[:m]), ref_mth(d)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(m, n, flip_bit(first, bit), second, proof)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(m, n, first, flip_bit(second, bit), proof)
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(m, n, first, second, [*proof, b"\x01" * 32])
    if proof:
        position = data.draw(st.integers(0, len(proof) - 1))
        tampered = list(proof)
        tampered[position] = flip_bit(tampered[position], bit)
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(m, n, first, second, tampered)
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(m, n, first, second, proof[:-1])


@settings(max_examples=100, deadline=None)
@given(leaves(min_size=2), st.data())
def test_s2_1_2_rewritten_history_has_no_consistency_proof(d, data):
    """A tree whose old part was rewritten (one earlier leaf changed) is not consistent with the
    old tree head: no proof the log can build verifies (the attack a monitor exists to catch)."""
    m = data.draw(st.integers(1, len(d) - 1))
    changed = data.draw(st.integers(0, m - 1))
    forked = list(d)
    forked[changed] = forked[changed] + b"!"
    proof = merkle.consistency_proof(m, len(d), merkle.LeafHashList([merkle.leaf_hash(x) for x in forked]))
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(m, len(d), ref_mth(d[:m]), ref_mth(forked), proof)


def test_s2_1_2_equal_sizes_need_an_empty_proof_and_the_same_root():
    """Equal tree sizes: the only consistent proof is the empty one, between equal roots."""
    root = merkle.leaf_hash(b"x")
    merkle.verify_consistency(1, 1, root, root, [])
    with pytest.raises(merkle.ProofError, match="must be empty"):
        merkle.verify_consistency(1, 1, root, root, [root])
    with pytest.raises(merkle.ProofError, match="two different roots"):
        merkle.verify_consistency(1, 1, root, merkle.leaf_hash(b"y"), [])


def test_s2_1_2_second_tree_smaller_than_first_is_refused():
    with pytest.raises(merkle.ProofError, match="cannot be a prefix"):
        merkle.verify_consistency(3, 2, b"\x00" * 32, b"\x00" * 32, [b"\x00" * 32])
