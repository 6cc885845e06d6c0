"""RFC 8739 §3.5: notBefore and notAfter of the certificates of a STAR order (ca.lifecycle.renewal's schedule).

"notAfter = min(nrd[i] + T, end); notBefore = nrd[i] - max(adjust_client, adjust_server)", with
adjust_client = min(T, lifetime-adjust) and adjust_server = f·T, 0.5 <= f < 1 (this server: 0.5).
"""

from __future__ import annotations

import datetime as dt

import pytest

from ca.lifecycle.star_schedule import AutoRenewal, Window, first_window, next_window

MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
MINIMUM = dt.timedelta(minutes=5)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.timezone.utc)


def schedule(auto: AutoRenewal, *, issued_at: dt.datetime, minimum: dt.timedelta = MINIMUM) -> list[tuple[dt.datetime, dt.datetime]]:
    """Every certificate of the order, each issued at its notBefore (as the worker does)."""
    window: Window | None = first_window(auto, now=issued_at, end=auto.end_date, minimum=minimum)
    windows = []
    while window is not None:
        windows.append((window.not_before, window.not_after))
        window = next_window(auto, window.not_after, now=window.not_before, end=auto.end_date, minimum=minimum)
    return windows


def test_s3_5_1_the_rfc_example_gives_the_rfc_table():
    """RFC 8739 §3.5.1: start 2016-01-10, end 2016-01-20, lifetime 4 days, lifetime-adjust 3 days,
    f = 0.5: "The amount of time that needs to be subtracted from each nominal renewal date is 3
    days", and the table lists three certificates."""
    auto = AutoRenewal(start_date=utc(2016, 1, 10), end_date=utc(2016, 1, 20), lifetime=4 * DAY,
                       lifetime_adjust=3 * DAY)
    assert auto.adjust == 3 * DAY
    assert schedule(auto, issued_at=utc(2016, 1, 9, 12)) == [
        (utc(2016, 1, 10), utc(2016, 1, 14)),
        (utc(2016, 1, 11), utc(2016, 1, 18)),
        (utc(2016, 1, 15), utc(2016, 1, 20)),
    ]


def test_s3_5_the_server_adjustment_is_at_least_half_a_lifetime():
    """adjust_server = f·T with f = 0.5: without a lifetime-adjust each certificate is valid from
    half a lifetime before its nominal renewal date, and published then (§3.5: "The value of the
    notBefore is also the time at which the client should expect the new certificate")."""
    auto = AutoRenewal(end_date=utc(2030, 1, 1, 4), lifetime=HOUR)
    assert auto.adjust == 30 * MINUTE
    assert schedule(auto, issued_at=utc(2030, 1, 1)) == [
        # The first is issued at once; ca.issuing.issuance moves its notBefore up to the backdating
        # allowance (60 s before the issuance), never further back.
        (utc(2029, 12, 31, 23, 30), utc(2030, 1, 1, 1)),
        (utc(2030, 1, 1, 0, 30), utc(2030, 1, 1, 2)),
        (utc(2030, 1, 1, 1, 30), utc(2030, 1, 1, 3)),
        (utc(2030, 1, 1, 2, 30), utc(2030, 1, 1, 4)),
    ]


def test_s3_5_each_certificate_is_published_halfway_through_the_previous_one_at_the_latest():
    """§3.3: "the next certificate MUST be made available ... at the latest halfway through the
    lifetime of the currently active certificate"; its notBefore (when it is published) lies in
    the first half of the current certificate's nominal period."""
    auto = AutoRenewal(end_date=utc(2030, 1, 2), lifetime=HOUR)
    windows = schedule(auto, issued_at=utc(2030, 1, 1))
    assert len(windows) == 24
    for (_nb, current_end), (next_start, _na) in zip(windows, windows[1:]):
        nominal_start = current_end - auto.lifetime
        assert next_start <= nominal_start + auto.lifetime / 2
        assert next_start < current_end  # valid when published: no gap


def test_s3_5_first_certificate_never_starts_before_the_start_date():
    """§3.5: "the ACME server MUST NOT set the notBefore of the first STAR certificate to a date
    prior to the auto-renewal start-date"."""
    start = utc(2030, 1, 1, 6)
    auto = AutoRenewal(start_date=start, end_date=utc(2030, 1, 1, 12), lifetime=2 * HOUR)
    first = first_window(auto, now=utc(2030, 1, 1), end=auto.end_date, minimum=MINIMUM)
    assert (first.nominal, first.not_before, first.not_after) == (start, start, start + 2 * HOUR)


def test_s3_5_client_adjustment_longer_than_the_lifetime_counts_as_the_lifetime():
    """adjust_client = min(T, lifetime-adjust)."""
    auto = AutoRenewal(end_date=utc(2030, 1, 2), lifetime=HOUR, lifetime_adjust=5 * HOUR)
    assert auto.adjust == HOUR
    assert auto.longest_validity == 2 * HOUR


def test_s3_5_an_odd_lifetime_rounds_the_adjustment_up_to_whole_seconds():
    auto = AutoRenewal(end_date=utc(2030, 1, 2), lifetime=dt.timedelta(seconds=301))
    assert auto.adjust == dt.timedelta(seconds=151)


def test_s3_5_the_reflected_lifetime_adjust_is_the_adjustment_applied():
    """§3.1.1: the reflected lifetime-adjust is the client's hint for its polling timer; §3.3: the
    server "might need to increase the auto-renewal lifetime-adjust value"."""
    auto = AutoRenewal(end_date=utc(2030, 1, 2), lifetime=HOUR, lifetime_adjust=MINUTE)
    shown = auto.to_json()
    assert shown["lifetime-adjust"] == 1800
    assert AutoRenewal.from_json(shown).adjust == auto.adjust


def test_s3_5_no_certificate_ends_after_the_end_date():
    """§3.3: "The server MUST NOT issue any additional certificates for this Order beyond its
    auto-renewal end-date"."""
    auto = AutoRenewal(end_date=utc(2030, 1, 1, 2, 20), lifetime=HOUR)
    windows = schedule(auto, issued_at=utc(2030, 1, 1))
    assert windows[-1][1] == auto.end_date
    assert all(not_after <= auto.end_date for _nb, not_after in windows)


def test_s3_5_a_last_certificate_cut_short_by_the_end_still_lives_the_policy_minimum():
    """The end leaves 1 minute after the last nominal renewal date: that certificate starts
    earlier rather than living less than the minimum lifetime."""
    auto = AutoRenewal(end_date=utc(2030, 1, 1, 0, 11), lifetime=5 * MINUTE)
    windows = schedule(auto, issued_at=utc(2030, 1, 1))
    assert windows[-1] == (utc(2030, 1, 1, 0, 6), utc(2030, 1, 1, 0, 11))
    assert all(not_after - not_before >= MINIMUM for not_before, not_after in windows)


def test_s3_5_a_worker_that_was_down_resumes_at_the_slot_covering_now():
    """Nominal renewal dates stay multiples of T from the first issuance; missed slots whose
    certificate would already be over (or shorter than the minimum) are skipped."""
    auto = AutoRenewal(end_date=utc(2030, 1, 2), lifetime=HOUR)
    window = next_window(auto, utc(2030, 1, 1, 1), now=utc(2030, 1, 1, 5, 10), end=auto.end_date, minimum=MINIMUM)
    assert (window.nominal, window.not_before, window.not_after) == (
        utc(2030, 1, 1, 5), utc(2030, 1, 1, 4, 30), utc(2030, 1, 1, 6))


@pytest.mark.parametrize("now", [utc(2030, 1, 1, 3, 56), utc(2030, 1, 1, 4)])
def test_s3_5_nothing_remains_when_the_end_is_too_close(now):
    auto = AutoRenewal(end_date=utc(2030, 1, 1, 4), lifetime=HOUR)
    assert next_window(auto, utc(2030, 1, 1, 3), now=now, end=auto.end_date, minimum=MINIMUM) is None


def test_rfc9447_s7_the_token_expiry_ends_the_order_when_earlier():
    """RFC 9447 §7: no certificate may outlive the authority token."""
    auto = AutoRenewal(end_date=utc(2030, 1, 2), lifetime=HOUR)
    token_expires = utc(2030, 1, 1, 3)
    assert auto.end(token_expires) == token_expires
    assert auto.end(None) == auto.end_date
