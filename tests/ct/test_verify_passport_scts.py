"""The ``scts`` step of ``ca.auditing.passport`` (RFC 6962 §3.3): the SCTs embedded in the
certificate that signed a PASSporT verify against the policy's logs, as many as it requires
(two running logs, the home's issuance pipeline)."""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from ca.auditing import passport
from ca.home import Home
from ca.issuing.issuance import IssuanceRequest, issue
from ca.numbers.tnauthlist import TNScope
from tests.ct.test_issuance_with_logs import home_with_two_logs  # noqa: F401  (fixture)
from tests.protocol.support import sign_compact


def test_embedded_scts_are_checked_against_the_policy_logs(home_with_two_logs):  # noqa: F811
    home, dev1, dev2 = home_with_two_logs
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([])).sign(key, hashes.SHA256()))  # the subject comes from the record
    with home.sessionmaker() as session:
        issued = issue(session, IssuanceRequest(csr=csr, scope=TNScope.parse(tns=["12025550123"]), actor="ct-test"),
                       issuer=home.issuing_ca(), policy=home.policy, clock=home.clock, transparency=home.transparency())
        session.commit()
    iat = int(home.clock.now().timestamp())
    token = sign_compact({"alg": "ES256", "typ": "passport", "ppt": "shaken",
                          "x5u": f"{home.base_url}/cert-repo/{issued.serial}.pem"},
                         {"attest": "A", "dest": {"tn": ["13035550100"]}, "iat": iat, "orig": {"tn": "12025550123"},
                          "origid": "test"}, key)

    def scts_check(of_home: Home) -> passport.Check:
        with of_home.sessionmaker() as session:
            verdict = passport.verify(token, at=None, finder=passport.finder_of_home(of_home, session),
                                      trust=passport.trust_of_home(of_home), session=session)
        return next(check for check in verdict.checks if check.name == "scts"), verdict

    check, verdict = scts_check(home)
    assert verdict.valid, verdict.reasons
    assert check.detail == "2 SCT(s) verified, from dev1, dev2"

    # The policy now holds another key for dev2 (dev1's): dev2's SCT comes from a log the policy
    # does not know (the log ID is the key's hash), so one of the two required SCTs is missing.
    policy = home.policy_path.read_text()
    home.policy_path.write_text(policy.replace(str(dev2.public_key_file), str(dev1.public_key_file)))
    narrowed = Home(home.path)
    try:
        check, verdict = scts_check(narrowed)
    finally:
        narrowed.close()
    assert not verdict.valid and not check.ok
    assert check.detail == ("1 verified SCT(s) from distinct known logs, 2 required; SCTs from unknown logs: "
                            + dev2.client().log_id_b64)
    assert dt.datetime.fromtimestamp(iat, dt.timezone.utc) == verdict.at
