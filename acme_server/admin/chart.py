"""The dashboard's activity chart: certificates issued and revoked per day, as SVG geometry.

Drawn on the server so the page needs no script and no outside library: the template turns a
:class:`Chart` into ``<rect>`` and ``<text>`` elements, and each bar carries a ``<title>`` that
browsers show as a tooltip and screen readers read. The same numbers are in a table below the
chart for anyone who cannot see it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from ca.records.overview import DayCount

WIDTH = 1000
HEIGHT = 230
TICKS = 4  # gridlines above zero
LEFT = 40  # room for the y-axis labels
RIGHT = 8
TOP = 12
BOTTOM = 28  # room for the date labels
GAP_RATIO = 0.25  # the space between two days, as a share of one day's slot


@dataclasses.dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: int
    title: str


@dataclasses.dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclasses.dataclass(frozen=True)
class Chart:
    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: int
    issued: tuple[Bar, ...]
    revoked: tuple[Bar, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    total_issued: int
    total_revoked: int
    maximum: int

    @property
    def summary(self) -> str:
        """The chart in one sentence, for its accessible name."""
        days = len(self.issued)
        return (f"Certificates issued and revoked per day over the last {days} days: "
                f"{self.total_issued} issued, {self.total_revoked} revoked, at most {self.maximum} on one day.")


def tick_step(maximum: int, ticks: int = 4) -> int:
    """The smallest of 1, 2, 5 × 10^k whose ``ticks`` multiples reach ``maximum`` (whole numbers
    on every gridline)."""
    needed = max(1, math.ceil(maximum / ticks))
    magnitude = 10 ** int(math.floor(math.log10(needed)))
    for step in (1, 2, 5, 10):
        if step * magnitude >= needed:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def activity_chart(days: Sequence[DayCount]) -> Chart:
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    maximum = max((max(d.issued, d.revoked) for d in days), default=0)
    step = tick_step(maximum, TICKS)
    top_value = step * TICKS
    slot = plot_width / max(len(days), 1)
    bar_width = slot * (1 - GAP_RATIO) / 2  # issued and revoked side by side

    def bar(index: int, value: int, offset: int, what: str, day: DayCount) -> Bar:
        height = plot_height * value / top_value
        x = LEFT + index * slot + slot * GAP_RATIO / 2 + offset * bar_width
        plural = "" if value == 1 else "s"
        return Bar(round(x, 2), round(TOP + plot_height - height, 2), round(bar_width, 2), round(height, 2), value,
                   f"{day.day.isoformat()}: {value} certificate{plural} {what}")

    issued = tuple(bar(i, d.issued, 0, "issued", d) for i, d in enumerate(days))
    revoked = tuple(bar(i, d.revoked, 1, "revoked", d) for i, d in enumerate(days))
    y_ticks = tuple(
        Tick(round(TOP + plot_height - plot_height * index / TICKS, 2), str(step * index)) for index in range(TICKS + 1)
    )
    # A date label every week, counted back from today (the last bar), so today is labelled.
    x_ticks = tuple(
        Tick(round(LEFT + i * slot + slot / 2, 2), d.day.strftime("%b %d"))
        for i, d in enumerate(days)
        if (len(days) - 1 - i) % 7 == 0
    )
    return Chart(
        width=WIDTH, height=HEIGHT, plot_left=LEFT, plot_right=WIDTH - RIGHT, plot_top=TOP,
        plot_bottom=TOP + plot_height, issued=issued, revoked=revoked, y_ticks=y_ticks, x_ticks=x_ticks,
        total_issued=sum(d.issued for d in days), total_revoked=sum(d.revoked for d in days), maximum=maximum,
    )
