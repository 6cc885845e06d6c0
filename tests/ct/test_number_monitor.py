"""``tnca monitor``: follow an RFC 6962 log (a ``tnca ctlog serve`` subprocess over real HTTP) and
find every certificate or precertificate whose TNAuthList covers a watched number, whoever issued
it — here a CA that is not the authority's. The log is verified as it goes (RFC 6962 §4.3 STH
signature, §4.4 consistency with the head verified last time, the entries hashing to the root)
and the run remembers where it stopped; the auditor page shows a number's history.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ca.numbers.tnauthlist import TNScope
from ct_helpers import wait_for_tree_size
from tests.admin.support import PageClient, create_people, element, text_of
from sqlalchemy import update

from ca.home import Home
from ca.records.models_monitor import MonitoredLog
from tests.protocol.support import app  # noqa: F401  (fixture)
from tnca.cli import cli

pytestmark = pytest.mark.e2e

WATCHED = "12025550100"
UNCOVERED = "13035550100"


@pytest.fixture
def home(tmp_path: Path, session_factory, database_url):  # noqa: F811 - beside log_factory's tmp_path/"home"
    path = tmp_path / "authority"
    result = CliRunner().invoke(cli, ["--home", str(path), "init", "--database-url", database_url],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    home = Home(path)
    yield home
    home.close()


def tnca(home, *args: str):  # noqa: F811
    return CliRunner().invoke(cli, ["--home", str(home.path), *args], catch_exceptions=False)


def stir_certificate(issuer, scope: TNScope, *, precertificate: bool) -> x509.Certificate:
    """A delegate certificate of another CA (``pki.issuing``) whose TNAuthList is ``scope``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"Other CA delegate {scope.describe()}")]))
        .issuer_name(issuer.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=24))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
        .add_extension(scope.to_extension(), critical=False)
    )
    if precertificate:
        builder = builder.add_extension(x509.PrecertPoison(), critical=True)
    return builder.sign(issuer.key, hashes.SHA256())


def submit(log, pki, certificate: x509.Certificate, *, precertificate: bool) -> None:
    der = certificate.public_bytes(serialization.Encoding.DER)
    path = "add-pre-chain" if precertificate else "add-chain"
    response = requests.post(f"{log.url}/ct/v1/{path}", timeout=10, json={
        "chain": [base64.b64encode(der).decode(), base64.b64encode(pki.issuing.der).decode()]})
    assert response.status_code == 200, response.text


def monitor(home, log, *numbers: str):  # noqa: F811
    args = ["monitor", "--log", log.url, "--json"]
    for number in numbers:
        args += ["--tn", number]
    result = tnca(home, *args)
    assert result.exit_code == 0, result.output
    [answer] = json.loads(result.stdout)
    return answer


def test_monitor_finds_the_certificates_covering_a_watched_number_and_nothing_else(home, app, log_factory, pki,  # noqa: F811
                                                                                 session_factory):
    log = log_factory("monitored")
    policy = home.policy_path.read_text()
    home.policy_path.write_text(policy.replace(
        "\nlogs = []\n", f'\nlogs = [{{ name = "{log.name}", url = "{log.url}", public_key = "{log.public_key_file}" }}]\n'))
    covering_pre = stir_certificate(pki.issuing, TNScope.parse(tns=[WATCHED]), precertificate=True)
    covering = stir_certificate(pki.issuing, TNScope.parse(ranges=["12025550000:1000"]), precertificate=False)
    elsewhere = stir_certificate(pki.issuing, TNScope.parse(ranges=["12025551000:100"]), precertificate=True)
    submit(log, pki, covering_pre, precertificate=True)
    submit(log, pki, covering, precertificate=False)
    submit(log, pki, elsewhere, precertificate=True)
    wait_for_tree_size(log, 3)

    answer = monitor(home, log, WATCHED)
    assert (answer["previous_size"], answer["tree_size"], answer["stir_entries"]) == (0, 3, 3)
    assert answer["sth_signature_checked"] is True
    found = {(m["entry_type"], m["serial"]) for m in answer["matches"]}
    assert found == {("precert", format(covering_pre.serial_number, "x")), ("x509", format(covering.serial_number, "x"))}
    assert all(m["issuer"] == pki.issuing.certificate.subject.rfc4514_string() for m in answer["matches"])

    # One more entry; the next run starts where this one stopped (consistency 3 -> 4 verified).
    submit(log, pki, stir_certificate(pki.issuing, TNScope.parse(tns=["19995550100"]), precertificate=True),
           precertificate=True)
    wait_for_tree_size(log, 4)
    answer = monitor(home, log, UNCOVERED)
    assert (answer["previous_size"], answer["tree_size"], answer["stir_entries"], answer["matches"]) == (3, 4, 1, [])

    # A log that shows another root for a size verified before is reported, and nothing is kept.
    with session_factory() as session:
        session.execute(update(MonitoredLog).values(root_hash="00" * 32))
        session.commit()
    forked = tnca(home, "monitor", "--log", log.url, "--tn", WATCHED)
    assert forked.exit_code == 1 and "two roots for tree size 4: the log forked" in forked.output, forked.output

    # The auditor page: the watched number's history across the followed logs; none for the other.
    auditor = PageClient(app, create_people(home)["auditor"])
    page = text_of(auditor.get("/admin/numbers", query_string={"tn": WATCHED}))
    history = element(page, "number-history")
    assert format(covering_pre.serial_number, "x") in history and format(covering.serial_number, "x") in history
    assert format(elsewhere.serial_number, "x") not in history
    assert "no certificate" in element(text_of(auditor.get("/admin/numbers", query_string={"tn": UNCOVERED})),
                                       "number-history")


def test_monitor_refuses_bad_input_and_reports_an_unreachable_log(home):  # noqa: F811
    assert tnca(home, "monitor", "--log", "http://127.0.0.1:9", "--tn", "1202555x").exit_code == 2
    assert tnca(home, "monitor", "--log", "ftp://example", "--tn", WATCHED).exit_code == 2
    assert tnca(home, "monitor", "--log", "http://127.0.0.1:9").exit_code == 2
    result = tnca(home, "monitor", "--log", "http://127.0.0.1:9", "--tn", WATCHED, "--timeout", "2")
    assert result.exit_code == 1 and "get-sth failed" in result.output
