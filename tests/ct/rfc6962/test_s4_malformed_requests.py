"""RFC 6962 §4.1-§4.2: malformed chains and JSON get a 400 with a reason, never a 500, and
nothing is written (hypothesis fuzzing through the Flask test client, on the log's real SQL)."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1_alt_modules import rfc5280
from sqlalchemy import func, select

from ct_helpers import make_delegate, postgres_database
from ctlog import chain as chains
from ctlog import store as log_store
from ctlog.app import create_app
from ctlog.log import Log
from tests.helpers import certificate_with_bit_string_common_name, mutated_der

SUBMISSION_PATHS = ("/ct/v1/add-chain", "/ct/v1/add-pre-chain", "/stict/v1/add-pre-chain")
READ_PATHS = ("get-entries", "get-sth-consistency", "get-proof-by-hash")


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory, pki):
    postgres = postgres_database("fuzz")
    url = postgres[0] if postgres else f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'log.db'}"
    ct_log = Log(name="fuzz", key=ec.generate_private_key(ec.SECP256R1()), roots=chains.RootStore([pki.root.certificate]),
                 engine=log_store.make_engine(url), merge_delay=3600)
    ct_log.prepare_database()
    valid = [make_delegate(pki.issuing).precert_der, pki.issuing.der, pki.root.der]
    yield create_app(ct_log).test_client(), ct_log, valid
    ct_log.engine.dispose()
    if postgres:
        postgres[1]()


def entries_written(ct_log: Log) -> int:
    with ct_log.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(log_store.entries)).scalar_one()


def assert_refused(response, statuses=(400,)) -> None:
    assert response.status_code in statuses, (response.status_code, response.get_data()[:300])
    body = response.get_json()
    assert body["success"] is False and isinstance(body["error_message"], str) and body["error_message"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(body=st.binary(max_size=300), path=st.sampled_from(SUBMISSION_PATHS))
def test_s4_1_arbitrary_bytes_are_refused_with_a_reason(fuzzed, body, path):
    client, ct_log, _ = fuzzed
    before = entries_written(ct_log)
    assert_refused(client.post(path, data=body, content_type="application/json"))
    assert entries_written(ct_log) == before


@FUZZ
@given(value=json_values, path=st.sampled_from(SUBMISSION_PATHS))
def test_s4_1_json_that_is_not_a_chain_is_refused_with_a_reason(fuzzed, value, path):
    client, ct_log, _ = fuzzed
    before = entries_written(ct_log)
    assert_refused(client.post(path, data=json.dumps(value), content_type="application/json"))
    assert entries_written(ct_log) == before


@FUZZ
@given(items=st.lists(st.text(max_size=40) | st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode()), max_size=4),
       path=st.sampled_from(SUBMISSION_PATHS))
def test_s4_1_chain_of_non_certificates_is_refused_with_a_reason(fuzzed, items, path):
    client, ct_log, _ = fuzzed
    before = entries_written(ct_log)
    assert_refused(client.post(path, json={"chain": items}))
    assert entries_written(ct_log) == before


@FUZZ
@given(data=st.data(), path=st.sampled_from(("/ct/v1/add-pre-chain", "/stict/v1/add-pre-chain")))
def test_s4_2_mutated_chain_is_refused_with_a_reason(fuzzed, data, path):
    """One certificate of a valid chain with a byte changed, cut, extended or spliced: its
    signature or encoding breaks, and the log says which certificate."""
    client, ct_log, valid = fuzzed
    chain = list(valid)
    position = data.draw(st.integers(0, len(chain) - 1))
    chain[position] = mutated_der(chain[position], data)
    before = entries_written(ct_log)
    response = client.post(path, json={"chain": [base64.b64encode(der).decode() for der in chain]})
    if response.status_code == 200:
        # A change that leaves every signature intact (e.g. in an unsigned outer field that DER
        # still accepts) is a valid chain; the log may record it. It must never be a 500.
        return
    assert_refused(response)
    assert "chain" in response.get_json()["error_message"]
    assert entries_written(ct_log) == before


def with_duplicated_extension(der: bytes) -> bytes:
    """``der`` with its first extension repeated (RFC 5280 §4.2: "MUST NOT include more than
    one instance of a particular extension"); the signature no longer matches, but parsing
    must fail first."""
    certificate, _ = der_decoder.decode(der, asn1Spec=rfc5280.Certificate())
    extensions = certificate["tbsCertificate"]["extensions"]
    extensions.append(extensions[0])
    return der_encoder.encode(certificate)


def with_version(der: bytes, version: int) -> bytes:
    """``der`` with its [0] EXPLICIT version INTEGER set to ``version`` (v3 is 2)."""
    mutated = bytearray(der)
    mutated[mutated.index(b"\xa0\x03\x02\x01\x02") + 4] = version
    return bytes(mutated)


@pytest.mark.parametrize(
    "mutate, fragment",
    [(with_duplicated_extension, "Duplicate"), (lambda der: with_version(der, 14), "14 is not a valid X509 version"),
     (lambda der: certificate_with_bit_string_common_name(), "BitString")],
    ids=["duplicate-extension", "version-15", "bit-string-common-name"],
)
def test_s4_2_certificate_cryptography_refuses_without_a_value_error_is_a_400(fuzzed, mutate, fragment):
    """Found by the mutation fuzzer above: one flipped byte turned an extension's OID into one
    already present, or the version into 14; cryptography raises exceptions that are not
    ValueErrors for both, and the log answered 500. Likewise a Name attribute typed BIT STRING
    under an OID other than x500UniqueIdentifier (TypeError, found the same way)."""
    client, ct_log, valid = fuzzed
    chain = [mutate(valid[0]), *valid[1:]]
    before = entries_written(ct_log)
    response = client.post("/ct/v1/add-pre-chain", json={"chain": [base64.b64encode(der).decode() for der in chain]})
    assert_refused(response)
    message = response.get_json()["error_message"]
    assert "chain[0] is not a usable DER X.509 certificate" in message and fragment in message, message
    assert entries_written(ct_log) == before


@FUZZ
@given(path=st.sampled_from(READ_PATHS),
       params=st.dictionaries(st.sampled_from(["start", "end", "first", "second", "hash", "tree_size"]),
                              st.text(max_size=25) | st.integers(-5, 2**64).map(str), max_size=4))
def test_s4_arbitrary_query_parameters_never_crash(fuzzed, path, params):
    client, _, _ = fuzzed
    response = client.get(f"/ct/v1/{path}", query_string=params)
    if response.status_code != 200:
        assert_refused(response, statuses=(400, 404))


def test_s4_oversized_body_is_413_with_a_reason(fuzzed):
    client, ct_log, _ = fuzzed
    assert_refused(client.post("/ct/v1/add-pre-chain", data=b"{" * (300 * 1024), content_type="application/json"), statuses=(413,))


def test_s4_deeply_nested_json_is_refused_with_a_reason(fuzzed):
    client, _, _ = fuzzed
    response = client.post("/ct/v1/add-chain", data=b"[" * 100_000 + b"]" * 100_000, content_type="application/json")
    assert_refused(response)
    assert response.get_json()["error_message"] == "request body is not JSON: nested too deeply"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xfe", "request body is not UTF-8 text"),
        (b"[1]", "request body must be a JSON object with a 'chain' member, got list"),
        (b'{"chain": "abc"}', "'chain' must be an array of base64-encoded DER certificates"),
        (b'{"chain": [1]}', "chain[0] must be a base64 string, got int"),
        (b'{"chain": ["@@"]}', "chain[0] is not valid base64"),
        (b'{"chain": []}', "chain is empty: it must hold at least the (pre)certificate"),
        (b'{"chain": ["MAA="]}', "chain[0] is not a usable DER X.509 certificate"),
    ],
)
def test_s4_1_each_malformed_body_names_what_is_wrong(fuzzed, body, message):
    client, ct_log, _ = fuzzed
    response = client.post("/ct/v1/add-pre-chain", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error_message"].startswith(message)
