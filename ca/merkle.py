"""RFC 6962 §2.1 Merkle hash trees for the authority's own use (the audit trail's checkpoints,
the number monitor's check of a log).

The functions are the log's (``ctlog/merkle.py``: pure, standard library only, written and tested
against RFC 6962 / RFC 9162); this module is the one place ``ca`` takes them from, so ``ctlog``
stays a standalone log that imports nothing of ``ca`` and ``ca`` names one source of tree hashes.
"""

from __future__ import annotations

from ctlog.merkle import (  # noqa: F401  (re-exported)
    EMPTY_TREE_HASH,
    HASH_SIZE,
    LeafHashList,
    ProofError,
    consistency_proof,
    fold_perfect_subtrees,
    inclusion_path,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "EMPTY_TREE_HASH", "HASH_SIZE", "LeafHashList", "ProofError", "consistency_proof", "fold_perfect_subtrees",
    "inclusion_path", "leaf_hash", "node_hash", "root_hash", "verify_consistency", "verify_inclusion",
]
