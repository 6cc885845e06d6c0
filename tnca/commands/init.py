"""``tnca init``: create an authority home with a development PKI.

What it makes (see ca/config.py for the layout): ``tnca.toml`` and ``policy.toml``; the database
schema (Alembic migrations); a self-signed root (no TNAuthList); the issuing CA, signed by the
root, whose TNAuthList is the operator's scope (RFC 9060 §4: it bounds every delegate
certificate); the token authority's key and certificate (signed by the root, digitalSignature);
the ``issuers`` rows and an ``authority.init`` audit event.

A home is created once: if ``tnca.toml`` exists, or the database already has issuers, nothing is
touched and the command fails. If anything fails midway, the files it created are removed again
and the database transaction is rolled back.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
from sqlalchemy import func, select

from ca.records import audit, migrate, models_authority
from ca.config import (
    CONFIG_FILE,
    ISSUING_CERT_FILE,
    ISSUING_ISSUER,
    POLICY_FILE,
    ROOT_CERT_FILE,
    ROOT_ISSUER,
    TOKEN_AUTHORITY_CERT_FILE,
)
from ca.home import Home
from ca.errors import TNCAError
from ca.issuing.issuance import certify_authority_key
from ca.policy import DEFAULT_POLICY_PATH, Policy
from ca.issuing.profiles import ISSUING_CA, ROOT, TOKEN_AUTHORITY
from ca.issuing.signers.file import generate_file_key
from ca.numbers.tnauthlist import TNScope
from ca.x509util import to_pem
from tnca.context import BadInput, cli_actor, pass_home
from tnca.options import parse_scope

# The development operator's scope when none is given: the 555 test block of +1 202 and SPC 1234
# (the SPC of RFC 9118 §5's example certificate).
DEFAULT_RANGES = ("12025550000:10000",)
DEFAULT_SPCS = ("1234",)

# The profiles `tnca init --profile` makes a home for: RFC-strict STIR delegate certificates (the
# default), or one that serves deployed SHAKEN tooling unchanged (docs/shaken.md).
PROFILES = ("stir", "shaken")
# What --profile shaken changes in ca/policies/default.toml: the SHAKEN end-entity profile, the SHAKEN
# certificate policy of the STI-PA (ATIS-1000080 §6.4.1; edit policy.toml for another OID), and
# CRL distribution points under the STI-PA API's path, which hands the same URL to clients.
SHAKEN_POLICY = {
    ("certificates", "profile"): '"shaken"',
    ("certificates", "policy_oids"): '["2.16.840.1.114569.1.1.3"]',
    ("certificates", "crl_distribution_point"): '"{base_url}/stipa/download/v1/crl/{issuer}.crl"',
}
# And in tnca.toml: every compatibility switch those clients need, and the STI-PA API served.
SHAKEN_SETTINGS = (
    "\n[compat]\n"
    "# Deployed SHAKEN clients (docs/shaken.md); each switch is a divergence documented in docs/rfc-support.md.\n"
    "fingerprint_spki_sha256 = true\n"
    "csr_key_may_equal_account_key = true\n"
    "empty_payload_signed_without_dot = true\n"
    "new_account_empty_payload = true\n\n"
    "[stipa]\n"
    "# The STI-PA-compatible token API under /stipa; logins: tnca stipa credentials --delegation ID.\n"
    "enabled = true\n"
)

KEY_FILES = {ROOT_ISSUER: "keys/root.key", ISSUING_ISSUER: "keys/issuing.key", "token-authority": "keys/token-authority.key"}


def _toml_string(value: str) -> str:
    # A JSON string is a valid TOML basic string for the characters used here.
    return json.dumps(value)


def _signer_uris(pkcs11_token: str | None) -> dict[str, str]:
    """Where each authority key lives: a PEM file in the home, or a labelled key on an HSM token."""
    if pkcs11_token is None:
        return {name: f"file:{path}" for name, path in KEY_FILES.items()}
    return {name: pkcs11_key_uri(pkcs11_token, name) for name in KEY_FILES}


def shaken_policy_text(text: str) -> str:
    """ca/policies/default.toml with the keys of :data:`SHAKEN_POLICY` set (each must be there once)."""
    lines, section, done = [], None, set()
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1]
        key = stripped.split("=", 1)[0].strip() if "=" in stripped and not stripped.startswith("#") else None
        if (section, key) in SHAKEN_POLICY:
            line = f"{key} = {SHAKEN_POLICY[(section, key)]}"
            done.add((section, key))
        lines.append(line)
    missing = set(SHAKEN_POLICY) - done
    if missing:
        raise click.ClickException(f"the default policy lacks {sorted(missing)}; cannot make a SHAKEN home")
    return "\n".join(lines) + "\n"


def _config_text(base_url: str, database_url: str, token_authority_signer: str) -> str:
    return (
        "# tnca settings; every key with its type and default: docs/operator-guide.md (ca/config.py).\n"
        "# TNCA_BASE_URL and TNCA_DATABASE_URL override it.\n\n"
        "[server]\n"
        "# External URL of the ACME server: directory URLs, x5u and CRL distribution points use it.\n"
        f"base_url = {_toml_string(base_url)}\n\n"
        "[database]\n"
        f"url = {_toml_string(database_url)}\n\n"
        "[token_authority]\n"
        "# The certificate and key that sign this authority's authority tokens (RFC 9447).\n"
        f"certificate = {_toml_string(TOKEN_AUTHORITY_CERT_FILE)}\n"
        f"signer = {_toml_string(token_authority_signer)}\n"
    )


@click.command("init")
@click.option("--tn", "tns", multiple=True, metavar="NUMBER", help="A telephone number of the operator's scope (repeatable).")
@click.option("--range", "ranges", multiple=True, metavar="START:COUNT",
              help="A number range of the operator's scope, e.g. 12025550000:10000 (repeatable).")
@click.option("--spc", "spcs", multiple=True, metavar="CODE", help="A service provider code of the operator's scope (repeatable).")
@click.option("--base-url", default=None, metavar="URL",
              help="External URL of the ACME server [default: http://127.0.0.1:8080].")
@click.option("--database-url", default=None, metavar="URL",
              help="SQLAlchemy database URL [default: TNCA_DATABASE_URL, else HOME/tnca.db].")
@click.option("--profile", type=click.Choice(PROFILES), default="stir", show_default=True,
              help="stir: RFC-strict delegate certificates. shaken: serve deployed SHAKEN clients unchanged "
                   "(SHAKEN certificate profile, STI-PA token API, compatibility switches; docs/shaken.md).")
@click.option("--pkcs11-token", default=None, metavar="URI",
              help="Create the CA and token-authority keys in an HSM: an RFC 7512 URI without 'object', e.g. "
                   "'pkcs11:token=tnca?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:TNCA_HSM_PIN'. "
                   "Default: PEM key files in HOME/keys.")
@pass_home
def command(home: Home, tns, ranges, spcs, base_url, database_url, profile, pkcs11_token) -> None:
    """Create the home: config, database, dev root, issuing CA and token authority.

    The issuing CA's TNAuthList is the operator's scope (--tn/--range/--spc); without any, the
    development scope range 12025550000:10000 and SPC 1234 is used.
    """
    if not (tns or ranges or spcs):
        ranges, spcs = DEFAULT_RANGES, DEFAULT_SPCS
    scope = parse_scope(tns, ranges, spcs)
    if pkcs11_token is not None:
        _check_pkcs11_token_uri(pkcs11_token)
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        raise BadInput("--base-url", f"{base_url!r} is not an http:// or https:// URL")
    if home.exists():
        raise click.ClickException(f"{home.config_path} already exists; refusing to overwrite an existing home")
    if home.path.exists() and not home.path.is_dir():
        raise click.ClickException(f"{home.path} exists and is not a directory")
    if home.path.is_dir() and any(home.path.iterdir()):
        raise click.ClickException(f"{home.path} is not empty; tnca init needs a new or empty directory")

    created_dir = not home.path.exists()
    try:
        _initialise(home, scope, base_url or "http://127.0.0.1:8080", database_url, pkcs11_token, profile)
    except BaseException:
        _remove_created(home.path, created_dir)
        raise
    # A fresh Home: this one read the settings before tnca.toml was written (its defaults).
    written = Home(home.path)
    click.echo(f"Initialised {home.path}")
    click.echo(f"  issuing CA scope: {scope.describe()}")
    click.echo(f"  trust anchor:     {home.path / ROOT_CERT_FILE}")
    click.echo(f"  issuing CA:       {home.path / ISSUING_CERT_FILE}")
    click.echo(f"  token authority:  {home.path / TOKEN_AUTHORITY_CERT_FILE} (x5u {written.token_authority_x5u})")
    if profile == "shaken":
        click.echo(f"  profile:          shaken; STI-PA token API at {written.base_url}/stipa "
                   f"(logins: tnca --home {home.path} stipa credentials --delegation ID)")


def _remove_created(path: Path, created_dir: bool) -> None:
    if created_dir:
        shutil.rmtree(path, ignore_errors=True)
    elif path.is_dir():
        for child in path.iterdir():
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)


def _check_pkcs11_token_uri(uri: str) -> None:
    from ca.errors import SignerError
    from ca.issuing.signers.pkcs11 import PKCS11URI

    if ";object=" in uri or "pkcs11:object=" in uri:
        raise BadInput("--pkcs11-token", "name the token only; tnca init chooses the key labels")
    try:
        PKCS11URI.parse(pkcs11_key_uri(uri, "probe"))
    except SignerError as error:
        raise BadInput("--pkcs11-token", error.detail) from None


def pkcs11_key_uri(token_uri: str, label: str) -> str:
    """The RFC 7512 URI of key ``label`` on the token ``token_uri`` names."""
    path, sep, query = token_uri.partition("?")
    return f"{path};object={label}{sep}{query}"


def _initialise(home: Home, scope: TNScope, base_url: str, database_url: str | None,
                pkcs11_token: str | None = None, profile: str = "stir") -> None:
    home.path.mkdir(parents=True, exist_ok=True)
    if database_url is None:
        database_url = home.database_url  # env, else the default SQLite file in the home
    signer_uris = _signer_uris(pkcs11_token)
    config = _config_text(base_url, database_url, signer_uris["token-authority"])
    (home.path / CONFIG_FILE).write_text(config + (SHAKEN_SETTINGS if profile == "shaken" else ""))
    if profile == "shaken":
        (home.path / POLICY_FILE).write_text(shaken_policy_text(DEFAULT_POLICY_PATH.read_text()))
    else:
        shutil.copyfile(DEFAULT_POLICY_PATH, home.path / POLICY_FILE)
    try:
        policy = Policy.load(home.path / POLICY_FILE)
        home = Home(home.path)  # re-read the files just written
        migrate.upgrade(home.engine)
        with home.sessionmaker() as session:
            existing = session.scalar(select(func.count()).select_from(models_authority.Issuer))
            if existing:
                raise click.ClickException(
                    f"the database {home.engine.url.render_as_string(hide_password=True)} already has "
                    f"{existing} issuer(s); use a fresh database for a new home"
                )
            _create_pki(home, session, scope, policy, base_url, signer_uris)
            session.commit()
    except TNCAError as error:
        raise click.ClickException(error.detail) from None
    finally:
        if "engine" in home.__dict__:
            home.engine.dispose()


def _generate_keys(home: Home, policy: Policy, signer_uris: dict[str, str]) -> dict:
    key_type = policy.keys.authority
    signers = {}
    for name, uri in signer_uris.items():
        if uri.startswith("file:"):
            signers[name] = generate_file_key(home.path / uri[len("file:"):], key_type)
            continue
        from ca.issuing.signers.pkcs11 import PKCS11Signer, generate_p256_key

        if key_type != "ec-p256":
            raise BadInput("--pkcs11-token", f"HSM keys are EC P-256; the policy asks for {key_type!r}")
        generate_p256_key(uri)
        signers[name] = PKCS11Signer(uri)
    return signers


def _create_pki(home: Home, session, scope: TNScope, policy: Policy, base_url: str,
                signer_uris: dict[str, str]) -> None:
    clock = home.clock
    signers = _generate_keys(home, policy, signer_uris)
    crl_of = lambda issuer: policy.certificates.crl_url(base_url=base_url, issuer=issuer)  # noqa: E731

    root = certify_authority_key(
        ROOT, subject=policy.names.root, public_key=signers[ROOT_ISSUER].public_key, signer=signers[ROOT_ISSUER],
        issuer_certificate=None, issuer_scope=None, scope=None, crl_url=None, policy=policy, clock=clock,
    )
    issuing = certify_authority_key(
        ISSUING_CA, subject=policy.names.issuing_ca, public_key=signers[ISSUING_ISSUER].public_key,
        signer=signers[ROOT_ISSUER], issuer_certificate=root, issuer_scope=None, scope=scope,
        crl_url=crl_of(ROOT_ISSUER), policy=policy, clock=clock,
    )
    token_authority = certify_authority_key(
        TOKEN_AUTHORITY, subject=policy.names.token_authority, public_key=signers["token-authority"].public_key,
        signer=signers[ROOT_ISSUER], issuer_certificate=root, issuer_scope=None, scope=None,
        crl_url=crl_of(ROOT_ISSUER), policy=policy, clock=clock,
    )
    for relative, certificate in ((ROOT_CERT_FILE, root), (ISSUING_CERT_FILE, issuing),
                                  (TOKEN_AUTHORITY_CERT_FILE, token_authority)):
        target = home.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(to_pem(certificate))

    from cryptography.hazmat.primitives.serialization import Encoding

    root_row = models_authority.Issuer(name=ROOT_ISSUER, certificate_der=root.public_bytes(Encoding.DER),
                            signer_uri=signer_uris[ROOT_ISSUER], scope_der=None, parent_id=None)
    session.add(root_row)
    session.flush()
    issuing_row = models_authority.Issuer(name=ISSUING_ISSUER, certificate_der=issuing.public_bytes(Encoding.DER),
                               signer_uri=signer_uris[ISSUING_ISSUER], scope_der=scope.to_der(),
                               parent_id=root_row.id)
    session.add(issuing_row)
    session.flush()
    audit.append(
        session,
        actor=cli_actor(),
        action="authority.init",
        subject_type="issuer",
        subject_id=ISSUING_ISSUER,
        details={
            "base_url": base_url,
            "profile": policy.certificates.profile,
            "scope": scope.describe(),
            "scope_der": scope.to_identifier_value(),
            "root": {"subject": root.subject.rfc4514_string(), "serial": format(root.serial_number, "x")},
            "issuing": {"subject": issuing.subject.rfc4514_string(), "serial": format(issuing.serial_number, "x")},
            "token_authority": {"subject": token_authority.subject.rfc4514_string(),
                                "serial": format(token_authority.serial_number, "x")},
        },
        clock=clock,
    )
