"""RFC 6962 §4 over real HTTP: a ``tnca ctlog serve`` subprocess on a loopback port, its own
database; every answer checked with code that does not come from ctlog/.
"""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import create_engine, text

from ct_helpers import (log_key, make_delegate, make_root, postgres_database, start_log, stop_log, verify_sth,
                        wait_for_tree_size)
from ctlog import merkle

def entry_count(log) -> int:
    url = log.database_url or f"sqlite:///{log.directory / 'log.db'}"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT COUNT(*) FROM ctlog_entries")).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture
def log(log_factory):
    return log_factory("api")


@pytest.fixture(scope="module")
def shared_log(tmp_path_factory, pki):
    """One log for the tests that only read an empty log or are refused by it: starting a log (a
    ``tnca ctlog serve`` subprocess) costs about a second, and these tests never add an entry."""
    home = tmp_path_factory.mktemp("ct-api-shared")
    roots_file = home / "roots.pem"
    roots_file.write_bytes(pki.root.pem)
    postgres = postgres_database("api_shared")
    running = start_log(home, "api-shared", roots_file, database_url=postgres[0] if postgres else None)
    yield running
    stop_log(running)
    if postgres:
        postgres[1]()


@pytest.fixture
def empty_log(shared_log):
    """The shared log, checked to be as a fresh one is: no entry, an empty tree."""
    assert entry_count(shared_log) == 0
    assert shared_log.get("get-sth").json()["tree_size"] == 0
    return shared_log


def test_serve_writes_the_public_key_whose_hash_is_the_log_id(empty_log):
    """RFC 6962 §3.2: the log ID is SHA-256 of the log's DER SubjectPublicKeyInfo; HOME/ctlog/NAME/key.pem
    holds that key for the authority's policy."""
    spki = log_key(empty_log).public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert hashlib.sha256(spki).hexdigest() == empty_log.log_id_hex
    assert (empty_log.directory / "private-key.pem").stat().st_mode & 0o077 == 0


def test_s4_3_get_sth_is_signed_and_served_under_both_prefixes(empty_log):
    """RFC 6962 §4.3 get-sth; the same API under /stict/v1/ for STIR CT clients (ctlog/app.py)."""
    sth = empty_log.get("get-sth").json()
    assert set(sth) == {"tree_size", "timestamp", "sha256_root_hash", "tree_head_signature"}
    assert sth["tree_size"] == 0 and base64.b64decode(sth["sha256_root_hash"]) == hashlib.sha256(b"").digest()
    verify_sth(log_key(empty_log), sth)
    stict = requests.get(f"{empty_log.url}/stict/v1/get-sth", timeout=10).json()
    verify_sth(log_key(empty_log), stict)


def test_s4_7_get_roots_lists_the_accepted_roots(empty_log, pki):
    """RFC 6962 §4.7: "certificates: An array of base64-encoded root certificates"."""
    assert empty_log.get("get-roots").json() == {"certificates": [base64.b64encode(pki.root.der).decode()]}


def test_s4_2_precertificate_is_logged_within_the_merge_delay_with_a_verifiable_inclusion_proof(log, pki):
    """RFC 6962 §4.2 add-pre-chain, then §4.6 get-entries and §4.5 get-proof-by-hash against a
    signed tree head: the log kept its promise to merge the entry."""
    delegate = make_delegate(pki.issuing)
    sct = log.client().add_pre_chain([delegate.precert_der, pki.issuing.der], timeout=10)
    assert sct.log_id.hex() == log.log_id_hex
    sth = wait_for_tree_size(log, 1)
    verify_sth(log_key(log), sth)
    assert sth["timestamp"] >= sct.timestamp  # RFC 6962 §3.5: the STH covers the entry
    [entry] = log.get("get-entries", start=0, end=0).json()["entries"]
    leaf = base64.b64decode(entry["leaf_input"])
    assert struct.unpack(">BBQH", leaf[:12]) == (0, 0, sct.timestamp, 1)
    extra = base64.b64decode(entry["extra_data"])
    assert extra[3:3 + int.from_bytes(extra[:3], "big")] == delegate.precert_der
    leaf_hash = hashlib.sha256(b"\x00" + leaf).digest()
    proof = log.get("get-proof-by-hash", hash=base64.b64encode(leaf_hash).decode(), tree_size=sth["tree_size"]).json()
    merkle.verify_inclusion(leaf_hash, proof["leaf_index"], sth["tree_size"],
                            [base64.b64decode(h) for h in proof["audit_path"]], base64.b64decode(sth["sha256_root_hash"]))


def test_s4_4_consistency_between_two_signed_tree_heads(log, pki):
    """RFC 6962 §4.4 get-sth-consistency between the heads before and after more submissions."""
    client = log.client()
    for _ in range(3):
        client.add_pre_chain([make_delegate(pki.issuing).precert_der, pki.issuing.der], timeout=10)
    first = wait_for_tree_size(log, 3)
    for _ in range(4):
        client.add_pre_chain([make_delegate(pki.issuing).precert_der, pki.issuing.der], timeout=10)
    second = wait_for_tree_size(log, 7)
    for sth in (first, second):
        verify_sth(log_key(log), sth)
    proof = log.get("get-sth-consistency", first=first["tree_size"], second=second["tree_size"]).json()["consistency"]
    merkle.verify_consistency(first["tree_size"], second["tree_size"], base64.b64decode(first["sha256_root_hash"]),
                              base64.b64decode(second["sha256_root_hash"]), [base64.b64decode(h) for h in proof])


def test_s4_8_get_entry_and_proof_returns_the_entry_and_its_audit_path(log, pki):
    """RFC 6962 §4.8 get-entry-and-proof: "leaf_input", "extra_data" and an "audit_path" that leads
    from the leaf to the root of the tree of the requested size."""
    client = log.client()
    for _ in range(3):
        client.add_pre_chain([make_delegate(pki.issuing).precert_der, pki.issuing.der], timeout=10)
    sth = wait_for_tree_size(log, 3)
    entries = log.get("get-entries", start=0, end=2).json()["entries"]
    for index in range(3):
        answer = log.get("get-entry-and-proof", leaf_index=index, tree_size=sth["tree_size"]).json()
        assert (answer["leaf_input"], answer["extra_data"]) == (entries[index]["leaf_input"], entries[index]["extra_data"])
        leaf_hash = hashlib.sha256(b"\x00" + base64.b64decode(answer["leaf_input"])).digest()
        merkle.verify_inclusion(leaf_hash, index, sth["tree_size"], [base64.b64decode(h) for h in answer["audit_path"]],
                                base64.b64decode(sth["sha256_root_hash"]))
    refused = log.get("get-entry-and-proof", leaf_index=3, tree_size=3)
    assert refused.status_code == 400
    assert refused.json()["error_message"] == "'leaf_index' (3) must be less than 'tree_size' (3)"


def test_s4_1_final_certificate_is_logged_as_an_x509_entry(log, pki):
    """RFC 6962 §4.1 add-chain: the entry is x509_entry(0) over the whole certificate."""
    delegate = make_delegate(pki.issuing)
    final = delegate.builder.sign(pki.issuing.key, hashes.SHA256())
    der = final.public_bytes(serialization.Encoding.DER)
    response = requests.post(f"{log.url}/ct/v1/add-chain", timeout=10, json={
        "chain": [base64.b64encode(der).decode(), base64.b64encode(pki.issuing.der).decode()]})
    assert response.status_code == 200, response.text
    wait_for_tree_size(log, 1)
    [entry] = log.get("get-entries", start=0, end=0).json()["entries"]
    leaf = base64.b64decode(entry["leaf_input"])
    assert struct.unpack(">H", leaf[10:12]) == (0,)
    assert leaf[12:15] == len(der).to_bytes(3, "big") and leaf[15:15 + len(der)] == der


def refusal(log, path: str, chain_ders: list[bytes]) -> tuple[int, str]:
    response = requests.post(f"{log.url}/ct/v1/{path}", timeout=10,
                             json={"chain": [base64.b64encode(d).decode() for d in chain_ders]})
    body = response.json()
    assert body["success"] is False
    return response.status_code, body["error_message"]


def test_s4_2_chain_to_a_foreign_root_is_refused_and_nothing_is_logged(empty_log):
    """RFC 6962 §3.1: "Logs MUST verify that the submitted ... chains to an accepted root"."""
    foreign = make_root("Foreign Root").issue_ca("Foreign CA")
    status, message = refusal(empty_log, "add-pre-chain", [make_delegate(foreign).precert_der, foreign.der])
    assert status == 400
    assert message == "chain does not end at an accepted root: no root of this log issued chain[1] (issuer 'CN=Foreign Root,C=US')"
    assert entry_count(empty_log) == 0


def test_s4_2_chain_with_a_bad_signature_is_refused(empty_log, pki):
    """RFC 6962 §3.1: the chain's signatures are verified, not just its names."""
    impostor = make_root("Test CT Root").issue_ca("Test STI-CA")  # same names, other keys
    status, message = refusal(empty_log, "add-pre-chain", [make_delegate(impostor).precert_der, pki.issuing.der])
    assert (status, message) == (400, "chain[0] signature does not verify with chain[1]'s key")
    assert entry_count(empty_log) == 0


def test_s3_1_certificate_without_poison_is_refused_by_add_pre_chain(empty_log, pki):
    """RFC 6962 §3.1: a precertificate carries the critical poison extension 1.3.6.1.4.1.11129.2.4.3."""
    final = make_delegate(pki.issuing).builder.sign(pki.issuing.key, hashes.SHA256())
    status, message = refusal(empty_log, "add-pre-chain", [final.public_bytes(serialization.Encoding.DER), pki.issuing.der])
    assert (status, message) == (400, "chain[0] is not a precertificate: the poison extension 1.3.6.1.4.1.11129.2.4.3 is missing")
    assert entry_count(empty_log) == 0


def test_s3_1_non_critical_poison_is_refused(empty_log, pki):
    """RFC 6962 §3.1: "a special critical poison extension"."""
    status, message = refusal(empty_log, "add-pre-chain", [make_delegate(pki.issuing, poison_critical=False).precert_der, pki.issuing.der])
    assert (status, message) == (400, "chain[0]'s poison extension 1.3.6.1.4.1.11129.2.4.3 must be critical (RFC 6962 §3.1)")
    assert entry_count(empty_log) == 0


def test_s4_1_precertificate_is_refused_by_add_chain(empty_log, pki):
    """RFC 6962 §4.1/§4.2: precertificates go to add-pre-chain, certificates to add-chain."""
    status, message = refusal(empty_log, "add-chain", [make_delegate(pki.issuing).precert_der, pki.issuing.der])
    assert (status, message) == (400, "chain[0] carries the precertificate poison extension: submit it with add-pre-chain")
    assert entry_count(empty_log) == 0


def test_s4_2_issuer_that_is_not_a_ca_is_refused(empty_log, pki):
    delegate = make_delegate(pki.issuing)
    leaf = delegate.builder.sign(pki.issuing.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
    status, message = refusal(empty_log, "add-pre-chain", [delegate.precert_der, leaf, pki.issuing.der])
    assert (status, message) == (400, "chain[1] is not a CA certificate (basicConstraints cA is not true)")


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        ("get-entries", {"start": "0"}, 400, "query parameter 'end' is missing"),
        ("get-entries", {"start": "-1", "end": "2"}, 400, "query parameter 'start' must be a decimal number of at most 2^63-1, got '-1'"),
        ("get-entries", {"start": "0", "end": "0"}, 400, "'start' (0) is beyond the last entry of the tree (size 0)"),
        ("get-sth-consistency", {"first": "1", "second": "x"}, 400, "query parameter 'second' must be a decimal number of at most 2^63-1, got 'x'"),
        ("get-sth-consistency", {"first": "1", "second": "9223372036854775808"}, 400,
         "query parameter 'second' must be a decimal number of at most 2^63-1, got '9223372036854775808'"),
        ("get-proof-by-hash", {"hash": "AA==", "tree_size": "1"}, 400, "query parameter 'hash' must be a 32-byte SHA-256 leaf hash, got 1 bytes"),
        ("get-proof-by-hash", {"hash": "*", "tree_size": "1"}, 400, "query parameter 'hash' is not valid base64"),
        ("get-entry-and-proof", {"leaf_index": "0"}, 400, "query parameter 'tree_size' is missing"),
        ("get-entry-and-proof", {"leaf_index": "0", "tree_size": "1"}, 400,
         "'tree_size' (1) must be between 1 and the current tree size (0)"),
        ("get-nothing", {}, 404, None),
    ],
)
def test_s4_bad_query_parameters_get_a_reason(empty_log, path, params, status, message):
    response = empty_log.get(path, **params)
    assert response.status_code == status
    body = response.json()
    assert body["success"] is False
    if message:
        assert body["error_message"] == message


def test_s4_wrong_method_is_405_with_allow(empty_log):
    response = requests.get(f"{empty_log.url}/ct/v1/add-chain", timeout=10)
    assert response.status_code == 405 and "POST" in response.headers["Allow"] and "GET" not in response.headers["Allow"]
    assert response.json()["success"] is False


def test_s3_5_concurrent_submissions_all_land_in_one_consistent_tree(log, pki):
    """Request threads and the integrator thread write at once: every SCT'd entry is merged
    exactly once, and the final tree is consistent with a head taken halfway."""
    from concurrent.futures import ThreadPoolExecutor

    chains = [[make_delegate(pki.issuing).precert_der, pki.issuing.der] for _ in range(24)]
    client = log.client()
    with ThreadPoolExecutor(max_workers=8) as pool:
        halfway = list(pool.map(lambda chain: client.add_pre_chain(chain, timeout=10), chains[:12]))
        first = wait_for_tree_size(log, 12)
        rest = list(pool.map(lambda chain: client.add_pre_chain(chain, timeout=10), chains[12:]))
    second = wait_for_tree_size(log, 24)
    assert second["tree_size"] == 24 and entry_count(log) == 24
    leaves = []
    while len(leaves) < 24:
        leaves += [base64.b64decode(e["leaf_input"]) for e in log.get("get-entries", start=len(leaves), end=23).json()["entries"]]
    assert sorted(struct.unpack(">Q", leaf[2:10])[0] for leaf in leaves) == sorted(s.timestamp for s in halfway + rest)
    assert base64.b64decode(second["sha256_root_hash"]) == merkle.root_hash([merkle.leaf_hash(leaf) for leaf in leaves])
    proof = log.get("get-sth-consistency", first=first["tree_size"], second=24).json()["consistency"]
    merkle.verify_consistency(first["tree_size"], 24, base64.b64decode(first["sha256_root_hash"]),
                              base64.b64decode(second["sha256_root_hash"]), [base64.b64decode(h) for h in proof])
