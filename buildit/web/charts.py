"""Charts of the dashboard as geometry (pure functions); templates draw them as SVG.

A chart is data (rectangles, labels, a legend and the same numbers as a table for
screen readers): the template renders it with autoescaping, so no text from the
database reaches the page unescaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from buildit.web.formatting import duration


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    cls: str
    title: str


@dataclass(frozen=True)
class Label:
    x: float
    y: float
    text: str
    anchor: str = "middle"
    cls: str = "axis"


@dataclass(frozen=True)
class Chart:
    title: str
    width: int
    height: int
    rects: list[Rect] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    grid: list[float] = field(default_factory=list)  # y of horizontal grid lines
    legend: list[tuple[str, str]] = field(default_factory=list)  # (css class, text)
    table_head: list[str] = field(default_factory=list)
    table_rows: list[list[str]] = field(default_factory=list)
    empty: bool = False


def arch_class(arch: str, archs: Sequence[str]) -> str:
    """A colour class per arch, stable in the configured order."""
    order = [*archs, "noarch"]
    index = order.index(arch) if arch in order else len(order) + sum(map(ord, arch))
    return f"series{index % 8}"


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is >= value (>= 1)."""
    if value <= 1:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)  # pragma: no cover


def last_days(today: date, count: int) -> list[date]:
    return [today - timedelta(days=count - 1 - i) for i in range(count)]


def daily_chart(days: Sequence[date], counts: Sequence[tuple[date, str, int]],
                archs: Sequence[str]) -> Chart:
    """Stacked bars: jobs finished per day, one colour per arch."""
    width, height, left, bottom, top = 420, 200, 30, 24, 8
    per_day: dict[date, dict[str, int]] = {d: {} for d in days}
    seen: list[str] = []
    for day, arch, n in counts:
        if day in per_day and n > 0:
            per_day[day][arch] = per_day[day].get(arch, 0) + n
            if arch not in seen:
                seen.append(arch)
    order = [a for a in [*archs, "noarch"] if a in seen] + sorted(
        a for a in seen if a not in archs and a != "noarch")
    peak = max((sum(v.values()) for v in per_day.values()), default=0)
    ymax = nice_ceiling(peak)
    plot_h = height - bottom - top
    slot = (width - left) / max(len(days), 1)
    chart = Chart(title="Jobs finished per day", width=width, height=height,
                  empty=peak == 0)
    for i in range(5):
        value = ymax * i / 4
        y = top + plot_h - plot_h * i / 4
        chart.grid.append(y)
        chart.labels.append(Label(left - 6, y + 4, f"{value:g}", anchor="end"))
    for i, day in enumerate(days):
        x = left + i * slot + slot * 0.15
        y = top + plot_h
        for arch in order:
            n = per_day[day].get(arch, 0)
            if not n:
                continue
            h = plot_h * n / ymax
            y -= h
            chart.rects.append(Rect(round(x, 1), round(y, 1), round(slot * 0.7, 1),
                                    round(h, 1), arch_class(arch, archs),
                                    f"{day.isoformat()}: {n} {arch}"))
        if i % 2 == len(days) % 2 or len(days) <= 7:
            chart.labels.append(Label(round(x + slot * 0.35, 1), height - 10,
                                      f"{day.month}/{day.day}"))
    chart.legend.extend((arch_class(a, archs), a) for a in order)
    chart.table_head.extend(["day", *order, "total"])
    for day in days:
        row = per_day[day]
        chart.table_rows.append([day.isoformat(), *(str(row.get(a, 0)) for a in order),
                                 str(sum(row.values()))])
    return chart


def durations_chart(rows: Sequence[tuple[str, int, float, float]],
                    archs: Sequence[str]) -> Chart:
    """Horizontal bars per arch: median (solid) within the 90th percentile (light)."""
    label_w, right, row_h = 72, 128, 28
    width = 420
    height = max(len(rows), 1) * row_h + 10
    longest = max((p90 for _, _, _, p90 in rows), default=0.0)
    scale = (width - label_w - right) / longest if longest > 0 else 0.0
    chart = Chart(title="Build time of successful jobs", width=width, height=height,
                  empty=not rows)
    for i, (arch, builds, median, p90) in enumerate(rows):
        y = 5 + i * row_h
        cls = arch_class(arch, archs)
        chart.rects.append(Rect(label_w, y + 4, round(max(p90 * scale, 1), 1), row_h - 10,
                                f"{cls} faint", f"{arch}: 90% of builds within {duration(p90)}"))
        chart.rects.append(Rect(label_w, y + 4, round(max(median * scale, 1), 1), row_h - 10,
                                cls, f"{arch}: median {duration(median)}"))
        chart.labels.append(Label(label_w - 8, y + row_h / 2 + 4, arch, anchor="end",
                                  cls="axis strong"))
        chart.labels.append(Label(round(label_w + max(p90 * scale, 1) + 6, 1),
                                  y + row_h / 2 + 4,
                                  f"{duration(median)} / {duration(p90)} ({builds})",
                                  anchor="start"))
    chart.legend.extend([("swatch-solid", "median"), ("swatch-faint", "90th percentile")])
    chart.table_head.extend(["arch", "builds", "median", "90th percentile"])
    for arch, builds, median, p90 in rows:
        chart.table_rows.append([arch, str(builds), duration(median), duration(p90)])
    return chart
