"""Fixtures of the page tests: a home made by ``tnca init``, its app, and people of every role."""

from __future__ import annotations

import pytest

from ca.home import Home
from tests.admin.support import PageClient, create_people
from tests.protocol.support import app, home, port  # noqa: F401


@pytest.fixture
def people(home: Home) -> dict[str, str]:
    return create_people(home)


@pytest.fixture
def admin(app, people) -> PageClient:  # type: ignore[no-untyped-def]
    return PageClient(app, people["admin"])


@pytest.fixture
def operator(app, people) -> PageClient:  # type: ignore[no-untyped-def]
    return PageClient(app, people["operator"])


@pytest.fixture
def auditor(app, people) -> PageClient:  # type: ignore[no-untyped-def]
    return PageClient(app, people["auditor"])
