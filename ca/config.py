"""The authority's settings: ``HOME/tnca.toml`` as frozen dataclasses, and the layout of a home.

Layout of a home (created by ``tnca init``)::

    HOME/tnca.toml        settings (this module): [server], [database], [token_authority], [audit],
                          [x5u], [compat], [metrics], [health], [stipa], [domains]
    HOME/policy.toml      issuance policy (a copy of ca/policies/default.toml; see ca/policy.py)
    HOME/tnca.db          SQLite database (default; TNCA_DATABASE_URL or [database] url override)
    HOME/keys/            file-backed private keys (mode 0600)
    HOME/certs/           root.pem, issuing.pem, token-authority.pem, audit.pem

Precedence for every setting: built-in default < ``tnca.toml`` < ``TNCA_*`` environment variables
(``TNCA_BASE_URL``, ``TNCA_DATABASE_URL``; :class:`ca.home.Home` applies them).

This module is at the bottom of ``ca/``: everything may use it, and it uses only ``ca.errors`` and
``ca.policy``, whose :class:`~ca.policy.TableReader` reads ``tnca.toml`` exactly as it reads the
policy: an unknown section or key, a wrong type or a bad value raises
:class:`~ca.errors.PolicyError` whose ``field`` names ``[section] key``, so a typo never silently
becomes a default. Unlike the policy, every key here has a default: a home without ``tnca.toml``
(before ``tnca init`` writes it) reads as the defaults. ``docs/operator-guide.md`` has the table of
every key. Opening the database and building signers, issuers and the CT client from these
settings is :class:`ca.home.Home`'s job, above issuance.
"""

from __future__ import annotations

import ipaddress
import datetime as dt
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ca.errors import PolicyError
from ca.policy import TableReader

CONFIG_FILE = "tnca.toml"
POLICY_FILE = "policy.toml"
DATABASE_URL_ENV = "TNCA_DATABASE_URL"
BASE_URL_ENV = "TNCA_BASE_URL"
DEFAULT_BASE_URL = "http://127.0.0.1:8080"

# Names of the issuers rows `tnca init` creates, and of their files under certs/.
ROOT_ISSUER = "root"
ISSUING_ISSUER = "issuing"
ROOT_CERT_FILE = "certs/root.pem"
ISSUING_CERT_FILE = "certs/issuing.pem"
TOKEN_AUTHORITY_CERT_FILE = "certs/token-authority.pem"
# Where the ACME server publishes the token authority's certificate (the tokens' x5u).
TOKEN_AUTHORITY_X5U_PATH = "/token-authority.pem"
# Plain-GET chains of issued certificates, {base_url}/cert-repo/<serial>.pem (RFC 9448 §7 "x5u").
CERT_REPO_PATH = "/cert-repo"
# The audit checkpoint key (ca/records/audit_keys.py) when [audit] does not name another.
AUDIT_SIGNER_URI = "file:keys/audit.key"
AUDIT_CERT_FILE = "certs/audit.pem"
# The Ed25519 key that signs the published checkpoint notes (ca/records/audit_notes.py).
AUDIT_NOTE_SIGNER_URI = "file:keys/audit-note.key"

SECTIONS = ("server", "database", "token_authority", "audit", "x5u", "compat", "metrics", "health", "stipa", "domains")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Who may read /metrics by default: this host only.
DEFAULT_METRICS_ALLOW = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
DEFAULT_READINESS_DEADLINE_SECONDS = 2.0
# A load balancer's probe gives up after seconds; a readiness deadline longer than this is a typo.
MAX_READINESS_DEADLINE_SECONDS = 60.0


@dataclass(frozen=True)
class ServerSettings:
    """``[server]``: how the ACME server presents itself."""

    # External URL of the ACME server (Home.base_url drops a trailing slash): directory URLs,
    # the token authority's x5u and CRL distribution points are built from it.
    base_url: str = DEFAULT_BASE_URL
    # RFC 9447 §3 "token-authority" in tkauth-01 challenges: where a client acquires tokens.
    # None: base_url (the origin of this authority's own token authority).
    token_authority_url: str | None = None
    # RFC 8555 §7.1.1 directory meta "website"; None leaves it out.
    website: str | None = None
    # Reverse proxies (addresses or networks) whose X-Forwarded-For is believed: the client
    # address that rate limits and login throttling count is the right-most X-Forwarded-For entry
    # not in these (acme_server/client_address.py). Empty: the socket's peer, whatever headers say.
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


@dataclass(frozen=True)
class DatabaseSettings:
    """``[database]``."""

    # SQLAlchemy URL (SQLite or PostgreSQL); None: SQLite at HOME/tnca.db.
    url: str | None = None


@dataclass(frozen=True)
class TokenAuthoritySettings:
    """``[token_authority]``: the key and certificate that sign this authority's tokens (RFC 9447)."""

    certificate: Path  # PEM file, absolute (relative ones are relative to the home)
    signer: str | None = None  # signer URI (file:… or pkcs11:…); None: the home has no token authority


@dataclass(frozen=True)
class AuditSettings:
    """``[audit]``: the key that signs audit checkpoints, and its certificate; the Ed25519 key
    of the published checkpoint notes; when the worker signs a checkpoint."""

    signer: str
    certificate: Path  # PEM file, absolute (relative ones are relative to the home)
    note_signer: str = AUDIT_NOTE_SIGNER_URI
    checkpoint_interval: dt.timedelta = dt.timedelta(hours=1)
    checkpoint_max_events: int = 1000


@dataclass(frozen=True)
class MetricsSettings:
    """``[metrics]``: who may read ``/metrics`` (the Prometheus exposition)."""

    # Client networks allowed (a bare address is one host); an empty list closes /metrics.
    allow: tuple[IPNetwork, ...] = DEFAULT_METRICS_ALLOW

    def allows(self, address: str | None) -> bool:
        """Whether a client at ``address`` (as the server sees it) may read ``/metrics``."""
        try:
            ip = ipaddress.ip_address((address or "").split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d
        return any(ip in network for network in self.allow)


@dataclass(frozen=True)
class HealthSettings:
    """``[health]``: ``/readyz``, what a load balancer asks before sending traffic."""

    # One deadline for all of /readyz's checks (database, signing keys, CT logs), in seconds.
    readiness_deadline_seconds: float = DEFAULT_READINESS_DEADLINE_SECONDS


@dataclass(frozen=True)
class StipaSettings:
    """``[stipa]``: the STI-PA-compatible token API under ``/stipa`` (``ca/tokens/stipa.py``)."""

    # Serve it (``tnca init --profile shaken`` turns it on); off, /stipa answers 404.
    enabled: bool = False


@dataclass(frozen=True)
class DomainSettings:
    """``[domains]``: how http-01 and dns-01 (RFC 8555 §8.3, §8.4) reach a delegate's domain
    (ca/orders/domains.py). The defaults are the production settings."""

    # "host:port" (or "host", port 53) of the DNS resolver asked for A and TXT records; None:
    # the first nameserver of /etc/resolv.conf.
    resolver: str | None = None
    # The port http-01 connects to (RFC 8555 §8.3: 80); tests point it at a loopback server.
    http_port: int = 80
    # One deadline over each whole validation: every DNS query, the connection, the response.
    deadline: dt.timedelta = dt.timedelta(seconds=10)
    # The most bytes of an http-01 response body read (RFC 8555 §8.3 key authorizations are ~90).
    max_response_bytes: int = 8192
    # Allow domains resolving to private, loopback or link-local addresses (development, tests).
    allow_private_addresses: bool = False


@dataclass(frozen=True)
class Settings:
    """The whole of ``tnca.toml``.

    ``x5u`` and ``compat`` are kept as read: their typed forms, ``ca.tokens.x5u.FetchPolicy`` and
    ``ca.tokens.trust_config.TokenCompat``, live with the code that uses them, above this
    module, and parse them just as strictly; :class:`ca.home.Home` parses both when it loads the
    settings, so a typo there also fails at start-up.
    """

    server: ServerSettings
    database: DatabaseSettings
    token_authority: TokenAuthoritySettings
    audit: AuditSettings
    metrics: MetricsSettings = MetricsSettings()
    health: HealthSettings = HealthSettings()
    stipa: StipaSettings = StipaSettings()
    x5u: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    compat: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    domains: DomainSettings = field(default_factory=DomainSettings)
    source: Path | None = field(default=None, compare=False)

    @classmethod
    def load(cls, path: Path, *, home: Path | None = None) -> "Settings":
        """Read and validate ``path``; a missing file is all defaults. Relative paths in it are
        relative to ``home`` (default: the file's directory)."""
        path = Path(path)
        base_dir = Path(home) if home is not None else path.resolve().parent
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            return cls.from_mapping({}, base_dir=base_dir)
        except OSError as exc:
            raise PolicyError(f"cannot read {path}: {exc.strerror}", field=CONFIG_FILE) from None
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{path} is not valid TOML: {exc}", field=CONFIG_FILE) from None
        return cls.from_mapping(data, base_dir=base_dir, source=path)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, base_dir: Path, source: Path | None = None) -> "Settings":
        reader = TableReader(data, base_dir, sections=SECTIONS, label=CONFIG_FILE)
        settings = cls(
            server=_server(reader),
            database=DatabaseSettings(url=_nonempty(reader, "database", "url")),
            token_authority=TokenAuthoritySettings(
                certificate=reader.path("token_authority", "certificate",
                                        reader.optional(reader.string, "token_authority", "certificate",
                                                        TOKEN_AUTHORITY_CERT_FILE)),
                signer=_nonempty(reader, "token_authority", "signer"),
            ),
            audit=AuditSettings(
                signer=reader.optional(reader.string, "audit", "signer", AUDIT_SIGNER_URI),
                certificate=reader.path("audit", "certificate",
                                        reader.optional(reader.string, "audit", "certificate", AUDIT_CERT_FILE)),
                note_signer=reader.optional(reader.string, "audit", "note_signer", AUDIT_NOTE_SIGNER_URI),
                checkpoint_interval=reader.optional(reader.duration, "audit", "checkpoint_interval",
                                                    dt.timedelta(hours=1), minimum=dt.timedelta(seconds=1)),
                checkpoint_max_events=reader.optional(reader.integer, "audit", "checkpoint_max_events", 1000, minimum=1),
            ),
            metrics=MetricsSettings(allow=_networks(reader, "metrics", "allow", DEFAULT_METRICS_ALLOW)),
            health=HealthSettings(readiness_deadline_seconds=reader.optional(
                reader.number, "health", "readiness_deadline_seconds", DEFAULT_READINESS_DEADLINE_SECONDS,
                maximum=MAX_READINESS_DEADLINE_SECONDS)),
            stipa=StipaSettings(enabled=reader.optional(reader.boolean, "stipa", "enabled", False)),
            x5u=MappingProxyType(dict(reader.table("x5u"))),
            compat=MappingProxyType(dict(reader.table("compat"))),
            domains=_domains(reader),
            source=source,
        )
        reader.refuse_unknown()
        return settings


def _server(reader: TableReader) -> ServerSettings:
    s = "server"
    return ServerSettings(
        base_url=reader.optional(reader.url, s, "base_url", DEFAULT_BASE_URL),
        token_authority_url=reader.optional(reader.url, s, "token_authority_url", None),
        website=reader.optional(reader.url, s, "website", None),
        trusted_proxies=_networks(reader, s, "trusted_proxies"),
    )


def _networks(reader: TableReader, section: str, key: str,
              default: tuple[IPNetwork, ...] = ()) -> tuple[IPNetwork, ...]:
    """A list of IP networks; an address with host bits under its prefix is refused (strict):
    a typo in an allow-list must not widen it silently."""
    if not reader.present(section, key):
        return default
    networks = []
    for text in reader.strings(section, key):
        try:
            networks.append(ipaddress.ip_network(text, strict=True))
        except ValueError as exc:
            raise PolicyError(f"{CONFIG_FILE} key [{section}] {key}: {text!r} is not an IP address or network ({exc})",
                              field=f"[{section}] {key}") from None
    return tuple(networks)
def _domains(reader: TableReader) -> DomainSettings:
    s, default = "domains", DomainSettings()
    resolver = _nonempty(reader, s, "resolver")
    if resolver is not None:
        host, _, port = resolver.rpartition(":") if resolver.count(":") == 1 else (resolver, "", "53")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise PolicyError(f"[domains] resolver must be host or host:port, got {resolver!r}", field="[domains] resolver")
    return DomainSettings(
        resolver=resolver,
        http_port=reader.optional(reader.integer, s, "http_port", default.http_port, minimum=1),
        deadline=reader.optional(reader.duration, s, "deadline", default.deadline, minimum=dt.timedelta(seconds=1)),
        max_response_bytes=reader.optional(reader.integer, s, "max_response_bytes", default.max_response_bytes,
                                           minimum=128),
        allow_private_addresses=reader.optional(reader.boolean, s, "allow_private_addresses",
                                                default.allow_private_addresses),
    )


def _nonempty(reader: TableReader, section: str, key: str) -> str | None:
    """An optional string key whose empty value means "not set", as it always has."""
    return reader.optional(reader.string, section, key, "") or None
