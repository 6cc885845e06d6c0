"""Rich Call Data constraints end to end (RFC 9795, RFC 8226 §8, RFC 9118 §4).

A delegation pins an ``rcd`` object and its ``rcdi`` digest; a certificate issued over ACME
(certbot's client, the live server) carries them as JWTClaimConstraints; PASSporTs signed with
that certificate's key by secsipidx verify with secsipidx (x5u = the live server's
/cert-repo/<serial>.pem, chain built to the dev root), and ``evaluate()`` judges their claims as
a verification service must: the matching rcd passes, one differing in any member fails, an
rcdi whose digest does not match the fetched icon is found.
"""

from __future__ import annotations

import time

from cryptography import x509

from ca.numbers import rcd as rcd_module
from ca.numbers.claims import ClaimConstraints, evaluate
from identity.support import identity_header, sign_passport
from tests.e2e.devhome import secsipidx_service
from protocol.support import TN_SCOPE, make_csr

ICON = "https://example.com/logo.png"
LOGO = b"\x89PNG\r\n\x1a\n Example Retail logo"
RCD = {"nam": "Example Retail", "icn": ICON}
RCDI = {"/icn": rcd_module.digest(LOGO)}


def test_rfc9795_pinned_rcd_certificate_passports_verify_with_secsipidx_and_evaluate(
    subscriber, authority, server, home, tmp_path
):
    subscriber.register(terms_of_service_agreed=True)
    delegation_id = authority.delegate(constraints=ClaimConstraints.from_json({"rcd": RCD, "rcdi": RCDI}))
    token = authority.token(delegation_id, subscriber.public_jwk, TN_SCOPE)
    csr_pem, key = make_csr()
    chain = subscriber.issue(TN_SCOPE.to_identifier_value(), token, csr_pem)
    leaf = x509.load_pem_x509_certificates(chain.encode())[0]
    pinned = ClaimConstraints.from_certificate(leaf)
    assert pinned is not None and pinned.must_include == ("rcd", "rcdi")
    x5u = f"{server.base_url}/cert-repo/{leaf.serial_number:x}.pem"

    header = {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": x5u}
    base = {"attest": "A", "dest": {"tn": ["12025551001"]}, "iat": int(time.time()),
            "orig": {"tn": "12025550100"}, "origid": "123e4567-e89b-12d3-a456-426655440000"}
    # The delegate writes the object in its own key order: still the pinned value.
    matching = {**base, "rcd": {"icn": ICON, "nam": "Example Retail"}, "rcdi": RCDI}
    renamed = {**base, "rcd": {"icn": ICON, "nam": "Example Bank"}, "rcdi": RCDI}
    swapped_icon = {**base, "rcd": RCD, "rcdi": {"/icn": rcd_module.digest(b"another image")}}

    root = home.path / "certs" / "root.pem"
    issuing = home.path / "certs" / "issuing.pem"
    with secsipidx_service(root, issuing) as check:
        for payload in (matching, renamed, swapped_icon):
            jws = sign_passport(key, tmp_path, header, payload)
            response = check(identity_header(jws, x5u))
            # The signature and the chain are fine for all three: only the constraints differ.
            assert response.status_code == 200 and response.text.strip() == "OK", response.text

    assert evaluate(matching, pinned, resources={ICON: LOGO}) == []
    renamed_violations = evaluate(renamed, pinned, resources={ICON: LOGO})
    assert renamed_violations and "differing member(s): nam" in renamed_violations[0]
    swapped = evaluate(swapped_icon, pinned, resources={ICON: LOGO})
    assert f"rcdi '/icn': the content at {ICON} does not match its sha256 digest" in swapped
    assert any(v.startswith("claim 'rcdi'") for v in swapped)
    # A PASSporT without the pinned claims fails mustInclude.
    assert evaluate(base, pinned) == ["claim 'rcd' is required by mustInclude but absent",
                                      "claim 'rcdi' is required by mustInclude but absent"]
