"""One set of validity rules for every order, ordinary or STAR.

An order asks for the validity of its certificates in one of two ways: ``notBefore``/``notAfter``
(RFC 8555 §7.4) or an ``auto-renewal`` object (RFC 8739 §3.1.1). Either way it asks for a start,
an end (the last certificate's notAfter) and a longest single certificate, and the same rules
hold for both (:class:`Requested` puts either in those terms):

=======================================  ==========================================================
at newOrder, against the policy          start not backdated beyond ``[lifetimes] backdate`` and early
(:func:`check_order_request`)            enough for a certificate of the minimum lifetime to end by
                                         the issuing CA's notAfter; end later than the start and
                                         now, not after the issuing CA's notAfter; no certificate
                                         shorter than the minimum or longer than the longest
                                         profile; a STAR order also within ``max-duration``
                                         (RFC 8739 §3.2)
at the challenge, against what the       end not after the token's ``exp`` (RFC 9447 §7: no
token and the delegation say             certificate outlives its token) nor the delegation's end;
(:func:`check_within_authority`)         the longest certificate within the delegation's maximum
                                         lifetime and the profile of the token's kind
=======================================  ==========================================================

RFC 8555 §7.4: the server MUST NOT issue a certificate with contents other than those requested,
so a validity is honoured exactly or refused. Failures raise typed errors naming the member:
:class:`~ca.errors.PolicyError` (the policy), :class:`~ca.errors.TokenError` (claim ``exp``) and
:class:`~ca.errors.DelegationError` (the delegation).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from ca.errors import DelegationError, PolicyError, TokenError
from ca.issuing.profiles import DELEGATE_CA, END_ENTITY, Profile
from ca.encoding import rfc3339
from ca.lifecycle.star_schedule import END_DATE, LIFETIME, START_DATE, AutoRenewal, auto_renewal_of
from ca.policy import Policy, format_duration
from ca.records.models_acme import Order
from ca.records.models_authority import Delegation


@dataclasses.dataclass(frozen=True)
class Requested:
    """What an order asks for, in the terms the rules compare. Build with :meth:`explicit`,
    :meth:`star` or :meth:`of_order`."""

    start: dt.datetime | None  # notBefore, or the start-date; None: when it is issued
    end: dt.datetime | None  # notAfter, or the end-date; None: the policy and the token decide
    longest: dt.timedelta | None  # the longest single certificate (None with no end)
    shortest: dt.timedelta | None  # the shortest full certificate
    auto_renewal: AutoRenewal | None = None

    @classmethod
    def explicit(cls, not_before: dt.datetime | None, not_after: dt.datetime | None, *, now: dt.datetime,
                 policy: Policy) -> "Requested":
        """RFC 8555 §7.4 ``notBefore``/``notAfter``: one certificate, backdated when no start is given."""
        if not_after is None:
            return cls(start=not_before, end=None, longest=None, shortest=None)
        start = not_before if not_before is not None else now - policy.lifetimes.backdate
        return cls(start=not_before, end=not_after, longest=not_after - start, shortest=not_after - start)

    @classmethod
    def star(cls, auto: AutoRenewal) -> "Requested":
        """RFC 8739 §3.1.1: certificates of ``lifetime`` T, each valid T + adjust (§3.5), until the end-date."""
        return cls(start=auto.start_date, end=auto.end_date, longest=auto.longest_validity, shortest=auto.lifetime,
                   auto_renewal=auto)

    @classmethod
    def of_order(cls, order: Order, *, now: dt.datetime, policy: Policy) -> "Requested":
        auto = auto_renewal_of(order)
        if auto is not None:
            return cls.star(auto)
        return cls.explicit(order.not_before, order.not_after, now=now, policy=policy)

    # The names a person reads, and the fields errors name.
    @property
    def start_name(self) -> str:
        return "notBefore" if self.auto_renewal is None else f"auto-renewal {START_DATE}"

    @property
    def end_name(self) -> str:
        return "notAfter" if self.auto_renewal is None else f"auto-renewal {END_DATE}"

    @property
    def start_field(self) -> str:
        return "notBefore" if self.auto_renewal is None else f"auto-renewal.{START_DATE}"

    @property
    def end_field(self) -> str:
        return "notAfter" if self.auto_renewal is None else f"auto-renewal.{END_DATE}"

    @property
    def length_field(self) -> str:
        return "notAfter" if self.auto_renewal is None else f"auto-renewal.{LIFETIME}"

    def too_long(self, cap: dt.timedelta, what: str) -> str:
        """The detail of a certificate longer than ``cap`` (``what`` names the cap)."""
        if self.auto_renewal is None:
            return f"requested validity {format_duration(self.longest)} exceeds {what}: at most {format_duration(cap)}"
        auto = self.auto_renewal
        return (
            f"auto-renewal lifetime {format_duration(auto.lifetime)} plus the renewal overlap of "
            f"{format_duration(auto.adjust)} (RFC 8739 §3.5: each certificate is valid from half a lifetime, or the "
            f"lifetime-adjust if longer, before its nominal start) makes certificates valid for "
            f"{format_duration(auto.longest_validity)}, above {what} of {format_duration(cap)}"
        )


def check_order_request(requested: Requested, *, now: dt.datetime, policy: Policy, issuer_not_after: dt.datetime) -> None:
    """newOrder (RFC 8555 §7.4, RFC 8739 §3.1.1): refuse what the policy can never honour.
    Raises PolicyError naming the member."""
    lifetimes = policy.lifetimes
    star = requested.auto_renewal is not None
    max_duration = policy.acme.auto_renewal_max_duration
    if star and max_duration <= dt.timedelta(0):
        raise PolicyError(
            "this authority does not offer STAR auto-renewal (RFC 8739); its directory has no meta 'auto-renewal'",
            field="auto-renewal",
        )
    earliest_start = now - lifetimes.backdate
    if requested.start is not None and requested.start < earliest_start:
        hint = ("omit it to start as soon as the authorization is complete" if star
                else f"certificates are not backdated by more than {format_duration(lifetimes.backdate)}")
        raise PolicyError(f"{requested.start_name} {rfc3339(requested.start)} is in the past; {hint}",
                          field=requested.start_field)
    if requested.start is not None and requested.start > issuer_not_after - lifetimes.minimum:
        # Checked before any arithmetic on the start: a start in year 9999 plus a lifetime
        # overflowed at finalize, after the order was claimed and its token spent.
        raise PolicyError(
            f"{requested.start_name} {rfc3339(requested.start)} is too late: no certificate of the minimum lifetime "
            f"{format_duration(lifetimes.minimum)} starting then ends by the issuing CA's own notAfter "
            f"{rfc3339(issuer_not_after)}",
            field=requested.start_field,
        )
    if requested.end is None:
        return
    start = requested.start if requested.start is not None else now
    if requested.end <= max(start, now):
        raise PolicyError(
            f"{requested.end_name} {rfc3339(requested.end)} must be later than "
            f"{'the start-date' if star else 'notBefore'} and than now",
            field=requested.end_field,
        )
    if star and requested.end - start > max_duration:
        raise PolicyError(
            f"auto-renewal runs for {format_duration(requested.end - start)} from start to end-date; this authority's "
            f"max-duration is {format_duration(max_duration)} (RFC 8739 §3.2)",
            field=requested.end_field,
        )
    if requested.shortest < lifetimes.minimum:
        raise PolicyError(
            f"auto-renewal lifetime {format_duration(requested.shortest)} is below this authority's min-lifetime of "
            f"{format_duration(lifetimes.minimum)} (RFC 8739 §3.2)" if star
            else f"requested validity {format_duration(requested.shortest)} is below the policy minimum of "
            f"{format_duration(lifetimes.minimum)}",
            field=requested.length_field,
        )
    if star and requested.end - start < lifetimes.minimum:
        raise PolicyError(
            f"auto-renewal from start to end-date is {format_duration(requested.end - start)}, shorter than one "
            f"certificate of the minimum lifetime {format_duration(lifetimes.minimum)}",
            field=requested.end_field,
        )
    # Which kind the order is for is known at the challenge (the token's "ca"); here the longer
    # of the two profiles bounds it.
    longest = max(lifetimes.end_entity, lifetimes.delegate_ca)
    if requested.longest > longest:
        raise PolicyError(requested.too_long(longest, "the policy maximum"), field=requested.length_field)
    if requested.end > issuer_not_after:
        raise PolicyError(
            f"{requested.end_name} {rfc3339(requested.end)} is after the issuing CA's own notAfter "
            f"{rfc3339(issuer_not_after)}",
            field=requested.end_field,
        )


def check_within_authority(
    requested: Requested,
    *,
    token_expires: dt.datetime,
    token_ca: bool,
    delegation: Delegation,
    policy: Policy,
) -> None:
    """The challenge: the order fits the authority token, the delegation and the certificate kind.

    RFC 9447 §7: a certificate SHOULD NOT expire later than the authority token; renewals are
    certificates too, so a STAR order's end-date may not either. With no requested end the
    certificate is simply cut at the token's ``exp`` at finalize. Raises TokenError (claim
    ``exp``), DelegationError (the delegation's end and maximum lifetime) or PolicyError (the
    profile's maximum lifetime).
    """
    if requested.end is None:
        return
    if requested.end > token_expires:
        raise TokenError(
            f"the order's {requested.end_name} {rfc3339(requested.end)} is after the authority token's 'exp' "
            f"{rfc3339(token_expires)}; a certificate may not outlive its token (RFC 9447 §7)",
            claim="exp",
        )
    if delegation.not_after is not None and requested.end > delegation.not_after:
        raise DelegationError(
            f"the order's {requested.end_name} {rfc3339(requested.end)} is after delegation {delegation.id} ends "
            f"({rfc3339(delegation.not_after)})",
            field="delegation",
        )
    delegated = dt.timedelta(seconds=delegation.max_lifetime_seconds)
    if requested.longest > delegated:
        raise DelegationError(
            requested.too_long(delegated, f"the maximum lifetime of delegation {delegation.id}"), field="delegation"
        )
    profile = Profile.for_name(DELEGATE_CA if token_ca else END_ENTITY, policy)
    if requested.longest > profile.max_lifetime:
        raise PolicyError(
            requested.too_long(profile.max_lifetime, f"the policy maximum for {profile.name} certificates"),
            field=requested.length_field,
        )
