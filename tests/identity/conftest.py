"""Accountable-identity tests (docs/identity.md) share the ACME fixtures of tests/protocol."""

from protocol.support import app, authority, client, home, port, raw, registered, server, subscriber  # noqa: F401
