"""The authority's home directory as one object: its settings, database, keys and certificates.

The composition root of ``ca/``: :class:`Home` reads the settings (``ca/config.py``, which also
describes the layout of a home) and the policy, opens the database, and builds what the front ends
hand to ``ca`` functions: signers, issuer handles, the token authority and the CT client. It sits
above issuance and tokens and imports them like any other module; the few ``ca`` modules that
take a whole home (the CRL, renewal and revocation jobs, the audit key) import it in turn, and
nothing it imports does.

A :class:`Home` is shared by every request of a server process, so what is expensive to load (the
policy, signers, the issuing CA's certificate and scope) is loaded once and cached on it; the
caches are filled under a lock because gunicorn may run threads.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from ca.clock import Clock, SystemClock
from ca.config import (
    BASE_URL_ENV,
    CONFIG_FILE,
    DATABASE_URL_ENV,
    ISSUING_ISSUER,
    POLICY_FILE,
    ROOT_CERT_FILE,
    TOKEN_AUTHORITY_X5U_PATH,
    Settings,
)
from ca.errors import NotFoundError
from ca.issuing.issuance import IssuerHandle
from ca.issuing.signers import Signer, load_signer
from ca.issuing.transparency import CTSubmitter
from ca.numbers.tnauthlist import TNScope
from ca.policy import Policy
from ca.records import models_authority, store
from ca.tokens.trust_config import TokenCompat
from ca.tokens.x5u import FetchPolicy


@dataclass(frozen=True)
class TokenAuthorityHandle:
    """The key and certificate that sign this authority's authority tokens (RFC 9447 §3)."""

    certificate: x509.Certificate
    signer: Signer
    x5u: str  # where relying parties fetch ``certificate`` (RFC 7515 §4.1.5)


class Home:
    """One authority home directory. Cheap to construct; everything is loaded on first use."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).resolve()
        # Replaceable in tests; everything in ca/ takes the clock it is given.
        self.clock: Clock = SystemClock()
        self._lock = threading.RLock()
        self._signers: dict[str, Signer] = {}
        self._issuing_ca: IssuerHandle | None = None
        self._token_authority: TokenAuthorityHandle | None = None
        self._transparency: CTSubmitter | None = None

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def policy_path(self) -> Path:
        return self.path / POLICY_FILE

    def exists(self) -> bool:
        return self.config_path.is_file()

    @functools.cached_property
    def config(self) -> Settings:
        """``HOME/tnca.toml``, validated (all defaults when the file does not exist yet).

        ``[x5u]`` and ``[compat]`` are parsed here too, by their owners' strict readers, so a typo
        anywhere in the file fails when the home is first used, not at the first token.
        """
        settings = Settings.load(self.config_path, home=self.path)
        FetchPolicy.from_config(settings.x5u)
        TokenCompat.from_config(settings.compat)
        return settings

    @property
    def database_url(self) -> str:
        return os.environ.get(DATABASE_URL_ENV) or self.config.database.url or f"sqlite:///{self.path / 'tnca.db'}"

    @property
    def base_url(self) -> str:
        """External URL of the ACME server, without a trailing slash (``[server] base_url``)."""
        return (os.environ.get(BASE_URL_ENV) or self.config.server.base_url).rstrip("/")

    @property
    def token_authority_url(self) -> str:
        """RFC 9447 §3 "token-authority" (``[server] token_authority_url``, default :attr:`base_url`)."""
        return self.config.server.token_authority_url or self.base_url

    @property
    def token_authority_x5u(self) -> str:
        """Where relying parties fetch the token authority's certificate: every minted token's ``x5u``."""
        return self.base_url + TOKEN_AUTHORITY_X5U_PATH

    @functools.cached_property
    def fetch_policy(self) -> FetchPolicy:
        """What the x5u fetcher may do (``[x5u]``; production defaults when absent)."""
        return FetchPolicy.from_config(self.config.x5u)

    def domain_validator(self) -> "DomainValidator":
        """http-01 / dns-01 as ``[domains]`` says (ca/orders/domains.py), one per home."""
        from ca.orders.domains import DomainValidator  # above this module; only ACME front ends need it

        with self._lock:
            validator = self.__dict__.get("_domain_validator")
            if validator is None:
                validator = self.__dict__["_domain_validator"] = DomainValidator(self.config.domains)
            return validator

    @functools.cached_property
    def token_compat(self) -> TokenCompat:
        """Token-validation compatibility switches (``[compat]``; all off when absent)."""
        return TokenCompat.from_config(self.config.compat)

    @functools.cached_property
    def engine(self) -> Engine:
        return store.make_engine(self.database_url)

    @functools.cached_property
    def sessionmaker(self) -> sessionmaker:
        return store.make_sessionmaker(self.engine)

    def close(self) -> None:
        """Release the database connections this home opened (the CLI calls it when a command ends)."""
        engine = self.__dict__.pop("engine", None)
        self.__dict__.pop("sessionmaker", None)
        if engine is not None:
            engine.dispose()

    @functools.cached_property
    def policy(self) -> Policy:
        """``HOME/policy.toml``; the packaged default policy when the home has none."""
        if self.policy_path.is_file():
            return Policy.load(self.policy_path)
        return Policy.default()

    def transparency(self) -> CTSubmitter | None:
        """The CT client for the policy's ``[ct]`` logs (``ca.issuing.issuance.issue``'s ``transparency``),
        built once per process so its HTTP sessions stay alive; None when no SCTs are required."""
        with self._lock:
            if self._transparency is None and self.policy.ct.required_scts > 0:
                self._transparency = CTSubmitter.from_policy(self.policy.ct, clock=self.clock)
            return self._transparency

    # -- keys and issuers --------------------------------------------------------------------------

    def signer(self, uri: str) -> Signer:
        """The signer for ``uri``, loaded once per process (keys are not re-parsed per request)."""
        with self._lock:
            signer = self._signers.get(uri)
            if signer is None:
                signer = self._signers[uri] = load_signer(uri, home=self.path)
            return signer

    def root_certificate(self) -> x509.Certificate:
        return _load_one_pem(self.path / ROOT_CERT_FILE, "root certificate")

    def issuing_ca(self) -> IssuerHandle:
        """The issuing CA every delegate certificate is signed by (loaded once, then cached)."""
        with self._lock:
            if self._issuing_ca is None:
                self._issuing_ca = self.load_issuer(ISSUING_ISSUER)
            return self._issuing_ca

    def load_issuer(self, name: str) -> IssuerHandle:
        """An :class:`IssuerHandle` for the ``issuers`` row called ``name`` (not cached)."""
        with self.sessionmaker() as session:
            row = session.scalars(select(models_authority.Issuer).where(models_authority.Issuer.name == name)).one_or_none()
            if row is None:
                raise NotFoundError(
                    f"the home {self.path} has no issuer {name!r}; run 'tnca --home {self.path} init' first",
                    field="issuer",
                )
            certificate = x509.load_der_x509_certificate(row.certificate_der)
            scope = TNScope.from_der(row.scope_der) if row.scope_der else None
            issuer_id, signer_uri, parent_id = row.id, row.signer_uri, row.parent_id
            parent_name = session.get(models_authority.Issuer, parent_id).name if parent_id is not None else None
        return IssuerHandle(
            certificate=certificate,
            signer=self.signer(signer_uri),
            scope=scope,
            chain=(certificate,),
            issuer_id=issuer_id,
            name=name,
            crl_url=self.policy.certificates.crl_url(base_url=self.base_url, issuer=name),
            parent_name=parent_name,
        )

    def token_authority(self) -> TokenAuthorityHandle:
        """This authority's own token authority (``[token_authority]`` in tnca.toml)."""
        with self._lock:
            if self._token_authority is None:
                section = self.config.token_authority
                if section.signer is None:
                    raise NotFoundError(
                        f"the home {self.path} has no token authority; run 'tnca --home {self.path} init' first",
                        field="token_authority",
                    )
                self._token_authority = TokenAuthorityHandle(
                    certificate=_load_one_pem(section.certificate, "token-authority certificate"),
                    signer=self.signer(section.signer),
                    x5u=self.token_authority_x5u,
                )
            return self._token_authority


def _load_one_pem(path: Path, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise NotFoundError(f"cannot read the {what} {path}: {exc.strerror}", field=what) from None
