"""API tests: fixtures live in tests/audit/support.py (shared with tests/audit)."""

from tests.audit.support import authority, live_server  # noqa: F401
