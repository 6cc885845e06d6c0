"""Authority tokens (RFC 9447/9448): minting under a delegation, verification of the ``atc``
JWT a tkauth-01 challenge answer carries, and fetching the token authority's ``x5u`` chain.

- :mod:`ca.tokens.verification`: RFC 9448 §6 claim by claim, then single use (``jti``).
- :mod:`ca.tokens.minting`: this authority's own token authority mints under a delegation.
- :mod:`ca.tokens.trust_config`: which token authorities are trusted; compatibility switches.
- :mod:`ca.tokens.fingerprints`: the account key's RFC 7638 thumbprint and ``atc.fingerprint``.
- :mod:`ca.tokens.jws`: the compact JWS both sides read and write (RFC 7515, RFC 7518 §3).
- :mod:`ca.tokens.x5u`: fetching the token authority certificate chain an ``x5u`` names.
"""
