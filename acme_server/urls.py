"""The externally visible URLs of ACME resources.

RFC 8555 §6.4: the JWS ``url`` is compared with the URL the client was given, which behind a
proxy is not what the WSGI server sees; every URL is therefore built from the configured
external base URL (``home.base_url``), never from the request's Host header.
"""

from __future__ import annotations

import re

from ca.config import CERT_REPO_PATH

# Mount point of the ACME resources below the base URL.
ACME_PREFIX = "/acme"
# Plain-GET chains of issued certificates (RFC 9448 §7 "x5u"): CERT_REPO_PATH, from ca.config
# because the auditors' PASSporT verification recognises these URLs too.
__all__ = ["ACME_PREFIX", "CERT_REPO_PATH", "CRL_PATH", "Urls"]
# CRLs, one per issuer (the default [certificates] crl_distribution_point is {base_url}/crl/{issuer}.crl).
CRL_PATH = "/crl"

# Path segments that identify resources (models_base.random_id(): base32; serials: hex).
_RESOURCE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Urls:
    """URL builder for one server; ``base_url`` is e.g. ``https://ca.example`` (no trailing /)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.acme = self.base_url + ACME_PREFIX
        self._account_prefix = self.acme + "/acct/"

    # Resources named in the directory (RFC 8555 §7.1.1).
    def directory(self) -> str:
        return self.acme + "/directory"

    def new_nonce(self) -> str:
        return self.acme + "/new-nonce"

    def new_account(self) -> str:
        return self.acme + "/new-account"

    def new_order(self) -> str:
        return self.acme + "/new-order"

    def revoke_cert(self) -> str:
        return self.acme + "/revoke-cert"

    def key_change(self) -> str:
        return self.acme + "/key-change"

    def renewal_info(self) -> str:
        """RFC 9773 §3 "renewalInfo": a client appends "/" and a certificate identifier."""
        return self.acme + "/renewal-info"

    # Per-object resources.
    def account(self, account_id: str) -> str:
        return self._account_prefix + account_id

    def account_orders(self, account_id: str) -> str:
        return self._account_prefix + account_id + "/orders"

    def order(self, order_id: str) -> str:
        return self.acme + "/order/" + order_id

    def finalize(self, order_id: str) -> str:
        return self.acme + "/order/" + order_id + "/finalize"

    def authorization(self, authz_id: str) -> str:
        return self.acme + "/authz/" + authz_id

    def challenge(self, challenge_id: str) -> str:
        return self.acme + "/chall/" + challenge_id

    def certificate(self, serial: str) -> str:
        return self.acme + "/cert/" + serial

    def star_certificate(self, order_id: str) -> str:
        """RFC 8739 §3.1.1 "star-certificate": the current certificate of a STAR order."""
        return self.acme + "/star-cert/" + order_id

    def certificate_x5u(self, serial: str) -> str:
        return self.base_url + CERT_REPO_PATH + "/" + serial + ".pem"

    def token_authority_certificate(self) -> str:
        return self.base_url + "/token-authority.pem"

    def account_id_from_kid(self, kid: str) -> str | None:
        """The account id in a JWS ``kid``, or None when ``kid`` is not one of our account URLs.

        RFC 8555 §6.2: ``kid`` is the account URL from the newAccount ``Location``; it is compared
        as the exact string this server hands out.
        """
        if not kid.startswith(self._account_prefix):
            return None
        account_id = kid[len(self._account_prefix) :]
        return account_id if _RESOURCE_ID.fullmatch(account_id) else None

    def external(self, path: str, query: str = "") -> str:
        """The external URL of a request path (for the RFC 8555 §6.4 ``url`` check)."""
        return self.base_url + path + (f"?{query}" if query else "")
