"""``HOME/tnca.toml`` (ca/config.py) and how the home (ca/home.py) reads it.

Strict like the policy: an unknown section or key, or a value of the wrong type, is a
PolicyError whose field names ``[section] key``; every key has a documented default.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from ca.config import (
    AUDIT_CERT_FILE,
    AUDIT_SIGNER_URI,
    DEFAULT_BASE_URL,
    SECTIONS,
    TOKEN_AUTHORITY_CERT_FILE,
    Settings,
)
from ca.errors import PolicyError
from ca.home import Home
from ca.tokens.trust_config import TokenCompat
from ca.tokens.x5u import FetchPolicy
from tnca.cli import cli
from tnca.commands.init import _config_text

OPERATOR_GUIDE = Path(__file__).resolve().parents[2] / "docs" / "operator-guide.md"


def write(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / "tnca.toml").write_text(text)
    return home


def test_a_home_without_tnca_toml_reads_as_the_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("TNCA_BASE_URL", raising=False)
    monkeypatch.delenv("TNCA_DATABASE_URL", raising=False)
    home = Home(tmp_path)
    settings = home.config
    assert settings.server.base_url == DEFAULT_BASE_URL
    assert settings.server.token_authority_url is None and settings.server.website is None
    assert settings.database.url is None
    assert settings.token_authority.certificate == tmp_path.resolve() / TOKEN_AUTHORITY_CERT_FILE
    assert settings.token_authority.signer is None
    assert settings.audit.signer == AUDIT_SIGNER_URI
    assert settings.audit.certificate == tmp_path.resolve() / AUDIT_CERT_FILE
    assert dict(settings.x5u) == {} and dict(settings.compat) == {}
    assert home.base_url == DEFAULT_BASE_URL
    assert home.token_authority_url == DEFAULT_BASE_URL
    assert home.database_url == f"sqlite:///{tmp_path.resolve() / 'tnca.db'}"
    assert home.fetch_policy == FetchPolicy()
    assert home.token_compat == TokenCompat()


def test_every_key_is_read_with_its_type(tmp_path, monkeypatch):
    monkeypatch.delenv("TNCA_BASE_URL", raising=False)
    monkeypatch.delenv("TNCA_DATABASE_URL", raising=False)
    home = Home(write(tmp_path / "home", """
[server]
base_url = "https://acme.example/"
token_authority_url = "https://tokens.example"
website = "https://example.com/about"

[database]
url = "postgresql+psycopg://tnca@db/tnca"

[token_authority]
certificate = "/etc/tnca/ta.pem"
signer = "pkcs11:token=tnca;object=token-authority"

[audit]
signer = "file:keys/other-audit.key"
certificate = "certs/other-audit.pem"

[x5u]
allow_http_loopback = true
max_cache_age = "1h"

[compat]
fingerprint_spki_sha256 = true
"""))
    settings = home.config
    assert settings.server.base_url == "https://acme.example/"
    assert settings.server.website == "https://example.com/about"
    assert home.base_url == "https://acme.example"  # without the trailing slash
    assert home.token_authority_url == "https://tokens.example"
    assert home.database_url == "postgresql+psycopg://tnca@db/tnca"
    assert settings.token_authority.certificate == Path("/etc/tnca/ta.pem")
    assert settings.token_authority.signer == "pkcs11:token=tnca;object=token-authority"
    assert settings.audit.signer == "file:keys/other-audit.key"
    assert settings.audit.certificate == home.path / "certs/other-audit.pem"
    assert home.fetch_policy.allow_http_loopback is True
    assert home.fetch_policy.max_cache_age.total_seconds() == 3600
    assert home.token_compat.fingerprint_spki_sha256 is True


def test_environment_variables_override_the_file(tmp_path, monkeypatch):
    home = Home(write(tmp_path, '[server]\nbase_url = "https://file.example"\n[database]\nurl = "sqlite:///file.db"\n'))
    monkeypatch.setenv("TNCA_BASE_URL", "https://env.example/")
    monkeypatch.setenv("TNCA_DATABASE_URL", "sqlite:///env.db")
    assert home.base_url == "https://env.example"
    assert home.database_url == "sqlite:///env.db"


@pytest.mark.parametrize(
    "text, field, message",
    [
        ('[server]\nbase_ur = "https://x.example"\n', "[server] base_ur", "unknown tnca.toml key [server] base_ur"),
        ('[servers]\nbase_url = "https://x.example"\n', "[servers]", "unknown tnca.toml section [servers]"),
        ('[audit]\nsigner = "file:a.key"\nkey = "file:b.key"\n', "[audit] key", "unknown tnca.toml key [audit] key"),
        ("[server]\nbase_url = 8080\n", "[server] base_url", "expected a string, got 8080"),
        ('[server]\nbase_url = "acme.example"\n', "[server] base_url", "is not an http:// or https:// URL"),
        ('[server]\nwebsite = "ftp://example.com"\n', "[server] website", "is not an http:// or https:// URL"),
        ('[server]\ntoken_authority_url = true\n', "[server] token_authority_url", "expected a string"),
        ("[database]\nurl = 5\n", "[database] url", "expected a string, got 5"),
        ("[token_authority]\nsigner = [\"file:a.key\"]\n", "[token_authority] signer", "expected a string"),
        ("[token_authority]\ncertificate = 1\n", "[token_authority] certificate", "expected a string"),
        ("[audit]\ncertificate = false\n", "[audit] certificate", "expected a string"),
        ('server = "https://x.example"\n', "[server]", "tnca.toml [server] must be a table"),
        ("[x5u]\nallow_http = true\n", "[x5u] allow_http", "unknown key"),
        ('[x5u]\nallow_http_loopback = "yes"\n', "[x5u] allow_http_loopback", "true or false"),
        ("[compat]\nfingerprint_spki = true\n", "[compat] fingerprint_spki", "unknown compatibility switch"),
        ("[compat]\nfingerprint_spki_sha256 = 1\n", "[compat] fingerprint_spki_sha256", "true or false"),
    ],
    ids=["unknown-key", "unknown-section", "unknown-audit-key", "base-url-int", "base-url-not-url", "website-ftp",
         "ta-url-bool", "db-url-int", "signer-list", "ta-cert-int", "audit-cert-bool", "section-not-table",
         "x5u-unknown", "x5u-type", "compat-unknown", "compat-type"],
)
def test_bad_settings_are_refused_naming_section_and_key(tmp_path, text, field, message):
    """Every section is read when the home first needs its settings, [x5u] and [compat] included."""
    home = Home(write(tmp_path, text))
    with pytest.raises(PolicyError) as caught:
        home.config
    assert caught.value.field == field
    assert message in caught.value.detail


def test_a_file_that_is_not_toml_is_refused_naming_it(tmp_path):
    home = Home(write(tmp_path, "[server\n"))
    with pytest.raises(PolicyError) as caught:
        home.config
    assert caught.value.field == "tnca.toml"
    assert "is not valid TOML" in caught.value.detail


@pytest.mark.parametrize("signer", ["file:keys/token-authority.key",
                                    'pkcs11:token=tnca "dev";object=token-authority?pin-source=env:TNCA_HSM_PIN'])
def test_the_file_tnca_init_writes_loads(tmp_path, monkeypatch, signer):
    monkeypatch.delenv("TNCA_BASE_URL", raising=False)
    monkeypatch.delenv("TNCA_DATABASE_URL", raising=False)
    database_url = f"sqlite:///{tmp_path / 'tnca.db'}"
    home = Home(write(tmp_path, _config_text("https://acme.example", database_url, signer)))
    settings = home.config
    assert settings.server.base_url == "https://acme.example"
    assert settings.database.url == database_url
    assert settings.token_authority.signer == signer
    assert settings.token_authority.certificate == home.path / TOKEN_AUTHORITY_CERT_FILE


def test_every_setting_is_in_the_operator_guide_table():
    """docs/operator-guide.md lists each key of every section, and nothing else."""
    rows = set(re.findall(r"^\| `\[(\w+)\] (\w+)` \|", OPERATOR_GUIDE.read_text(), flags=re.M))
    settings = Settings.from_mapping({}, base_dir=Path("/home/tnca"))
    keys = {(section, f.name) for section in SECTIONS if section not in ("x5u", "compat")
            for f in dataclasses.fields(getattr(settings, section))}
    keys |= {("x5u", f.name) for f in dataclasses.fields(FetchPolicy)}
    keys |= {("compat", f.name) for f in dataclasses.fields(TokenCompat)}
    assert rows == keys


def test_a_command_on_a_home_with_a_bad_setting_exits_1_with_one_line_naming_it(tmp_path):
    home = write(tmp_path, '[server]\nbase_ur = "https://x.example"\n')
    result = CliRunner().invoke(cli, ["--home", str(home), "delegation", "list"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["Error: unknown tnca.toml key [server] base_ur"]


def test_trusted_proxies_are_networks_and_a_bad_one_is_named(tmp_path):
    home = write(tmp_path, '[server]\ntrusted_proxies = ["10.0.0.0/8", "2001:db8::1"]\n')
    assert [str(n) for n in Settings.load(home / "tnca.toml").server.trusted_proxies] == ["10.0.0.0/8", "2001:db8::1/128"]
    bad = write(tmp_path, '[server]\ntrusted_proxies = ["proxy.internal"]\n')
    with pytest.raises(PolicyError) as caught:
        Settings.load(bad / "tnca.toml")
    assert caught.value.field == "[server] trusted_proxies" and "'proxy.internal'" in caught.value.detail
