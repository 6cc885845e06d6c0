"""The authority's home directory: configuration, database, keys and certificates.

Layout of a home (created by ``tnca init``)::

    HOME/tnca.toml        configuration (see docs/configuration.md)
    HOME/tnca.db          SQLite database (default; TNCA_DATABASE_URL or [database] url override)
    HOME/keys/            file-backed private keys (mode 0600)
    HOME/certs/           root.pem, issuing.pem, token-authority.pem

Precedence for every setting: built-in default < ``tnca.toml`` < ``TNCA_*`` environment variables.
"""

from __future__ import annotations

import functools
import os
import tomllib
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from ca import store

CONFIG_FILE = "tnca.toml"
DATABASE_URL_ENV = "TNCA_DATABASE_URL"


class Home:
    """One authority home directory. Cheap to construct; everything is loaded on first use."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).resolve()

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    def exists(self) -> bool:
        return self.config_path.is_file()

    @functools.cached_property
    def config(self) -> dict[str, Any]:
        if not self.config_path.is_file():
            return {}
        with self.config_path.open("rb") as fh:
            return tomllib.load(fh)

    @property
    def database_url(self) -> str:
        env = os.environ.get(DATABASE_URL_ENV)
        if env:
            return env
        configured = self.config.get("database", {}).get("url")
        if configured:
            return configured
        return f"sqlite:///{self.path / 'tnca.db'}"

    @functools.cached_property
    def engine(self) -> Engine:
        return store.make_engine(self.database_url)

    @functools.cached_property
    def sessionmaker(self) -> sessionmaker:
        return store.make_sessionmaker(self.engine)
