"""The issuance policy: frozen dataclasses loaded from a TOML file (``ca/policies/default.toml``).

``tnca init`` copies the default policy into the home as ``policy.toml``; :class:`ca.home.Home`
loads that copy. Every key is documented in ``ca/policies/default.toml``. Loading is strict: an
unknown section or key, a wrong type or an out-of-range value raises :class:`PolicyError` whose
``field`` names the key (``[lifetimes] end_entity``), so a typo never silently becomes a default.
:class:`TableReader` does that reading; ``ca/config.py`` reads ``tnca.toml`` with it too.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509

from ca.errors import PolicyError

# Package data of ``ca`` (``ca/policies/default.toml``), found with importlib.resources so an
# installed wheel has it too. A regular package's resources are files, hence a Path.
DEFAULT_POLICY_PATH = Path(str(importlib.resources.files("ca") / "policies" / "default.toml"))

# The floor under every certificate lifetime: a certificate that expires before it can reach the
# relying parties' caches is a denial of service on the delegate, not security.
ABSOLUTE_MINIMUM_LIFETIME = dt.timedelta(minutes=5)
# Clock-skew allowance above which notBefore backdating starts to defeat short lifetimes.
MAXIMUM_BACKDATE = dt.timedelta(hours=1)

KNOWN_KEY_TYPES = ("ec-p256", "ec-p384", "ec-p521", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519")
KNOWN_TOKEN_ALGORITHMS = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA")

_T = TypeVar("_T")

_DURATION_RE = re.compile(r"(\d+)([dhms])")
_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# Longer than anything an authority configures, short enough that now + it is a valid datetime
# and a timedelta (an unbounded "99999999999d" raised OverflowError, not ValueError, wherever it
# was added to a time: a 500 on the operator forms, a traceback in the CLI).
MAXIMUM_DURATION = dt.timedelta(days=36500)


def parse_duration(text: str) -> dt.timedelta:
    """ "90s", "5m", "24h", "30d" or compounds such as "1h30m" → timedelta; ValueError otherwise."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"expected a duration such as '24h' or '5m', got {text!r}")
    position = 0
    seconds = 0
    for match in _DURATION_RE.finditer(text):
        if match.start() != position:
            break
        digits = match.group(1)
        if len(digits) > 12:  # int() of thousands of digits is slow before it is refused
            raise ValueError(f"{text[:40]!r} is longer than the longest duration accepted, {format_duration(MAXIMUM_DURATION)}")
        seconds += int(digits) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(text):
        raise ValueError(f"expected a duration such as '24h' or '5m' (units d, h, m, s), got {text[:40]!r}")
    if seconds > MAXIMUM_DURATION.total_seconds():
        raise ValueError(f"{text!r} is longer than the longest duration accepted, {format_duration(MAXIMUM_DURATION)}")
    return dt.timedelta(seconds=seconds)


def format_duration(delta: dt.timedelta) -> str:
    """The shortest duration string that parses back to ``delta`` (whole seconds)."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in _DURATION_UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


@dataclass(frozen=True)
class Lifetimes:
    end_entity: dt.timedelta
    minimum: dt.timedelta
    delegate_ca: dt.timedelta
    root: dt.timedelta
    issuing_ca: dt.timedelta
    token_authority: dt.timedelta
    backdate: dt.timedelta


@dataclass(frozen=True)
class KeyPolicy:
    end_entity: tuple[str, ...]
    delegate_ca: tuple[str, ...]
    authority: str


@dataclass(frozen=True)
class CertificatePolicy:
    policy_oids: tuple[x509.ObjectIdentifier, ...]
    crl_distribution_point: str | None  # template with {base_url} and {issuer}
    crl_issuer: x509.Name | None
    delegate_ca_path_length: int | None
    fallback_subject: x509.Name
    # Which end-entity certificate profile: "stir" (RFC 8226/9060 delegate certificates, the
    # default) or "shaken" (ATIS-1000080 §6.4.1: one SPC, the subject rule of
    # ca.issuing.profiles.shaken_subject). A key added later: absent reads as "stir".
    profile: str = "stir"

    def crl_url(self, *, base_url: str, issuer: str) -> str | None:
        if not self.crl_distribution_point:
            return None
        return self.crl_distribution_point.format(base_url=base_url.rstrip("/"), issuer=issuer)


# [certificates] profile: the end-entity certificate profiles (ca/issuing/profiles.py).
CERTIFICATE_PROFILES = ("stir", "shaken")


@dataclass(frozen=True)
class Names:
    root: x509.Name
    issuing_ca: x509.Name
    token_authority: x509.Name


@dataclass(frozen=True)
class TokenPolicy:
    max_lifetime: dt.timedelta
    trusted_authorities: tuple[Path, ...]  # PEM certificate files, absolute
    allowed_algorithms: tuple[str, ...]


@dataclass(frozen=True)
class CTLog:
    name: str
    url: str
    public_key: Path  # PEM SubjectPublicKeyInfo file, absolute


@dataclass(frozen=True)
class CTPolicy:
    required_scts: int
    submission_deadline: dt.timedelta
    logs: tuple[CTLog, ...]


@dataclass(frozen=True)
class ACMEPolicy:
    terms_of_service: str | None
    eab_required: bool
    nonce_lifetime: dt.timedelta
    order_lifetime: dt.timedelta
    authorization_lifetime: dt.timedelta
    # RFC 8739 §3.2 "max-duration": the longest auto-renewal period (end-date − start-date) of a
    # STAR order. Zero (also when the key is absent) turns STAR off: the directory has no
    # "auto-renewal" meta and newOrder refuses an "auto-renewal" object.
    auto_renewal_max_duration: dt.timedelta = dt.timedelta(0)
    # RFC 8739 §3.4: whether a STAR order may make its star-certificate readable by plain GET.
    auto_renewal_allow_certificate_get: bool = False


@dataclass(frozen=True)
class CRLPolicy:
    """``[crl]``: how CRLs are dated, refreshed and cached (RFC 5280 §5.1.2.4, §5.1.2.5).

    A section added after policy files were first written: a file without it reads as these
    defaults (``ca/policies/default.toml`` documents each key).
    """

    next_update: dt.timedelta = dt.timedelta(hours=24)
    refresh_interval: dt.timedelta = dt.timedelta(hours=1)
    cache_max_age: dt.timedelta = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` attempts per key in each fixed ``window``; ``count`` 0 turns it off."""

    count: int
    window: dt.timedelta


# The rate limits (``[rate_limits]``, enforced by ca.records.rate_limits), with the defaults a
# policy file without the section reads as (the same as ca/policies/default.toml).
NEW_ORDERS_PER_ACCOUNT = "new_orders_per_account"
NEW_ORDERS_PER_DELEGATE = "new_orders_per_delegate"
NEW_ORDERS_PER_ADDRESS = "new_orders_per_address"
FAILED_VALIDATIONS_PER_ACCOUNT = "failed_validations_per_account"
NEW_ACCOUNTS_PER_ADDRESS = "new_accounts_per_address"
STI_PA_LOGINS = "sti_pa_logins"
DEFAULT_RATE_LIMITS: Mapping[str, RateLimit] = {
    NEW_ORDERS_PER_ACCOUNT: RateLimit(300, dt.timedelta(hours=3)),
    NEW_ORDERS_PER_DELEGATE: RateLimit(3000, dt.timedelta(hours=3)),
    NEW_ORDERS_PER_ADDRESS: RateLimit(3000, dt.timedelta(hours=3)),
    FAILED_VALIDATIONS_PER_ACCOUNT: RateLimit(50, dt.timedelta(hours=1)),
    NEW_ACCOUNTS_PER_ADDRESS: RateLimit(50, dt.timedelta(hours=3)),
    STI_PA_LOGINS: RateLimit(30, dt.timedelta(minutes=10)),
}


@dataclass(frozen=True)
class RateLimits:
    """``[rate_limits]``: one :class:`RateLimit` per name of :data:`DEFAULT_RATE_LIMITS`
    (pairs, not a dict: a :class:`Policy` is hashable, and cached on)."""

    limits: tuple[tuple[str, RateLimit], ...] = tuple(DEFAULT_RATE_LIMITS.items())

    def __getitem__(self, name: str) -> RateLimit:
        return dict(self.limits)[name]


@dataclass(frozen=True)
class Policy:
    lifetimes: Lifetimes
    keys: KeyPolicy
    certificates: CertificatePolicy
    names: Names
    tokens: TokenPolicy
    ct: CTPolicy
    acme: ACMEPolicy
    crl: CRLPolicy = field(default_factory=CRLPolicy)
    rate_limits: RateLimits = field(default_factory=RateLimits)
    source: Path | None = field(default=None, compare=False)

    @classmethod
    def load(cls, path: Path) -> "Policy":
        """Read and validate a policy file; relative paths in it are relative to its directory."""
        try:
            with Path(path).open("rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise PolicyError(f"cannot read policy file {path}: {exc.strerror}", field="policy") from None
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"policy file {path} is not valid TOML: {exc}", field="policy") from None
        return cls.from_mapping(data, base_dir=Path(path).resolve().parent, source=Path(path))

    @classmethod
    def default(cls) -> "Policy":
        return cls.load(DEFAULT_POLICY_PATH)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, base_dir: Path, source: Path | None = None) -> "Policy":
        reader = TableReader(data, base_dir, sections=POLICY_SECTIONS, label="policy")
        policy = cls(
            lifetimes=reader.lifetimes(),
            keys=reader.keys(),
            certificates=reader.certificates(),
            names=reader.names(),
            tokens=reader.tokens(),
            ct=reader.ct(),
            acme=reader.acme(),
            crl=reader.crl(),
            rate_limits=reader.rate_limits(),
            source=source,
        )
        reader.refuse_unknown()
        return policy


POLICY_SECTIONS = ("lifetimes", "keys", "certificates", "names", "tokens", "ct", "acme", "crl", "rate_limits")


class TableReader:
    """Typed access to the tables of a TOML file; every error is a :class:`PolicyError` naming
    ``[section] key``, and :meth:`refuse_unknown` refuses what no one read.

    ``label`` names the file in messages ("policy key [ct] logs: …"); ``sections`` are the tables
    it may have; relative paths are relative to ``base_dir``.
    """

    def __init__(self, data: Mapping[str, Any], base_dir: Path, *, sections: tuple[str, ...], label: str) -> None:
        self.data = data
        self.base_dir = base_dir
        self.sections = sections
        self.label = label
        self.seen: dict[str, set[str]] = {}

    # -- primitives ------------------------------------------------------------------------------

    def _raw(self, section: str, key: str) -> Any:
        table = self.data.get(section)
        if not isinstance(table, Mapping):
            raise PolicyError(f"{self.label} section [{section}] is missing", field=f"[{section}]")
        self.seen.setdefault(section, set()).add(key)
        if key not in table:
            raise PolicyError(f"{self.label} key [{section}] {key} is missing", field=f"[{section}] {key}")
        return table[key]

    def present(self, section: str, key: str) -> bool:
        """Whether an optional key is set (a key added after policy files were first written)."""
        table = self.data.get(section)
        return isinstance(table, Mapping) and key in table

    def optional(self, read: Callable[..., _T], section: str, key: str, default: _T, **kwargs: Any) -> _T:
        """``read(section, key, **kwargs)`` when the key is set, else ``default`` (for files whose
        keys all have defaults, and for keys added after files were first written)."""
        return read(section, key, **kwargs) if self.present(section, key) else default

    def url(self, section: str, key: str) -> str:
        """An http:// or https:// URL."""
        value = self.string(section, key)
        if not value.startswith(("http://", "https://")):
            raise self._fail(section, key, f"{value!r} is not an http:// or https:// URL")
        return value

    def table(self, section: str) -> Mapping[str, Any]:
        """A whole optional table, for a reader that checks its keys itself ({} when absent)."""
        table = self.data.get(section, {})
        if not isinstance(table, Mapping):
            raise PolicyError(f"{self.label} [{section}] must be a table, got {table!r}", field=f"[{section}]")
        self.seen.setdefault(section, set()).update(table)
        return table

    def _fail(self, section: str, key: str, message: str) -> PolicyError:
        return PolicyError(f"{self.label} key [{section}] {key}: {message}", field=f"[{section}] {key}")

    def string(self, section: str, key: str) -> str:
        value = self._raw(section, key)
        if not isinstance(value, str):
            raise self._fail(section, key, f"expected a string, got {value!r}")
        return value

    def boolean(self, section: str, key: str) -> bool:
        value = self._raw(section, key)
        if not isinstance(value, bool):
            raise self._fail(section, key, f"expected true or false, got {value!r}")
        return value

    def integer(self, section: str, key: str, *, minimum: int) -> int:
        value = self._raw(section, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self._fail(section, key, f"expected an integer ≥ {minimum}, got {value!r}")
        return value

    def number(self, section: str, key: str, *, maximum: float) -> float:
        """A positive number (integer or float) up to ``maximum``."""
        value = self._raw(section, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= maximum:
            raise self._fail(section, key, f"expected a number in (0, {maximum:g}], got {value!r}")
        return float(value)

    def duration(self, section: str, key: str, *, minimum: dt.timedelta = dt.timedelta(0)) -> dt.timedelta:
        raw = self._raw(section, key)
        try:
            value = parse_duration(raw)
        except ValueError as exc:
            raise self._fail(section, key, str(exc)) from None
        if value < minimum:
            raise self._fail(section, key, f"{raw} is below the minimum of {format_duration(minimum)}")
        return value

    def strings(self, section: str, key: str, *, allowed: tuple[str, ...] | None = None, nonempty: bool = False) -> tuple[str, ...]:
        value = self._raw(section, key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._fail(section, key, f"expected a list of strings, got {value!r}")
        if nonempty and not value:
            raise self._fail(section, key, "the list must not be empty")
        if allowed is not None:
            unknown = [v for v in value if v not in allowed]
            if unknown:
                raise self._fail(section, key, f"unknown value(s) {', '.join(unknown)} (known: {', '.join(allowed)})")
        return tuple(value)

    def name(self, section: str, key: str, *, allow_empty: bool = False) -> x509.Name | None:
        text = self.string(section, key)
        if not text and allow_empty:
            return None
        try:
            name = x509.Name.from_rfc4514_string(text)
        except ValueError as exc:
            raise self._fail(section, key, f"not an RFC 4514 distinguished name ({exc})") from None
        if not len(name):
            raise self._fail(section, key, "the distinguished name is empty")
        return name

    def path(self, section: str, key: str, text: str) -> Path:
        path = Path(text)
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    def refuse_unknown(self) -> None:
        for section in self.data:
            if section not in self.sections:
                raise PolicyError(f"unknown {self.label} section [{section}]", field=f"[{section}]")
            if not isinstance(self.data[section], Mapping):
                raise PolicyError(f"{self.label} [{section}] must be a table, got {self.data[section]!r}",
                                  field=f"[{section}]")
            extra = set(self.data[section]) - self.seen.get(section, set())
            if extra:
                key = sorted(extra)[0]
                raise PolicyError(f"unknown {self.label} key [{section}] {key}", field=f"[{section}] {key}")

    # -- sections --------------------------------------------------------------------------------

    def lifetimes(self) -> Lifetimes:
        s = "lifetimes"
        floor = ABSOLUTE_MINIMUM_LIFETIME
        lifetimes = Lifetimes(
            end_entity=self.duration(s, "end_entity", minimum=floor),
            minimum=self.duration(s, "minimum", minimum=floor),
            delegate_ca=self.duration(s, "delegate_ca", minimum=floor),
            root=self.duration(s, "root", minimum=floor),
            issuing_ca=self.duration(s, "issuing_ca", minimum=floor),
            token_authority=self.duration(s, "token_authority", minimum=floor),
            backdate=self.duration(s, "backdate"),
        )
        if lifetimes.backdate > MAXIMUM_BACKDATE:
            raise self._fail(s, "backdate", f"must not exceed {format_duration(MAXIMUM_BACKDATE)}")
        for key in ("end_entity", "delegate_ca"):
            if getattr(lifetimes, key) < lifetimes.minimum:
                raise self._fail(s, key, "is shorter than [lifetimes] minimum")
        return lifetimes

    def keys(self) -> KeyPolicy:
        s = "keys"
        authority = self.string(s, "authority")
        if authority not in KNOWN_KEY_TYPES:
            raise self._fail(s, "authority", f"unknown key type {authority!r} (known: {', '.join(KNOWN_KEY_TYPES)})")
        return KeyPolicy(
            end_entity=self.strings(s, "end_entity", allowed=KNOWN_KEY_TYPES, nonempty=True),
            delegate_ca=self.strings(s, "delegate_ca", allowed=KNOWN_KEY_TYPES, nonempty=True),
            authority=authority,
        )

    def certificates(self) -> CertificatePolicy:
        s = "certificates"
        oids = []
        for text in self.strings(s, "policy_oids"):
            try:
                oids.append(x509.ObjectIdentifier(text))
            except ValueError:
                raise self._fail(s, "policy_oids", f"{text!r} is not a dotted object identifier") from None
        crl_dp = self.string(s, "crl_distribution_point")
        if crl_dp:
            try:
                example = crl_dp.format(base_url="http://example.invalid", issuer="issuing")
            except (KeyError, IndexError, ValueError) as exc:
                raise self._fail(s, "crl_distribution_point", f"only {{base_url}} and {{issuer}} may be used ({exc})") from None
            if not example.startswith(("http://", "https://")):
                raise self._fail(s, "crl_distribution_point", "must be an http:// or https:// URL template")
        path_length = self.integer(s, "delegate_ca_path_length", minimum=-1)
        return CertificatePolicy(
            policy_oids=tuple(oids),
            crl_distribution_point=crl_dp or None,
            crl_issuer=self.name(s, "crl_issuer", allow_empty=True),
            delegate_ca_path_length=None if path_length == -1 else path_length,
            fallback_subject=self.name(s, "fallback_subject"),
            profile=self._certificate_profile(s),
        )

    def _certificate_profile(self, s: str) -> str:
        profile = self.optional(self.string, s, "profile", "stir")
        if profile not in CERTIFICATE_PROFILES:
            raise self._fail(s, "profile", f"unknown profile {profile!r} (known: {', '.join(CERTIFICATE_PROFILES)})")
        return profile

    def names(self) -> Names:
        s = "names"
        return Names(root=self.name(s, "root"), issuing_ca=self.name(s, "issuing_ca"),
                     token_authority=self.name(s, "token_authority"))

    def tokens(self) -> TokenPolicy:
        s = "tokens"
        files = self.strings(s, "trusted_authorities")
        return TokenPolicy(
            max_lifetime=self.duration(s, "max_lifetime", minimum=dt.timedelta(seconds=1)),
            trusted_authorities=tuple(self.path(s, "trusted_authorities", f) for f in files),
            allowed_algorithms=self.strings(s, "allowed_algorithms", allowed=KNOWN_TOKEN_ALGORITHMS, nonempty=True),
        )

    def ct(self) -> CTPolicy:
        s = "ct"
        raw_logs = self._raw(s, "logs")
        if not isinstance(raw_logs, list):
            raise self._fail(s, "logs", f"expected a list of inline tables, got {raw_logs!r}")
        logs = []
        for index, entry in enumerate(raw_logs):
            where = f"logs[{index}]"
            if not isinstance(entry, Mapping) or set(entry) != {"name", "url", "public_key"} or not all(
                isinstance(v, str) and v for v in entry.values()
            ):
                raise self._fail(s, where, "expected { name = \"…\", url = \"…\", public_key = \"…\" }")
            if not entry["url"].startswith(("http://", "https://")):
                raise self._fail(s, where, f"url {entry['url']!r} is not an http(s) URL")
            logs.append(CTLog(name=entry["name"], url=entry["url"].rstrip("/"),
                              public_key=self.path(s, where, entry["public_key"])))
        if len({log.name for log in logs}) != len(logs):
            raise self._fail(s, "logs", "log names must be distinct")
        required = self.integer(s, "required_scts", minimum=0)
        if required > len(logs):
            raise self._fail(s, "required_scts", f"{required} SCTs required but only {len(logs)} log(s) configured")
        return CTPolicy(
            required_scts=required,
            submission_deadline=self.duration(s, "submission_deadline", minimum=dt.timedelta(seconds=1)),
            logs=tuple(logs),
        )

    def acme(self) -> ACMEPolicy:
        s = "acme"
        tos = self.string(s, "terms_of_service")
        if tos and not tos.startswith(("http://", "https://")):
            raise self._fail(s, "terms_of_service", f"{tos!r} is not an http(s) URL")
        minute = dt.timedelta(minutes=1)
        return ACMEPolicy(
            terms_of_service=tos or None,
            eab_required=self.boolean(s, "eab_required"),
            nonce_lifetime=self.duration(s, "nonce_lifetime", minimum=minute),
            order_lifetime=self.duration(s, "order_lifetime", minimum=minute),
            authorization_lifetime=self.duration(s, "authorization_lifetime", minimum=minute),
            # Added with STAR: a policy file written before it has neither key, and its safe
            # reading is "STAR off" (ACMEPolicy's defaults), not an error.
            auto_renewal_max_duration=(
                self.duration(s, "auto_renewal_max_duration")
                if self.present(s, "auto_renewal_max_duration") else dt.timedelta(0)
            ),
            auto_renewal_allow_certificate_get=(
                self.boolean(s, "auto_renewal_allow_certificate_get")
                if self.present(s, "auto_renewal_allow_certificate_get") else False
            ),
        )

    def crl(self) -> CRLPolicy:
        s = "crl"
        defaults = CRLPolicy()
        # Added with CRL publication: a policy file written before it has no [crl], and its
        # safe reading is the defaults, not an error.
        minute = dt.timedelta(minutes=1)
        next_update = (
            self.duration(s, "next_update", minimum=minute) if self.present(s, "next_update") else defaults.next_update
        )
        refresh = (
            self.duration(s, "refresh_interval", minimum=minute)
            if self.present(s, "refresh_interval") else defaults.refresh_interval
        )
        cache = self.duration(s, "cache_max_age") if self.present(s, "cache_max_age") else defaults.cache_max_age
        # RFC 5280 §5.1.2.5: a new CRL must exist before nextUpdate. A refresh at least as often
        # as the CRLs expire keeps one valid CRL published at all times, and a revoked
        # certificate that expires stays listed until one scheduled CRL after its expiry.
        if refresh >= next_update:
            raise self._fail(s, "refresh_interval", f"must be shorter than [crl] next_update ({format_duration(next_update)})")
        if cache > next_update:
            raise self._fail(s, "cache_max_age", f"must not exceed [crl] next_update ({format_duration(next_update)})")
        return CRLPolicy(next_update=next_update, refresh_interval=refresh, cache_max_age=cache)

    def rate_limits(self) -> RateLimits:
        s = "rate_limits"
        # Added with rate limiting: a policy file without [rate_limits] (or without one of its
        # keys) reads as the defaults, the same values ca/policies/default.toml writes.
        limits = dict(DEFAULT_RATE_LIMITS)
        for name in self.table(s):
            if name not in DEFAULT_RATE_LIMITS:
                raise self._fail(s, name, f"unknown rate limit (known: {', '.join(DEFAULT_RATE_LIMITS)})")
            value = self.data[s][name]
            if not isinstance(value, Mapping) or set(value) != {"count", "window"}:
                raise self._fail(s, name, 'expected { count = N, window = "1h" }')
            count = value["count"]
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise self._fail(s, name, f"count: expected an integer ≥ 0 (0 turns the limit off), got {count!r}")
            try:
                window = parse_duration(value["window"]) if isinstance(value["window"], str) else None
            except ValueError as exc:
                raise self._fail(s, name, f"window: {exc}") from None
            if window is None or window < dt.timedelta(seconds=1):
                raise self._fail(s, name, f"window: expected a duration of at least 1s, got {value['window']!r}")
            limits[name] = RateLimit(count, window)
        return RateLimits(tuple(limits.items()))

