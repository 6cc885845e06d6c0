"""The schedule of a STAR auto-renewal order (RFC 8739 §3.1.1, §3.5): the accepted
``auto-renewal`` object and the validity window of each of its certificates. Pure date arithmetic:
no database, no clock of its own.

With T the order's ``lifetime``, ``end`` the order's end (its ``end-date``; never later than the
authority token's ``exp``, RFC 9447 §7) and f = 1/2:

::

    nrd[0]    = the first issuance (finalize), or start-date if that is later
    nrd[i+1]  = notAfter of certificate i          (= nrd[i] + T until the end is reached)
    adjust    = max(min(T, lifetime-adjust), ⌈f·T⌉)
    notBefore = nrd[i] − adjust                    (the first: never before start-date)
    notAfter  = min(nrd[i] + T, end)

Certificate i+1 is issued ("published") at its notBefore, so it is valid the moment it appears at
the star-certificate URL, and it appears halfway through the nominal lifetime of certificate i at
the latest (RFC 8739 §3.3: "at the latest halfway"; f = 1/2 is the smallest §3.5 allows). The
order reflects ``adjust`` as its ``lifetime-adjust`` (§3.1.1: the reflected value is the client's
hint for its polling timer; §3.3: "the server might need to increase the auto-renewal
lifetime-adjust value"). nrd[i+1] is read off the current certificate, so the schedule lives in
the certificates table and no counter can drift from it. A certificate that the end would make
shorter than the policy minimum starts earlier instead, and a worker that was down for longer than
a certificate lives resumes at the slot that still covers the present.

**Bounds.** Each certificate obeys the policy and the delegation like any other
(``ca.issuing.issuance``: ``[lifetimes]``, the delegation's maximum lifetime and end). Its whole
validity is T + adjust (:attr:`AutoRenewal.longest_validity`), so that is what must fit under
those caps: ``ca/orders/validity.py`` checks it at newOrder against the policy and at the challenge
against the token and the delegation, with the same rules as an ordinary order's notAfter.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from ca.policy import Policy
from ca.records.store import Order

# RFC 8739 §3.1.1: the members of the "auto-renewal" object (also its stored form, Order.auto_renewal).
START_DATE = "start-date"
END_DATE = "end-date"
LIFETIME = "lifetime"
LIFETIME_ADJUST = "lifetime-adjust"
ALLOW_CERTIFICATE_GET = "allow-certificate-get"

# RFC 8739 §3.5: the server pads notBefore by f·T, 0.5 <= f < 1. One half is the least padding
# that still publishes the next certificate halfway through the current one (§3.3).
PUBLICATION_FRACTION = 0.5


# --------------------------------------------------------------------------------------------
# The auto-renewal object and the schedule (RFC 8739 §3.1.1, §3.5)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AutoRenewal:
    """An accepted ``auto-renewal`` object. Times are aware UTC, whole seconds."""

    end_date: dt.datetime
    lifetime: dt.timedelta  # T, the nominal validity of each certificate
    lifetime_adjust: dt.timedelta = dt.timedelta(0)  # as the client asked ("la")
    start_date: dt.datetime | None = None
    allow_certificate_get: bool = False

    @property
    def adjust(self) -> dt.timedelta:
        """max(adjust_client, adjust_server) of RFC 8739 §3.5, rounded up to whole seconds."""
        lifetime = int(self.lifetime.total_seconds())
        client = min(lifetime, int(self.lifetime_adjust.total_seconds()))
        server = math.ceil(PUBLICATION_FRACTION * lifetime)
        return dt.timedelta(seconds=max(client, server))

    @property
    def longest_validity(self) -> dt.timedelta:
        """notAfter − notBefore of a full certificate: the nominal lifetime plus the adjustment."""
        return self.lifetime + self.adjust

    def end(self, token_expires: dt.datetime | None) -> dt.datetime:
        """The order's end: its end-date, never later than the authority token (RFC 9447 §7)."""
        return self.end_date if token_expires is None else min(self.end_date, token_expires)

    def to_json(self) -> dict[str, Any]:
        """The object the order shows (and stores): ``lifetime-adjust`` is the adjustment applied."""
        obj: dict[str, Any] = {}
        if self.start_date is not None:
            obj[START_DATE] = rfc3339(self.start_date)
        obj[END_DATE] = rfc3339(self.end_date)
        obj[LIFETIME] = int(self.lifetime.total_seconds())
        obj[LIFETIME_ADJUST] = int(self.adjust.total_seconds())
        obj[ALLOW_CERTIFICATE_GET] = self.allow_certificate_get
        return obj

    @classmethod
    def from_json(cls, stored: Mapping[str, Any]) -> "AutoRenewal":
        """Read what :meth:`to_json` stored (``Order.auto_renewal``)."""
        start = stored.get(START_DATE)
        return cls(
            end_date=_parse_stored_time(stored[END_DATE]),
            lifetime=dt.timedelta(seconds=int(stored[LIFETIME])),
            lifetime_adjust=dt.timedelta(seconds=int(stored.get(LIFETIME_ADJUST, 0))),
            start_date=_parse_stored_time(start) if start is not None else None,
            allow_certificate_get=bool(stored.get(ALLOW_CERTIFICATE_GET, False)),
        )


@dataclasses.dataclass(frozen=True)
class Window:
    """The validity of one certificate of a STAR order; it is issued at ``not_before``."""

    nominal: dt.datetime  # nrd[i], the nominal renewal date
    not_before: dt.datetime
    not_after: dt.datetime


def _window(auto: AutoRenewal, nominal: dt.datetime, *, end: dt.datetime, minimum: dt.timedelta) -> Window:
    not_after = min(nominal + auto.lifetime, end)
    not_before = nominal - auto.adjust
    # The last certificate, cut short by the end, starts earlier instead of being shorter than
    # the policy minimum; it never reaches back before the current one (T + adjust >= minimum).
    not_before = min(not_before, not_after - minimum)
    return Window(nominal=nominal, not_before=not_before, not_after=not_after)


def first_window(auto: AutoRenewal, *, now: dt.datetime, end: dt.datetime, minimum: dt.timedelta) -> Window:
    """The first certificate (issued at finalize): nrd[0] is now, or the start-date if later.

    RFC 8739 §3.5: its notBefore "MUST NOT" precede the start-date. ``ca.issuing.issuance`` further keeps
    it within the backdating allowance of now.
    """
    nominal = now.replace(microsecond=0)
    if auto.start_date is not None and auto.start_date > nominal:
        nominal = auto.start_date
    window = _window(auto, nominal, end=end, minimum=minimum)
    if auto.start_date is not None and window.not_before < auto.start_date:
        window = dataclasses.replace(window, not_before=auto.start_date)
    return window


def next_window(
    auto: AutoRenewal, current_not_after: dt.datetime, *, now: dt.datetime, end: dt.datetime, minimum: dt.timedelta
) -> Window | None:
    """The certificate after the one that ends at ``current_not_after``; None when none remains.

    nrd[i+1] is the current certificate's notAfter. A slot that can no longer give a certificate
    of the minimum length from ``now`` on (the worker was down) is skipped for the next one.
    """
    nominal = current_not_after
    while nominal < end:
        window = _window(auto, nominal, end=end, minimum=minimum)
        if window.not_after - max(window.not_before, now) >= minimum:
            return window
        nominal += auto.lifetime
    return None


# --------------------------------------------------------------------------------------------
# Reading an order's schedule
# --------------------------------------------------------------------------------------------


def auto_renewal_of(order: Order) -> AutoRenewal | None:
    return AutoRenewal.from_json(order.auto_renewal) if order.auto_renewal else None


def order_end(order: Order) -> dt.datetime | None:
    """When the STAR order ends: its end-date, capped by its authority token's ``exp``."""
    auto = auto_renewal_of(order)
    if auto is None:
        return None
    token_expires = order.authorizations[0].token_expires if order.authorizations else None
    return auto.end(token_expires)


def schedule_after(order: Order, issued_not_after: dt.datetime, *, now: dt.datetime, policy: Policy) -> dt.datetime | None:
    """``next_renewal_at`` after a certificate ending at ``issued_not_after``: when the next one
    is published (its notBefore), or None when the order has reached its end."""
    auto = auto_renewal_of(order)
    end = order_end(order)
    if auto is None or end is None:
        return None
    window = next_window(auto, issued_not_after, now=now, end=end, minimum=policy.lifetimes.minimum)
    return window.not_before if window is not None else None


# --------------------------------------------------------------------------------------------
# Times as stored in the auto-renewal object (RFC 3339, whole seconds, "Z")
# --------------------------------------------------------------------------------------------


def rfc3339(moment: dt.datetime) -> str:
    # isoformat, not strftime: glibc's %Y writes year 1 as "1", and RFC 3339 §5.6 has four digits.
    return moment.astimezone(dt.timezone.utc).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def _parse_stored_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.timezone.utc)
