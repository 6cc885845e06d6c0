"""An ACME client for STIR delegate certificates, on certbot's ``acme`` library.

certbot's ``acme`` knows ``dns``/``ip`` identifiers and the http/dns/tls-alpn challenges; unknown
challenge types become ``UnrecognizedChallenge``. The classes here plug the STIR types in the way
``acme.challenges`` registers its own, so any program using ``acme.client.ClientV2`` can order a
certificate for a TNAuthList with an authority token:

    client = STIRClient.connect("http://127.0.0.1:8080/acme/directory", account_key)
    client.register()
    chain_pem = client.issue(scope_value, authority_token, csr_pem)

It is used by the README walk-through (examples/issue_certificate.py), the benchmark (bench/) and
the protocol tests, so all three drive the server the same way a real client does.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import josepy as jose
from acme import challenges, messages
from acme import client as acme_client
from cryptography.hazmat.primitives.asymmetric import ec

# RFC 9448 §3: the ACME identifier type (registering it makes Identifier.from_json accept it).
IDENTIFIER_TNAUTHLIST = messages.IdentifierType("TNAuthList")

DEFAULT_FINALIZE_TIMEOUT = dt.timedelta(seconds=30)


@challenges.Challenge.register
class TKAuth01(challenges.Challenge):
    """RFC 9447 §3 / RFC 9448 §4: the tkauth-01 challenge."""

    typ = "tkauth-01"
    tkauth_type: str = jose.field("tkauth-type")
    token_authority: str | None = jose.field("token-authority", omitempty=True)
    token: str = jose.field("token")


class TKAuth01Response(challenges.ChallengeResponse):
    """RFC 9448 §4: the response object ``{"tkauth": <authority token>}``."""

    typ = "tkauth-01"
    tkauth: str = jose.field("tkauth")


class ATCResponse(challenges.ChallengeResponse):
    """What deployed SHAKEN clients send instead: ``{"atc": <authority token>}``."""

    typ = "tkauth-01"
    atc: str = jose.field("atc")


class ReplacingNewOrder(messages.NewOrder):
    """newOrder with RFC 9773 §5 ``replaces`` (certbot's ``acme`` has no field for it)."""

    replaces: str | None = jose.field("replaces", omitempty=True)


def tnauthlist_identifier(value: str) -> messages.Identifier:
    return messages.Identifier(typ=IDENTIFIER_TNAUTHLIST, value=value)


class STIRClient:
    """``ClientV2`` plus the steps a STIR delegate takes: order a TNAuthList, answer tkauth-01."""

    def __init__(self, acme: acme_client.ClientV2, key: ec.EllipticCurvePrivateKey) -> None:
        self.acme = acme
        self.private_key = key
        self.account: messages.RegistrationResource | None = None

    @classmethod
    def connect(cls, directory_url: str, key: ec.EllipticCurvePrivateKey, *,
                user_agent: str = "tnca-acme-client") -> "STIRClient":
        jwk = jose.JWKEC(key=key)
        net = acme_client.ClientNetwork(jwk, alg=jose.ES256, user_agent=user_agent)
        directory = acme_client.ClientV2.get_directory(directory_url, net)
        return cls(acme_client.ClientV2(directory, net), key)

    @property
    def directory(self) -> messages.Directory:
        return self.acme.directory

    def register(self, **fields: Any) -> messages.RegistrationResource:
        """newAccount (RFC 8555 §7.3); an existing account for this key is returned as is."""
        self.account = self.acme.new_account(messages.NewRegistration.from_data(**fields))
        return self.account

    def new_order(self, identifier_value: str, **fields: Any) -> messages.OrderResource:
        """newOrder for one TNAuthList identifier (ClientV2.new_order only knows dns/ip).

        ``replaces=`` names the certificate being renewed by its RFC 9773 §4.1 identifier.
        """
        order = ReplacingNewOrder(identifiers=(tnauthlist_identifier(identifier_value),), **fields)
        response = self.acme._post(self.directory["newOrder"], order)
        body = messages.Order.from_json(response.json())
        authorizations = [
            self.acme._authzr_from_response(self.acme._post_as_get(url), uri=url) for url in body.authorizations
        ]
        return messages.OrderResource(body=body, uri=response.headers["Location"], authorizations=authorizations)

    @staticmethod
    def tkauth_challenge(orderr: messages.OrderResource) -> messages.ChallengeBody:
        (authzr,) = orderr.authorizations
        (challb,) = [c for c in authzr.body.challenges if isinstance(c.chall, TKAuth01)]
        return challb

    def answer(self, orderr: messages.OrderResource, token: str, *, field: str = "tkauth") -> messages.ChallengeResource:
        """Present the authority token; ``field="atc"`` sends it the way SHAKEN clients do."""
        response = TKAuth01Response(tkauth=token) if field == "tkauth" else ATCResponse(atc=token)
        return self.acme.answer_challenge(self.tkauth_challenge(orderr), response)

    def finalize(self, orderr: messages.OrderResource, csr_pem: bytes,
                 timeout: dt.timedelta = DEFAULT_FINALIZE_TIMEOUT) -> messages.OrderResource:
        """finalize, poll until valid, download the chain (``orderr.fullchain_pem``).

        A server that issues synchronously answers finalize with a ``valid`` order (RFC 8555
        §7.4); the chain is then downloaded at once. ``ClientV2.finalize_order`` would first
        sleep a second before its first poll, whatever the order's status.
        """
        orderr = self.acme.begin_finalization(orderr.update(csr_pem=csr_pem))
        if orderr.body.status == messages.STATUS_VALID and orderr.body.certificate is not None:
            return orderr.update(fullchain_pem=self.acme._post_as_get(orderr.body.certificate).text)
        return self.acme.poll_finalization(orderr, dt.datetime.now() + timeout)

    def poll(self, orderr: messages.OrderResource) -> messages.Order:
        return messages.Order.from_json(self.acme._post_as_get(orderr.uri).json())

    def issue(self, identifier_value: str, token: str, csr_pem: bytes, **order_fields: Any) -> str:
        """The whole issuance: order → tkauth-01 → finalize → download. Returns the PEM chain."""
        orderr = self.new_order(identifier_value, **order_fields)
        self.answer(orderr, token)
        return self.finalize(orderr, csr_pem).fullchain_pem
