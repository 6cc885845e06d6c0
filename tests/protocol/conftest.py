"""ACME protocol test fixtures; they live in ``support.py`` so end-to-end tests can share them."""

from protocol.support import app, authority, client, home, port, raw, registered, server, subscriber  # noqa: F401
