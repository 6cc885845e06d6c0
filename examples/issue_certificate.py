#!/usr/bin/env python3
"""Obtain a STIR delegate certificate from a tnca ACME server with an authority token.

    # 1. your ACME account key, and the fingerprint your carrier binds the token to
    python examples/issue_certificate.py fingerprint --account-key account.key
    # 2. (carrier) tnca token mint --delegation ID --fingerprint "SHA256 …" > token.jwt
    # 3. order exactly the scope the token authorizes, answer tkauth-01, download the chain
    python examples/issue_certificate.py issue --directory http://127.0.0.1:8080/acme/directory \
        --account-key account.key --token-file token.jwt --key ee.key --chain chain.pem

The certificate key (``--key``) is created if the file does not exist. Uses certbot's ``acme``
library with the TNAuthList / tkauth-01 classes from ``tnca.acme_client``.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ca.tokens.fingerprints import account_fingerprint
from tnca.acme_client import STIRClient


def load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            sys.exit(f"{path}: expected an EC P-256 key")
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return key


def token_scope(token: str) -> str:
    """The TNAuthList the token authorizes (its ``atc.tkvalue``); the server checks the signature."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims["atc"]["tkvalue"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fp = sub.add_parser("fingerprint", help="print the account key fingerprint a token must carry")
    fp.add_argument("--account-key", type=Path, required=True)
    issue = sub.add_parser("issue", help="order, answer tkauth-01, finalize, download")
    issue.add_argument("--directory", required=True)
    issue.add_argument("--account-key", type=Path, required=True)
    issue.add_argument("--token-file", type=Path, required=True)
    issue.add_argument("--key", type=Path, required=True, help="the certificate's private key")
    issue.add_argument("--chain", type=Path, required=True, help="where to write the PEM chain")
    args = parser.parse_args()

    account_key = load_or_create_key(args.account_key)
    if args.command == "fingerprint":
        import josepy as jose

        print(account_fingerprint(jose.JWKEC(key=account_key.public_key())))
        return

    token = args.token_file.read_text().strip()
    certificate_key = load_or_create_key(args.key)
    # An empty subject: the authority writes the delegation's name (docs/identity.md).
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([]))
           .sign(certificate_key, hashes.SHA256()))
    client = STIRClient.connect(args.directory, account_key)
    client.register(terms_of_service_agreed=True)
    chain = client.issue(token_scope(token), token, csr.public_bytes(serialization.Encoding.PEM))
    args.chain.write_text(chain)
    leaf = x509.load_pem_x509_certificate(chain.encode())
    print(f"wrote {args.chain}: serial {leaf.serial_number:x}, valid until {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")


if __name__ == "__main__":
    main()
