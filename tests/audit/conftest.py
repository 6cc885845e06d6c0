"""Audit tests: fixtures live in tests/audit/support.py (shared with tests/api)."""

from tests.audit.support import authority, live_server  # noqa: F401
