"""Merkle hash trees of an RFC 6962 log: tree hashes, audit paths, consistency proofs, verifiers.

Definitions are RFC 6962 §2.1 (``MTH``, ``PATH``, ``PROOF``); the verifiers are the iterative
algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2, which check the same proofs (RFC 9162 changed the
hash-tree construction of RFC 6962 in no way).

Everything here is a pure function. Proof *generation* needs the hash of arbitrary subtrees
``MTH(D[start:end])``; it asks a :class:`SubtreeHashes` for them, so the same code runs over an
in-memory list of leaf hashes (:class:`LeafHashList`, used by tests and by the reference) and over
the log's SQL store (``ctlog.store``, which reads cached perfect-subtree hashes). Every subtree that
RFC 6962's recursion visits starts at a multiple of a power of two at least as large as itself,
so it splits into at most log2(n) *perfect* subtrees (:func:`perfect_subtrees`); a store only
needs those.

Verifiers raise :class:`ProofError` naming what failed; they never return a boolean.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Protocol

HASH_SIZE = 32  # RFC 6962 §2.1: the log's hash algorithm is SHA-256, 32-byte outputs
LEAF_HASH_PREFIX = b"\x00"  # RFC 6962 §2.1: MTH({d(0)}) = SHA-256(0x00 || d(0))
NODE_HASH_PREFIX = b"\x01"  # RFC 6962 §2.1: MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))
EMPTY_TREE_HASH = hashlib.sha256(b"").digest()  # RFC 6962 §2.1: MTH({}) = SHA-256()


class ProofError(Exception):
    """A Merkle audit path or consistency proof does not prove what it claims."""


class SubtreeHashes(Protocol):
    """A source of subtree hashes for proof generation."""

    def subtree_hash(self, start: int, end: int) -> bytes:
        """``MTH(D[start:end])`` for ``0 <= start < end <= tree size``."""
        ...


def leaf_hash(leaf_input: bytes) -> bytes:
    """The hash of one leaf: SHA-256(0x00 || MerkleTreeLeaf) (RFC 6962 §2.1)."""
    return hashlib.sha256(LEAF_HASH_PREFIX + leaf_input).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: SHA-256(0x01 || left || right) (RFC 6962 §2.1)."""
    return hashlib.sha256(NODE_HASH_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """RFC 6962 §2.1: "k is the largest power of two smaller than n (i.e., k < n <= 2k)"."""
    if n < 2:
        raise ValueError(f"a tree of {n} leaves has no split point")
    return 1 << ((n - 1).bit_length() - 1)


def perfect_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """D[start:end] as perfect subtrees ``(level, index)``, left to right; subtree (level, index)
    covers leaves [index << level, (index + 1) << level). ``start`` must be aligned as in RFC
    6962's recursion (a multiple of the largest power of two not exceeding ``end - start``)."""
    nodes = []
    while start < end:
        size = end - start
        level = size.bit_length() - 1  # the largest power of two not exceeding what is left
        if start % (1 << level):
            raise ValueError(f"D[{start}:{end}] is not a subtree of an RFC 6962 tree")
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def fold_perfect_subtrees(hashes: Sequence[bytes]) -> bytes:
    """The hash of a subtree from its perfect subtrees' hashes (left to right).

    The subtrees shrink from left to right, so RFC 6962's split puts all but the first on the
    right: MTH = node(h0, node(h1, ... node(h[-2], h[-1])))."""
    if not hashes:
        raise ValueError("no subtrees to fold")
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = node_hash(left, result)
    return result


class LeafHashList:
    """:class:`SubtreeHashes` over an in-memory list of leaf hashes."""

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self.leaf_hashes = leaf_hashes

    def subtree_hash(self, start: int, end: int) -> bytes:
        if not 0 <= start < end <= len(self.leaf_hashes):
            raise ValueError(f"D[{start}:{end}] is outside a tree of {len(self.leaf_hashes)} leaves")
        return root_hash(self.leaf_hashes[start:end])


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) from the leaf hashes (RFC 6962 §2.1), bottom up in O(n) time and O(log n) space.

    A stack of perfect subtrees is kept, merged whenever the two on top have the same size;
    at the end they fold right to left, exactly RFC 6962's split."""
    if not leaf_hashes:
        return EMPTY_TREE_HASH
    stack: list[tuple[int, bytes]] = []  # (level, hash), levels strictly decreasing
    for value in leaf_hashes:
        level, current = 0, value
        while stack and stack[-1][0] == level:
            _, left = stack.pop()
            current = node_hash(left, current)
            level += 1
        stack.append((level, current))
    return fold_perfect_subtrees([h for _, h in stack])


def inclusion_path(index: int, tree_size: int, hashes: SubtreeHashes) -> list[bytes]:
    """PATH(m, D[n]) of RFC 6962 §2.1.1: the audit path of leaf ``index``, leaf level first."""
    if not 0 <= index < tree_size:
        raise ValueError(f"leaf index {index} is not in a tree of {tree_size} leaves")
    path: list[bytes] = []
    start, end = 0, tree_size
    while end - start > 1:
        k = split_point(end - start)
        if index < start + k:
            # RFC 6962 §2.1.1: m < k: PATH(m, D[0:k]) : MTH(D[k:n])
            path.append(hashes.subtree_hash(start + k, end))
            end = start + k
        else:
            # RFC 6962 §2.1.1: m >= k: PATH(m - k, D[k:n]) : MTH(D[0:k])
            path.append(hashes.subtree_hash(start, start + k))
            start += k
    path.reverse()  # the recursion appends on the way back up: the leaf's sibling comes first
    return path


def consistency_proof(first: int, second: int, hashes: SubtreeHashes) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 6962 §2.1.2 for 0 < first <= second; empty when first == second."""
    if not 0 < first <= second:
        raise ValueError(f"no consistency proof from tree size {first} to {second}")
    proof: list[bytes] = []
    start, end, m = 0, second, first
    complete = True  # RFC 6962 §2.1.2: the flag b, "whether the subtree ... is a complete subtree of the old tree"
    while m != end - start:
        k = split_point(end - start)
        if m <= k:
            # SUBPROOF(m, D[n], b) = SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
            proof.append(hashes.subtree_hash(start + k, end))
            end = start + k
        else:
            # SUBPROOF(m, D[n], b) = SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
            proof.append(hashes.subtree_hash(start, start + k))
            start += k
            m -= k
            complete = False
    if not complete:
        # SUBPROOF(m, D[m], false) = {MTH(D[m])}; with b true the verifier already has it.
        proof.append(hashes.subtree_hash(start, end))
    proof.reverse()
    return proof


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofError(f"{what} is not a {HASH_SIZE}-byte SHA-256 hash")


def root_from_inclusion_path(leaf: bytes, index: int, tree_size: int, path: Sequence[bytes]) -> bytes:
    """The root an audit path leads to, per RFC 9162 §2.1.3.2 steps 1-5 (without the final compare)."""
    _check_hash(leaf, "leaf hash")
    if not 0 <= index < tree_size:
        raise ProofError(f"leaf index {index} is not in a tree of {tree_size} leaves")
    fn, sn = index, tree_size - 1
    result = leaf
    for position, sibling in enumerate(path):
        _check_hash(sibling, f"audit path element {position}")
        if sn == 0:
            raise ProofError(f"audit path is too long: {len(path)} hashes for leaf {index} of {tree_size}")
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"audit path is too short: {len(path)} hashes for leaf {index} of {tree_size}")
    return result


def verify_inclusion(leaf: bytes, index: int, tree_size: int, path: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2: raise :class:`ProofError` unless ``path`` proves leaf ``index`` in ``root``."""
    _check_hash(root, "root hash")
    computed = root_from_inclusion_path(leaf, index, tree_size, path)
    if not hmac.compare_digest(computed, root):
        raise ProofError(
            f"audit path for leaf {index} leads to root {computed.hex()}, not {root.hex()} (tree size {tree_size})"
        )


def verify_consistency(first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2: raise :class:`ProofError` unless ``proof`` shows that the tree of size
    ``first`` (root ``first_root``) is a prefix of the tree of size ``second`` (``second_root``)."""
    _check_hash(first_root, "first root hash")
    _check_hash(second_root, "second root hash")
    for position, value in enumerate(proof):
        _check_hash(value, f"consistency proof element {position}")
    if not 0 <= first <= second:
        raise ProofError(f"tree size {first} cannot be a prefix of tree size {second}")
    if first == second:
        # Equal sizes: the proof is empty and the trees are the same tree.
        if proof:
            raise ProofError(f"a consistency proof between equal tree sizes must be empty, got {len(proof)} hashes")
        if not hmac.compare_digest(first_root, second_root):
            raise ProofError(f"two different roots for tree size {first}: {first_root.hex()} and {second_root.hex()}")
        return
    if first == 0:
        # The empty tree is a prefix of every tree; nothing to prove.
        if proof:
            raise ProofError(f"a consistency proof from the empty tree must be empty, got {len(proof)} hashes")
        return
    # Step 1: "If consistency_path is an empty array, stop and fail the proof verification."
    if not proof:
        raise ProofError(f"empty consistency proof from tree size {first} to {second}")
    path = list(proof)
    # Step 2: "If first is an exact power of 2, then prepend first_hash to the consistency_path array."
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    # Step 3: "Set fn to first - 1 and sn to second - 1."
    fn, sn = first - 1, second - 1
    # Step 4: "If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is not set."
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5: "Set both fr and sr to the first value in the consistency_path array."
    fr = sr = path[0]
    # Step 6: for each subsequent value c ...
    for value in path[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof from {first} to {second} is too long ({len(proof)} hashes)")
        if fn & 1 or fn == sn:
            fr = node_hash(value, fr)
            sr = node_hash(value, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, value)
        fn >>= 1
        sn >>= 1
    # Step 7: fr must equal first_hash, sr second_hash, and sn must be 0.
    if sn != 0:
        raise ProofError(f"consistency proof from {first} to {second} is too short ({len(proof)} hashes)")
    if not hmac.compare_digest(fr, first_root):
        raise ProofError(f"consistency proof does not lead to the first root {first_root.hex()} (size {first})")
    if not hmac.compare_digest(sr, second_root):
        raise ProofError(f"consistency proof does not lead to the second root {second_root.hex()} (size {second})")
