"""Authority tokens (RFC 9447/9448): minting under a delegation, verification of the ``atc``
JWT a tkauth-01 challenge answer carries, and fetching the token authority's ``x5u`` chain."""
