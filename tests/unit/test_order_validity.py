"""One set of validity rules for ordinary and STAR orders (ca/orders/validity.py): the same rule
refuses the same thing with the same error class, whichever way the order asked for its validity."""

from __future__ import annotations

import datetime as dt

import pytest

from ca.errors import DelegationError, PolicyError, TokenError
from ca.lifecycle.star_schedule import AutoRenewal
from ca.orders.validity import Requested, check_order_request, check_within_authority
from ca.policy import Policy
from ca.records.models_authority import Delegation

NOW = dt.datetime(2026, 6, 1, 9, 30, tzinfo=dt.timezone.utc)
HOUR = dt.timedelta(hours=1)
POLICY = Policy.default()
ISSUER_NOT_AFTER = NOW + dt.timedelta(days=365)


def ordinary(hours: float) -> Requested:
    return Requested.explicit(NOW, NOW + hours * HOUR, now=NOW, policy=POLICY)


def star(hours: float, lifetime: dt.timedelta = HOUR) -> Requested:
    """T = ``lifetime`` (each certificate valid T + T/2), ending ``hours`` from now."""
    return Requested.star(AutoRenewal(end_date=NOW + hours * HOUR, lifetime=lifetime))


def delegation(*, ends_in: dt.timedelta | None = None, max_lifetime: dt.timedelta = 30 * 24 * HOUR) -> Delegation:
    return Delegation(id="d1", not_after=NOW + ends_in if ends_in is not None else None,
                      max_lifetime_seconds=int(max_lifetime.total_seconds()))


def within(requested: Requested, *, token_expires: dt.datetime, token_ca: bool = False, **kwargs) -> None:
    check_within_authority(requested, token_expires=token_expires, token_ca=token_ca, delegation=delegation(**kwargs),
                           policy=POLICY)


@pytest.mark.parametrize("requested", [ordinary(3), star(3)], ids=["notAfter", "auto-renewal"])
def test_rfc9447_s7_no_certificate_outlives_the_token(requested):
    """RFC 9447 §7: "SHOULD NOT issue certificates that expire later than the token"."""
    with pytest.raises(TokenError, match="is after the authority token's 'exp'") as caught:
        within(requested, token_expires=NOW + 2 * HOUR)
    assert caught.value.claim == "exp"


@pytest.mark.parametrize("requested", [ordinary(3), star(3)], ids=["notAfter", "auto-renewal"])
def test_no_certificate_outlives_the_delegation(requested):
    with pytest.raises(DelegationError, match="is after delegation d1 ends"):
        within(requested, token_expires=NOW + 6 * HOUR, ends_in=2 * HOUR)


@pytest.mark.parametrize(
    "requested, longest",
    [(ordinary(2), "2h"), (star(4, lifetime=80 * dt.timedelta(minutes=1)), "2h")],
    ids=["notAfter", "auto-renewal"],
)
def test_the_longest_certificate_fits_the_delegation_maximum(requested, longest):
    with pytest.raises(DelegationError, match="maximum lifetime of delegation d1") as caught:
        within(requested, token_expires=NOW + 6 * HOUR, max_lifetime=HOUR)
    assert longest in caught.value.detail


@pytest.mark.parametrize("requested", [ordinary(30), star(40, lifetime=20 * HOUR)], ids=["notAfter", "auto-renewal"])
def test_the_longest_certificate_fits_the_profile_of_the_tokens_kind(requested):
    """End-entity certificates live at most a day under the default policy; a delegate CA 30 days."""
    with pytest.raises(PolicyError, match="the policy maximum for end-entity certificates"):
        within(requested, token_expires=NOW + 48 * HOUR)
    within(requested, token_expires=NOW + 48 * HOUR, token_ca=True)


@pytest.mark.parametrize(
    "requested, field",
    [
        (Requested.explicit(NOW - HOUR, None, now=NOW, policy=POLICY), "notBefore"),
        (Requested.star(AutoRenewal(end_date=NOW + 3 * HOUR, lifetime=HOUR, start_date=NOW - HOUR)),
         "auto-renewal.start-date"),
    ],
    ids=["notBefore", "start-date"],
)
def test_new_order_refuses_a_start_backdated_beyond_the_policy(requested, field):
    with pytest.raises(PolicyError, match="is in the past") as caught:
        check_order_request(requested, now=NOW, policy=POLICY, issuer_not_after=ISSUER_NOT_AFTER)
    assert caught.value.field == field


@pytest.mark.parametrize("requested", [ordinary(25), star(25, lifetime=HOUR)],
                         ids=["notAfter", "auto-renewal"])
def test_new_order_refuses_an_end_after_the_issuing_ca(requested):
    with pytest.raises(PolicyError, match="is after the issuing CA's own notAfter"):
        check_order_request(requested, now=NOW, policy=POLICY, issuer_not_after=NOW + 24 * HOUR)
