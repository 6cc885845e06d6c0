"""What auditors ask of the authority long after the fact: was a PASSporT valid when it was
signed (``passport.py``), which certificates in the transparency logs cover a number
(``number_monitor.py``).

This folder sits beside the composition root: it reads the records, fetches ``x5u`` chains with
``ca.tokens.x5u``, checks SCTs with ``ca.issuing.transparency`` and judges claims with
``ca.numbers.claims``; nothing below imports it.
"""
