"""``tnca ct logs --json`` (the policy's logs with their IDs and keys) and ``tnca ctlog serve``'s
input checks."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ca.policy import DEFAULT_POLICY_PATH
from tnca.cli import cli


def home_with_logs(tmp_path: Path, logs: list[tuple[str, str, Path]], required: int) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    entries = ", ".join(f'{{ name = "{n}", url = "{u}", public_key = "{k}" }}' for n, u, k in logs)
    policy = DEFAULT_POLICY_PATH.read_text()
    assert "\nlogs = []\n" in policy and "\nrequired_scts = 0\n" in policy
    policy = policy.replace("\nlogs = []\n", f"\nlogs = [{entries}]\n").replace("\nrequired_scts = 0\n", f"\nrequired_scts = {required}\n")
    (home / "policy.toml").write_text(policy)
    return home


def write_key(path: Path) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    path.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_ct_logs_json_lists_url_log_id_and_key(tmp_path):
    """RFC 6962 §3.2: the log ID a verifier matches SCTs with is SHA-256 of the DER SPKI."""
    der1, der2 = write_key(tmp_path / "dev1.pem"), write_key(tmp_path / "dev2.pem")
    home = home_with_logs(tmp_path, [("dev1", "http://127.0.0.1:8091/", tmp_path / "dev1.pem"),
                                     ("dev2", "http://127.0.0.1:8092", Path("../dev2.pem"))], required=2)
    result = CliRunner().invoke(cli, ["--home", str(home), "ct", "logs", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [
        {"name": "dev1", "url": "http://127.0.0.1:8091", "log_id": base64.b64encode(hashlib.sha256(der1).digest()).decode(),
         "public_key": base64.b64encode(der1).decode()},
        {"name": "dev2", "url": "http://127.0.0.1:8092", "log_id": base64.b64encode(hashlib.sha256(der2).digest()).decode(),
         "public_key": base64.b64encode(der2).decode()},
    ]
    text = CliRunner().invoke(cli, ["--home", str(home), "ct", "logs"])
    assert text.exit_code == 0 and text.output.startswith("2 SCT(s) required from distinct logs; submission deadline 10 s")


def test_ct_logs_with_a_missing_key_file_fails_naming_it(tmp_path):
    home = home_with_logs(tmp_path, [("dev1", "http://127.0.0.1:8091", tmp_path / "absent.pem")], required=1)
    result = CliRunner().invoke(cli, ["--home", str(home), "ct", "logs", "--json"])
    assert result.exit_code == 1
    assert f"log dev1: cannot read its public key {tmp_path / 'absent.pem'}" in result.output


def test_ct_logs_of_the_default_policy_is_empty(tmp_path):
    result = CliRunner().invoke(cli, ["--home", str(tmp_path), "ct", "logs", "--json"])
    assert result.exit_code == 0 and json.loads(result.output) == []


def test_ctlog_serve_refuses_a_bad_name_and_missing_roots(tmp_path):
    bad_name = CliRunner().invoke(cli, ["--home", str(tmp_path), "ctlog", "serve", "--name", "../x"])
    assert bad_name.exit_code == 2 and "'--name'" in bad_name.output
    no_roots = CliRunner().invoke(cli, ["--home", str(tmp_path), "ctlog", "serve", "--name", "dev1"])
    assert no_roots.exit_code == 2 and f"{tmp_path.resolve() / 'certs' / 'root.pem'} does not exist" in no_roots.output
    assert not (tmp_path / "ctlog").exists()
