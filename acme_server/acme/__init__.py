"""The ACME server: RFC 8555 with TNAuthList identifiers and tkauth-01 (RFC 9447/9448).

``routes.py`` is the map; ``jws.py`` authenticates; ``problems.py`` and ``errors.py`` own every
error response; the resource handlers are ``directory``, ``accounts``, ``orders``,
``authorizations``, ``certificates``, ``star`` and ``renewal_info``. What handlers share lives in
``owned.py`` (loading what the account owns, the audit actor) and ``chains.py`` (PEM chains),
never in a sibling handler; an order's life is ``ca/orders/``.
"""
