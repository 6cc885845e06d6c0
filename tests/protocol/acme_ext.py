"""Client-side classes for TNAuthList identifiers and tkauth-01, registered the josepy way.

certbot's ``acme`` library knows dns/ip identifiers and http/dns/tls-alpn challenges; unknown
challenge types become ``UnrecognizedChallenge``. These classes plug the STIR types in the way
``acme.challenges`` registers its own (STYLE.md §4), so the tests see our objects as a real
client does.
"""

from __future__ import annotations

import josepy as jose
from acme import challenges, messages

# RFC 9448 §3: the ACME identifier type (registering it makes Identifier.from_json accept it).
IDENTIFIER_TNAUTHLIST = messages.IdentifierType("TNAuthList")


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


def tnauthlist_identifier(value: str) -> messages.Identifier:
    return messages.Identifier(typ=IDENTIFIER_TNAUTHLIST, value=value)
