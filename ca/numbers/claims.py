"""PASSporT claim constraints: JWTClaimConstraints (RFC 8226 §8) and EnhancedJWTClaimConstraints
(RFC 9118).

A delegation pins what its delegate may assert in PASSporTs; the delegate certificate carries that
pin as one of two non-critical extensions (end-entity certificates only). This module holds the
value type, its DER and JSON forms, and ``evaluate``: the checks a verification service makes
(RFC 9118 §4), returned as a list of violations rather than a bool, so a person sees every
problem at once.

Two levels of checking:

* Structural rules hold for every value (construction refuses anything else): at least one of
  mustInclude / permittedValues / mustExclude (RFC 8226 §8, RFC 9118 §3 WITH COMPONENTS);
  every list non-empty (SIZE (1..MAX)); claim names are non-empty ASCII (IA5String); values are
  strings (UTF8String); mustExclude only in the enhanced form (RFC 9118 §3, §6).
* Issuance rules (``check_issuable``) hold for anything this authority writes into a
  certificate: no baseline claim (``iat``, ``orig``, ``dest``) in mustExclude (RFC 9118 §3) or in
  mustInclude (RFC 8226 §8: SHOULD NOT be listed), no claim both required and excluded
  (RFC 9118 §6), no name listed twice. ``from_json`` and ``to_der`` apply them;
  ``from_der(..., strict=False)`` skips them to read a certificate someone else issued.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Optional

from cryptography import x509
from pyasn1.codec.der import decoder as der_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import char, namedtype, tag, univ

from ca.errors import ClaimConstraintsError
from ca.numbers.rcd import RCD_CLAIM, RCDI_CLAIM, pinned_constraints, rcdi_problems, same_json

# What pyasn1 may raise on hostile input. PyAsn1Error is its own family, but some inputs escape
# it: a length field larger than sys.maxsize raises OverflowError from the stream reader (found
# by fuzzing; regression test in tests/unit/test_tnauthlist.py). Each is a malformed value to us.
_PARSER_ERRORS = (PyAsn1Error, OverflowError, ValueError, IndexError, TypeError, RecursionError)

# RFC 8226 §8: id-pe-JWTClaimConstraints.
OID_JWT_CLAIM_CONSTRAINTS = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.27")
# RFC 9118 §3: id-pe-eJWTClaimConstraints.
OID_ENHANCED_JWT_CLAIM_CONSTRAINTS = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.33")

# RFC 8225 §5 / RFC 8226 §8: a PASSporT always carries these; constraints never need to list them.
BASELINE_CLAIMS = ("iat", "orig", "dest")

ConstraintsKind = Literal["jwt", "enhanced"]
KINDS: tuple[str, ...] = ("jwt", "enhanced")

_JSON_KEYS = ("mustInclude", "permittedValues", "mustExclude", "enhanced", "rcd", "rcdi")


# --------------------------------------------------------------------------------------------
# ASN.1 (RFC 8226 Appendix A and RFC 9118 Appendix A, both DEFINITIONS EXPLICIT TAGS)
# --------------------------------------------------------------------------------------------
# Mirrors pyasn1_alt_modules.rfc8226 / rfc9118 without value constraints, which are checked by
# ClaimConstraints with messages that name the field. The two SEQUENCEs differ only in the
# [2] mustExclude component (and in the name of the values list: `permitted` vs `values`, which
# does not reach the wire).


def _explicit(number: int) -> tag.Tag:
    return tag.Tag(tag.tagClassContext, tag.tagFormatSimple, number)


class _JWTClaimNames(univ.SequenceOf):
    componentType = char.IA5String()


class _JWTClaimValues(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("claim", char.IA5String()),
        namedtype.NamedType("values", univ.SequenceOf(componentType=char.UTF8String())),
    )


class _JWTClaimValuesList(univ.SequenceOf):
    componentType = _JWTClaimValues()


class _JWTClaimConstraints(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType("mustInclude", _JWTClaimNames().subtype(explicitTag=_explicit(0))),
        namedtype.OptionalNamedType("permittedValues", _JWTClaimValuesList().subtype(explicitTag=_explicit(1))),
    )


class _EnhancedJWTClaimConstraints(univ.Sequence):
    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType("mustInclude", _JWTClaimNames().subtype(explicitTag=_explicit(0))),
        namedtype.OptionalNamedType("permittedValues", _JWTClaimValuesList().subtype(explicitTag=_explicit(1))),
        namedtype.OptionalNamedType("mustExclude", _JWTClaimNames().subtype(explicitTag=_explicit(2))),
    )


# --------------------------------------------------------------------------------------------
# The value type
# --------------------------------------------------------------------------------------------


def _quote(value: str, limit: int = 40) -> str:
    return repr(value if len(value) <= limit else value[: limit - 1] + "…")


def _check_claim_name(name: object, *, field: str) -> str:
    # RFC 8226 §8 / RFC 9118 §3: JWTClaimName ::= IA5String.
    if not isinstance(name, str):
        raise ClaimConstraintsError(f"claim name must be a string (got {type(name).__name__})", field=field)
    if not name:
        raise ClaimConstraintsError("claim name is empty", field=field)
    if not name.isascii():
        raise ClaimConstraintsError(
            f"claim name {_quote(name)} must be ASCII (JWTClaimName is an IA5String)", field=field
        )
    return name


def _names(values: Iterable[str], *, field: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise ClaimConstraintsError(f"{field} must be a list of claim names, not one string", field=field)
    return tuple(_check_claim_name(name, field=f"{field}[{i}]") for i, name in enumerate(values))


@dataclass(frozen=True)
class ClaimConstraints:
    """A JWTClaimConstraints or EnhancedJWTClaimConstraints value.

    ``permitted_values`` is ``((claim, (value, …)), …)`` in wire order. ``enhanced`` selects the
    RFC 9118 extension; it is forced True when ``must_exclude`` is set, because only the enhanced
    form can say it (RFC 9118 §3, §6).
    """

    must_include: tuple[str, ...] = ()
    permitted_values: tuple[tuple[str, tuple[str, ...]], ...] = ()
    must_exclude: tuple[str, ...] = ()
    enhanced: bool = False

    def __post_init__(self) -> None:
        must_include = _names(self.must_include, field="mustInclude")
        must_exclude = _names(self.must_exclude, field="mustExclude")
        permitted: list[tuple[str, tuple[str, ...]]] = []
        if isinstance(self.permitted_values, (str, Mapping)):
            raise ClaimConstraintsError(
                "permitted_values must be a sequence of (claim, values) pairs", field="permittedValues"
            )
        for i, pair in enumerate(self.permitted_values):
            field = f"permittedValues[{i}]"
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ClaimConstraintsError("each permitted value entry must be a (claim, values) pair", field=field)
            claim, values = pair
            claim = _check_claim_name(claim, field=f"{field}.claim")
            if isinstance(values, str) or not isinstance(values, (tuple, list)):
                raise ClaimConstraintsError(
                    f"permitted values of {_quote(claim)} must be a list of strings", field=f"permittedValues.{claim}"
                )
            if not values:
                raise ClaimConstraintsError(
                    f"permitted values of {_quote(claim)} are empty; list at least one value "
                    f"(SIZE (1..MAX), RFC 8226 §8)",
                    field=f"permittedValues.{claim}",
                )
            for j, value in enumerate(values):
                if not isinstance(value, str):
                    raise ClaimConstraintsError(
                        f"permitted value {j} of {_quote(claim)} must be a string (UTF8String), "
                        f"got {type(value).__name__}",
                        field=f"permittedValues.{claim}[{j}]",
                    )
                if not _is_utf8_encodable(value):
                    # JSON "\ud800" escapes give lone surrogates, which have no UTF-8 form.
                    raise ClaimConstraintsError(
                        f"permitted value {j} of {_quote(claim)} is not valid Unicode text (lone surrogate)",
                        field=f"permittedValues.{claim}[{j}]",
                    )
            permitted.append((claim, tuple(values)))
        if not (must_include or permitted or must_exclude):
            raise ClaimConstraintsError(
                "claim constraints need at least one of mustInclude, permittedValues or mustExclude "
                "(RFC 8226 §8, RFC 9118 §3)",
                field="constraints",
            )
        if not isinstance(self.enhanced, bool):
            raise ClaimConstraintsError("enhanced must be true or false", field="enhanced")
        object.__setattr__(self, "must_include", must_include)
        object.__setattr__(self, "must_exclude", must_exclude)
        object.__setattr__(self, "permitted_values", tuple(permitted))
        if must_exclude:
            # RFC 9118 §6: mustExclude exists only in EnhancedJWTClaimConstraints.
            object.__setattr__(self, "enhanced", True)

    # ---- identity -----------------------------------------------------------------------------

    @property
    def kind(self) -> ConstraintsKind:
        """As stored in ``delegations.constraints_kind``."""
        return "enhanced" if self.enhanced else "jwt"

    @property
    def oid(self) -> x509.ObjectIdentifier:
        return OID_ENHANCED_JWT_CLAIM_CONSTRAINTS if self.enhanced else OID_JWT_CLAIM_CONSTRAINTS

    # ---- issuance rules ------------------------------------------------------------------------

    def check_issuable(self) -> None:
        """Raise ClaimConstraintsError if this value must not be written into a certificate."""
        for name in self.must_exclude:
            if name in BASELINE_CLAIMS:
                raise ClaimConstraintsError(
                    f"{_quote(name)} is a baseline PASSporT claim and must not be in mustExclude "
                    f"(RFC 9118 §3: verifiers would ignore the whole extension)",
                    field="mustExclude",
                )
        for name in self.must_include:
            if name in BASELINE_CLAIMS:
                raise ClaimConstraintsError(
                    f"{_quote(name)} is a baseline PASSporT claim, always required; do not list it in "
                    f"mustInclude (RFC 8226 §8)",
                    field="mustInclude",
                )
        both = [name for name in self.must_include if name in self.must_exclude]
        if both:
            raise ClaimConstraintsError(
                f"claim {_quote(both[0])} is in both mustInclude and mustExclude, so no PASSporT could "
                f"ever pass (RFC 9118 §6)",
                field="mustExclude",
            )
        for field, names in (("mustInclude", self.must_include), ("mustExclude", self.must_exclude)):
            duplicate = _first_duplicate(names)
            if duplicate is not None:
                raise ClaimConstraintsError(f"claim {_quote(duplicate)} is listed twice in {field}", field=field)
        duplicate = _first_duplicate(claim for claim, _ in self.permitted_values)
        if duplicate is not None:
            raise ClaimConstraintsError(
                f"claim {_quote(duplicate)} has two permittedValues entries; merge them into one",
                field=f"permittedValues.{duplicate}",
            )
        for claim, values in self.permitted_values:
            duplicate = _first_duplicate(values)
            if duplicate is not None:
                raise ClaimConstraintsError(
                    f"value {_quote(duplicate)} is listed twice for claim {_quote(claim)}",
                    field=f"permittedValues.{claim}",
                )

    # ---- DER ------------------------------------------------------------------------------------

    def to_der(self, *, strict: bool = True) -> bytes:
        """DER of the extension value (the ``extnValue`` content) for ``self.oid``.

        ``strict`` (the default) applies ``check_issuable`` first.
        """
        if strict:
            self.check_issuable()
        asn1 = _EnhancedJWTClaimConstraints() if self.enhanced else _JWTClaimConstraints()
        if self.must_include:
            names = asn1.componentType["mustInclude"].asn1Object.clone()
            names.extend(self.must_include)
            asn1["mustInclude"] = names
        if self.permitted_values:
            value_list = asn1.componentType["permittedValues"].asn1Object.clone()
            for claim, values in self.permitted_values:
                entry = _JWTClaimValues()
                entry["claim"] = claim
                entry["values"].extend(values)
                value_list.append(entry)
            asn1["permittedValues"] = value_list
        if self.must_exclude:
            names = asn1.componentType["mustExclude"].asn1Object.clone()
            names.extend(self.must_exclude)
            asn1["mustExclude"] = names
        return der_encoder.encode(asn1)

    @classmethod
    def from_der(cls, der: bytes, kind: str, *, strict: bool = True) -> ClaimConstraints:
        """Decode the extension value of ``kind`` ("jwt" = RFC 8226 §8, "enhanced" = RFC 9118).

        Strict DER (re-encoding must give the input back). ``strict`` also applies the issuance
        rules; pass ``strict=False`` to read a certificate this authority did not write.
        """
        if kind not in KINDS:
            raise ClaimConstraintsError(f"constraints kind must be 'jwt' or 'enhanced' (got {kind!r})", field="kind")
        name = "EnhancedJWTClaimConstraints" if kind == "enhanced" else "JWTClaimConstraints"
        if not isinstance(der, (bytes, bytearray, memoryview)):
            raise ClaimConstraintsError(f"{name} must be DER bytes (got {type(der).__name__})", field="constraints")
        der = bytes(der)
        spec = _EnhancedJWTClaimConstraints() if kind == "enhanced" else _JWTClaimConstraints()
        try:
            asn1, rest = der_decoder.decode(der, asn1Spec=spec)
        except _PARSER_ERRORS:
            raise ClaimConstraintsError(
                f"not a DER {name}: expected SEQUENCE {{ [0] mustInclude, [1] permittedValues"
                + (", [2] mustExclude" if kind == "enhanced" else "")
                + " } of ASCII claim names and UTF-8 values",
                field="constraints",
            ) from None
        if rest:
            raise ClaimConstraintsError(f"{name} is followed by {len(rest)} trailing byte(s)", field="constraints")

        # SIZE (1..MAX) is checked before the DER comparison: pyasn1's encoder drops an empty
        # optional list, which would otherwise be reported as a BER form.
        def names_of(component: str) -> tuple[str, ...]:
            if not asn1[component].isValue:
                return ()
            if len(asn1[component]) == 0:
                raise ClaimConstraintsError(f"{name} {component} is present but empty (SIZE (1..MAX))", field=component)
            return tuple(str(item) for item in asn1[component])

        must_include = names_of("mustInclude")
        must_exclude = names_of("mustExclude") if kind == "enhanced" else ()
        permitted: list[tuple[str, tuple[str, ...]]] = []
        if asn1["permittedValues"].isValue:
            if len(asn1["permittedValues"]) == 0:
                raise ClaimConstraintsError(
                    f"{name} permittedValues is present but empty (SIZE (1..MAX))", field="permittedValues"
                )
            for item in asn1["permittedValues"]:
                permitted.append((str(item["claim"]), tuple(str(v) for v in item["values"])))
        if der_encoder.encode(asn1) != der:
            raise ClaimConstraintsError(
                f"{name} is BER, not DER (non-minimal lengths or constructed strings)", field="constraints"
            )
        constraints = cls(
            must_include=must_include,
            permitted_values=tuple(permitted),
            must_exclude=must_exclude,
            enhanced=kind == "enhanced",
        )
        if strict:
            constraints.check_issuable()
        return constraints

    # ---- certificates ------------------------------------------------------------------------------

    def to_extension(self) -> x509.UnrecognizedExtension:
        """The one extension to put in an end-entity certificate (non-critical).

        RFC 9118 §6: a certificate MUST NOT carry both JWTClaimConstraints and
        EnhancedJWTClaimConstraints, so the value itself decides which: the enhanced OID when it
        is enhanced (always, if it has mustExclude), otherwise the RFC 8226 one, which more
        verifiers understand.
        """
        return x509.UnrecognizedExtension(self.oid, self.to_der())

    @classmethod
    def from_certificate(cls, certificate: x509.Certificate) -> Optional[ClaimConstraints]:
        """The claim constraints a verifier would apply for ``certificate``, or None.

        Lenient (``strict=False``): this reads a certificate as it exists. A certificate carrying
        both extensions breaks RFC 9118 §6 and is refused.
        """
        found: dict[str, bytes] = {}
        for kind, oid in (("jwt", OID_JWT_CLAIM_CONSTRAINTS), ("enhanced", OID_ENHANCED_JWT_CLAIM_CONSTRAINTS)):
            try:
                extension = certificate.extensions.get_extension_for_oid(oid)
            except x509.ExtensionNotFound:
                continue
            except (x509.DuplicateExtension, ValueError) as error:
                # RFC 5280 §4.2: an extension appears at most once; cryptography refuses the whole list.
                raise ClaimConstraintsError(
                    f"certificate extensions cannot be read: {error}", field="constraints"
                ) from None
            found[kind] = extension.value.value  # type: ignore[attr-defined]
        if len(found) == 2:
            raise ClaimConstraintsError(
                "certificate carries both JWTClaimConstraints and EnhancedJWTClaimConstraints "
                "(RFC 9118 §6: MUST NOT)",
                field="constraints",
            )
        if not found:
            return None
        ((kind, der),) = found.items()
        return cls.from_der(der, kind, strict=False)

    # ---- JSON ---------------------------------------------------------------------------------------

    @classmethod
    def from_json(cls, obj: Any) -> ClaimConstraints:
        """From the ``--constraints FILE`` / admin form JSON (docs/architecture.md)::

            {"mustInclude": [...], "permittedValues": {"claim": [...]}, "mustExclude": [...]}

        An optional ``"enhanced": true`` asks for the RFC 9118 extension without mustExclude.
        ``"rcd": {...}`` (and ``"rcdi": {...}``) pin Rich Call Data (RFC 9795): they add ``rcd``
        (``rcdi``) to mustInclude and their RFC 8785 canonical JSON to permittedValues
        (``ca/numbers/rcd.py``); the other members must not mention those claims then. The
        three other members may be left out when ``rcd`` is given. Issuance rules apply (this is
        input for a delegation). A JSON string is parsed first.
        """
        if isinstance(obj, (str, bytes)):
            try:
                obj = json.loads(obj)
            except ValueError as error:
                raise ClaimConstraintsError(f"claim constraints are not valid JSON: {error}", field="constraints") from None
        if not isinstance(obj, Mapping):
            raise ClaimConstraintsError(
                f"claim constraints must be a JSON object (got {type(obj).__name__})", field="constraints"
            )
        unknown = [key for key in obj if key not in _JSON_KEYS]
        if unknown:
            raise ClaimConstraintsError(
                f"unknown member {unknown[0]!r} in claim constraints; expected "
                + ", ".join(repr(k) for k in _JSON_KEYS),
                field=str(unknown[0]),
            )
        must_include = _json_names(obj, "mustInclude")
        must_exclude = _json_names(obj, "mustExclude")
        permitted_raw = obj.get("permittedValues", {})
        if not isinstance(permitted_raw, Mapping):
            raise ClaimConstraintsError(
                'permittedValues must be an object {"claim": ["value", ...]}', field="permittedValues"
            )
        permitted = []
        for claim, values in permitted_raw.items():
            if not isinstance(values, list):
                raise ClaimConstraintsError(
                    f"permittedValues.{claim} must be a list of strings", field=f"permittedValues.{claim}"
                )
            permitted.append((claim, tuple(values)))
        if "rcd" in obj:
            pinned_include, pinned_values = pinned_constraints(obj["rcd"], obj.get("rcdi"))
            named = [name for name in (*must_include, *(claim for claim, _ in permitted), *must_exclude)
                     if name in (RCD_CLAIM, RCDI_CLAIM)]
            if named:
                raise ClaimConstraintsError(
                    f"claim {named[0]!r} is pinned by the 'rcd' member; do not list it elsewhere", field=named[0])
            must_include = (*must_include, *pinned_include)
            permitted.extend(pinned_values)
        elif "rcdi" in obj:
            raise ClaimConstraintsError("'rcdi' pins the digests of an 'rcd' object; give 'rcd' too", field="rcdi")
        enhanced = obj.get("enhanced", False)
        if not isinstance(enhanced, bool):
            raise ClaimConstraintsError("enhanced must be true or false", field="enhanced")
        constraints = cls(
            must_include=must_include,
            permitted_values=tuple(permitted),
            must_exclude=must_exclude,
            enhanced=enhanced,
        )
        constraints.check_issuable()
        return constraints

    def to_json(self) -> dict[str, Any]:
        """The JSON form; empty components are left out, ``enhanced`` only when it is not implied."""
        obj: dict[str, Any] = {}
        if self.must_include:
            obj["mustInclude"] = list(self.must_include)
        if self.permitted_values:
            obj["permittedValues"] = {claim: list(values) for claim, values in self.permitted_values}
        if self.must_exclude:
            obj["mustExclude"] = list(self.must_exclude)
        elif self.enhanced:
            obj["enhanced"] = True
        return obj

    # ---- verification --------------------------------------------------------------------------------

    def evaluate(self, passport_claims: Mapping[str, Any]) -> list[str]:
        """Violations a verification service would find in a PASSporT payload; [] means it passes.

        RFC 9118 §4 / RFC 8226 §8, in this order: baseline claims present; if a baseline claim is
        in mustExclude the extension is treated as absent (RFC 9118 §3); mustInclude present;
        permittedValues matched (strings exactly, JSON values such as an ``rcd`` object in their
        RFC 8785 canonical form); mustExclude absent. See :func:`evaluate` for ``rcdi``.
        """
        return evaluate(passport_claims, self)

    def describe(self) -> str:
        parts = []
        if self.must_include:
            parts.append("must include " + ", ".join(self.must_include))
        for claim, values in self.permitted_values:
            parts.append(f"{claim} in {{{', '.join(values)}}}")
        if self.must_exclude:
            parts.append("must exclude " + ", ".join(self.must_exclude))
        return "; ".join(parts)


def evaluate(
    passport_claims: Mapping[str, Any],
    constraints: Optional[ClaimConstraints],
    *,
    resources: Optional[Mapping[str, bytes]] = None,
) -> list[str]:
    """RFC 9118 §4 verification of a PASSporT payload against a certificate's constraints.

    ``constraints`` is None when the certificate has no claim-constraint extension; the baseline
    claims are still required (RFC 8226 §8). A permitted value is a UTF8String: a string claim
    matches it exactly, and a claim whose value is JSON (an ``rcd`` object, a list) matches a
    permitted value holding the same JSON, compared in the RFC 8785 canonical form
    (``ca/numbers/rcd.py``), so key order and white space do not matter and every member does.
    An ``rcdi`` claim is checked against the ``rcd`` it protects (RFC 9795): its pointers
    resolve, every URI has a digest, and, for the URIs in ``resources`` (content the verifier
    fetched), the digests match.
    """
    if not isinstance(passport_claims, Mapping):
        return [f"PASSporT payload must be a JSON object (got {type(passport_claims).__name__})"]
    violations = [
        f"PASSporT lacks the baseline claim {name!r} (RFC 8225 §5, RFC 8226 §8)"
        for name in BASELINE_CLAIMS
        if name not in passport_claims
    ]
    if RCDI_CLAIM in passport_claims:
        violations.extend(rcdi_problems(passport_claims.get(RCD_CLAIM), passport_claims[RCDI_CLAIM], resources))
    if constraints is None:
        return violations
    if any(name in BASELINE_CLAIMS for name in constraints.must_exclude):
        # RFC 9118 §3: a baseline claim in mustExclude means the extension is treated as absent.
        return violations
    for name in constraints.must_include:
        if name not in passport_claims:
            violations.append(f"claim {name!r} is required by mustInclude but absent")
    for claim, values in constraints.permitted_values:
        if claim not in passport_claims:
            continue  # RFC 9118 §4: absence is fine unless mustInclude requires the claim
        value = passport_claims[claim]
        allowed = ", ".join(repr(v if len(v) <= 80 else v[:79] + "…") for v in values)
        if isinstance(value, str):
            if value not in values:
                violations.append(f"claim {claim!r} value {_quote(value)} is not one of the permitted values {allowed}")
        elif not any(same_json(value, permitted) for permitted in values):
            violations.append(
                f"claim {claim!r} has a {type(value).__name__} value that equals none of the permitted values "
                f"{allowed} (compared as RFC 8785 canonical JSON){_differing_members(value, values)}"
            )
    for name in constraints.must_exclude:
        if name in passport_claims:
            violations.append(f"claim {name!r} is present but mustExclude forbids it")
    return violations


def _differing_members(value: Any, permitted: tuple[str, ...]) -> str:
    """For an object compared with one permitted object: which members differ, for the person
    reading the violation."""
    if not isinstance(value, Mapping) or len(permitted) != 1:
        return ""
    try:
        expected = json.loads(permitted[0])
    except ValueError:
        return ""
    if not isinstance(expected, Mapping):
        return ""
    differing = sorted(key for key in set(value) | set(expected)
                       if key not in value or key not in expected or not same_json(value[key], json.dumps(expected[key])))
    return f"; differing member(s): {', '.join(differing)}" if differing else ""


def _json_names(obj: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key, [])
    if not isinstance(value, list):
        raise ClaimConstraintsError(f"{key} must be a list of claim names", field=key)
    if key in obj and not value:
        raise ClaimConstraintsError(f"{key} is empty; leave it out or list at least one claim", field=key)
    return tuple(value)


def _is_utf8_encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _first_duplicate(items: Iterable[str]) -> Optional[str]:
    seen: set[str] = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


__all__ = [
    "BASELINE_CLAIMS",
    "ClaimConstraints",
    "OID_ENHANCED_JWT_CLAIM_CONSTRAINTS",
    "OID_JWT_CLAIM_CONSTRAINTS",
    "evaluate",
]
