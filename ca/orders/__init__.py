"""An order's life, shared by every front end (ACME and the STAR worker): the RFC 8555 §7.1.6 status
machine (``status``), the validity rules of newOrder and the challenge (``validity``), newOrder's
checks and the new rows (``placing``), the tkauth-01 token answer (``answer``) and finalize with
the one function that issues for an order (``finalize``).

The ACME handlers (``acme_server/acme/``) parse the wire and present the result; the STAR worker
(``ca/lifecycle/renewal_worker.py``) issues each renewal through the same
:func:`ca.orders.finalize.issue_for_order`. Nothing here sees Flask: what a server keeps for its
lifetime (policy, clock, issuing CA, CT client, token trust) arrives as an
:class:`ca.orders.authority.Authority`, the database as a ``Session`` the caller owns.
"""
