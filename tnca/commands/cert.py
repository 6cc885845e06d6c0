"""``tnca cert issue`` and ``tnca cert show``: offline issuance and inspection.

``issue`` runs the same :func:`ca.issuing.issuance.issue` the ACME server runs, under the home's issuing
CA, and prints the PEM chain (end-entity first, then the issuing CA; not the root, which relying
parties hold as their trust anchor — RFC 9060 §7, RFC 8555 §9.1).

Exit codes: 0 issued; 2 bad input (a malformed CSR or file, a bad CSR signature, an unparseable
TN, a scope outside the issuing CA, a lifetime below the policy minimum), printed as one line that
names the option; 1 anything else (no home, a signer failure). Nothing is written to the database
unless the certificate is issued.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca.numbers.claims import ClaimConstraints
from ca.home import Home
from ca.errors import (
    ClaimConstraintsError,
    CSRError,
    DelegationError,
    PolicyError,
    ScopeError,
    TNCAError,
    TransparencyError,
)
from ca.issuing.issuance import DELEGATE_CA, END_ENTITY, IssuanceRequest, issue
from ca.policy import format_duration
from ca.issuing.profiles import CLAIM_CONSTRAINT_OIDS
from ca.numbers.tnauthlist import TNScope
from ca.x509util import MALFORMED_X509_ERRORS, fingerprint_sha256, key_type_name, with_names_decoded
from tnca.context import BadInput, cli_actor, pass_home, require_home
from tnca.options import duration_option, parse_scope, scope_option

# Which option an error's field refers to, by the field's first component.
_FIELD_OPTIONS = {
    "csr": "--csr",
    "lifetime": "--lifetime",
    "notAfter": "--lifetime",
    "notBefore": "--lifetime",
    "constraints": "--constraints",
    "delegation": "--delegation",
    "kind": "--ca",
}


def _option_for(error: TNCAError) -> str:
    field = error.field or ""
    head = field.split(".", 1)[0].split("[", 1)[0]
    if isinstance(error, ClaimConstraintsError):
        return "--constraints"
    if head in _FIELD_OPTIONS:
        return _FIELD_OPTIONS[head]
    if isinstance(error, (ScopeError, DelegationError)):
        return scope_option(field)
    return field or "request"


def _read_file(path: str, option: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise BadInput(option, f"cannot read {path}: {exc.strerror}") from None


def load_csr(path: str) -> x509.CertificateSigningRequest:
    data = _read_file(path, "--csr")
    try:
        if b"-----BEGIN" in data:
            return with_names_decoded(x509.load_pem_x509_csr(data))
        return with_names_decoded(x509.load_der_x509_csr(data))
    except MALFORMED_X509_ERRORS:
        raise BadInput("--csr", f"{path} is not a PEM or DER PKCS#10 certificate signing request (malformed DER)") from None


def load_certificates(path: str) -> list[x509.Certificate]:
    data = _read_file(path, "FILE")
    try:
        if b"-----BEGIN" in data:
            return [with_names_decoded(c) for c in x509.load_pem_x509_certificates(data)]
        return [with_names_decoded(x509.load_der_x509_certificate(data))]
    except MALFORMED_X509_ERRORS:
        raise BadInput("FILE", f"{path} is not a PEM or DER X.509 certificate (malformed DER)") from None


def load_constraints(path: str) -> ClaimConstraints:
    try:
        obj = json.loads(_read_file(path, "--constraints"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput("--constraints", f"{path} is not JSON: {exc}") from None
    try:
        return ClaimConstraints.from_json(obj)
    except ClaimConstraintsError as error:
        raise BadInput("--constraints", f"{error.field}: {error.detail}" if error.field else error.detail) from None


@click.group("cert")
def command() -> None:
    """Issue and inspect delegate certificates offline."""


@command.command("issue")
@click.option("--csr", "csr_path", required=True, metavar="FILE", help="PKCS#10 CSR (PEM or DER).")
@click.option("--tn", "tns", multiple=True, metavar="NUMBER", help="A telephone number (repeatable).")
@click.option("--range", "ranges", multiple=True, metavar="START:COUNT", help="A number range (repeatable).")
@click.option("--spc", "spcs", multiple=True, metavar="CODE", help="A service provider code (repeatable).")
@click.option("--lifetime", default=None, metavar="DURATION",
              help="Requested validity, e.g. 1h or 30m (capped by policy; default the policy maximum).")
@click.option("--constraints", "constraints_path", default=None, metavar="FILE",
              help='Claim constraints JSON: {"mustInclude": [...], "permittedValues": {...}, "mustExclude": [...]}.')
@click.option("--delegation", "delegation_id", default=None, metavar="ID",
              help="Issue under this delegation (its scope, lifetime and constraints apply).")
@click.option("--ca", "delegate_ca", is_flag=True, help="Issue a delegate CA certificate (RFC 9060) instead of an end-entity one.")
@pass_home
def issue_command(home: Home, csr_path, tns, ranges, spcs, lifetime, constraints_path, delegation_id, delegate_ca) -> None:
    """Issue a certificate for a CSR and print the PEM chain (certificate, issuing CA)."""
    if not (tns or ranges or spcs):
        raise BadInput("--tn/--range/--spc", "give the TN scope to certify (at least one --tn, --range or --spc)")
    scope = parse_scope(tns, ranges, spcs)
    csr = load_csr(csr_path)
    requested_lifetime = duration_option(lifetime, "--lifetime")
    constraints = load_constraints(constraints_path) if constraints_path else None
    require_home(home)
    request = IssuanceRequest(
        csr=csr,
        scope=scope,
        kind=DELEGATE_CA if delegate_ca else END_ENTITY,
        delegation_id=delegation_id,
        constraints=constraints,
        lifetime=requested_lifetime,
        actor=cli_actor(),
    )
    try:
        issuer = home.issuing_ca()
        with home.sessionmaker() as session:
            try:
                issued = issue(session, request, issuer=issuer, policy=home.policy, clock=home.clock,
                               transparency=home.transparency(), precertificate_recorded=session.commit)
            except TransparencyError:
                session.commit()  # the failed precertificate record stays, for auditors
                raise
            session.commit()
    except (ScopeError, CSRError, PolicyError, DelegationError, ClaimConstraintsError) as error:
        raise BadInput(_option_for(error), error.detail) from None
    except TNCAError as error:
        raise click.ClickException(error.detail) from None
    click.echo(issued.pem_chain, nl=False)


def describe_certificate(certificate: x509.Certificate) -> dict[str, Any]:
    """What a person (or a script, with --json) wants to know about a STIR certificate."""
    try:
        basic = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca: bool | None = basic.ca
    except x509.ExtensionNotFound:
        is_ca = None
    try:
        scope = TNScope.from_certificate(certificate)
    except ScopeError as error:
        raise BadInput("FILE", f"TNAuthList: {error.detail}") from None
    try:
        constraints = ClaimConstraints.from_certificate(certificate)
    except ClaimConstraintsError as error:
        raise BadInput("FILE", f"claim constraints: {error.detail}") from None
    present_claim_oids = [ext.oid.dotted_string for ext in certificate.extensions if ext.oid in CLAIM_CONSTRAINT_OIDS]
    not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    return {
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "serial": format(certificate.serial_number, "x"),
        "not_before": not_before.isoformat(),
        "not_after": not_after.isoformat(),
        "lifetime": format_duration(not_after - not_before),
        "ca": is_ca,
        "key_type": key_type_name(certificate.public_key()),
        "tn_auth_list": None if scope is None else {
            "describe": scope.describe(),
            "identifier_value": scope.to_identifier_value(strict=False),
            "entries": [_entry_json(entry) for entry in scope.entries],
        },
        "claim_constraints": None if constraints is None else {
            "kind": constraints.kind,
            "oid": present_claim_oids[0] if present_claim_oids else constraints.oid.dotted_string,
            **constraints.to_json(),
        },
        "sha256": fingerprint_sha256(certificate.public_bytes(serialization.Encoding.DER)),
    }


def _entry_json(entry: Any) -> dict[str, Any]:
    from ca.numbers.tn_entries import SPC, TN, TNRange

    if isinstance(entry, SPC):
        return {"spc": entry.code}
    if isinstance(entry, TNRange):
        return {"range": {"start": entry.start, "count": entry.count}}
    assert isinstance(entry, TN)
    return {"tn": entry.number}


@command.command("show")
@click.argument("path", metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (a list, one object per certificate).")
def show_command(path: str, as_json: bool) -> None:
    """Decode a certificate (or PEM chain): TNAuthList, claim constraints, names, validity."""
    described = [describe_certificate(c) for c in load_certificates(path)]
    if as_json:
        click.echo(json.dumps(described, indent=2))
        return
    for index, info in enumerate(described):
        if len(described) > 1:
            click.echo(f"Certificate {index + 1} of {len(described)}")
        kind = {True: "CA", False: "end-entity", None: "no basicConstraints"}[info["ca"]]
        click.echo(f"  Subject:     {info['subject']}")
        click.echo(f"  Issuer:      {info['issuer']}")
        click.echo(f"  Serial:      {info['serial']}")
        click.echo(f"  Validity:    {info['not_before']} to {info['not_after']} ({info['lifetime']})")
        click.echo(f"  Kind:        {kind}, key {info['key_type']}")
        scope = info["tn_auth_list"]
        click.echo(f"  TNAuthList:  {scope['describe'] if scope else 'none'}")
        constraints = info["claim_constraints"]
        if constraints:
            label = "EnhancedJWTClaimConstraints" if constraints["kind"] == "enhanced" else "JWTClaimConstraints"
            body = {k: v for k, v in constraints.items() if k not in ("kind", "oid")}
            click.echo(f"  {label}: {json.dumps(body, sort_keys=True)}")
        else:
            click.echo("  Claim constraints: none")
        click.echo(f"  SHA-256:     {info['sha256']}")
