"""The ACME server: RFC 8555 with TNAuthList identifiers and tkauth-01 (RFC 9447/9448).

``routes.py`` is the map; ``jws.py`` authenticates; ``problems.py`` and ``errors.py`` own every
error response; the resource handlers are ``directory``, ``accounts``, ``orders``,
``authorizations`` and ``certificates``.
"""
