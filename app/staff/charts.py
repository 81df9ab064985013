"""Geometry for the dashboard's SVG charts; templates/staff/_charts/ draws them.

The charts have no viewBox. Horizontal positions are percentages of the chart's width and
vertical ones are pixels, so the bars stretch to fit a phone or a desktop while the text
keeps its real size instead of shrinking with the drawing.
"""

from dataclasses import dataclass
from typing import ClassVar

# Column chart: room for the value labels above the plot and the two-line axis labels below.
COLUMN_TOP = 28
COLUMN_PLOT = 168
COLUMN_AXIS = 44
COLUMN_FILL = 0.62  # share of its slot a column fills
# Bar chart: one row is a label line with the value at the right, then the bar.
ROW_HEIGHT = 46
ROW_TEXT_Y = 16
ROW_BAR_Y = 23
ROW_BAR_HEIGHT = 14
LABEL_CHARACTERS = 34  # what fits beside the value at 12px on a 390px-wide phone


@dataclass(frozen=True)
class Column:
    label: str
    axis: tuple[str, ...]
    value: int
    x: float
    width: float
    centre: float
    y: float
    height: float
    kind: str

    @property
    def value_y(self):
        return round(self.y - 8, 1)

    @property
    def value_text(self):
        """Short enough to sit over a column on a phone: 1234 becomes 1.2k."""
        if self.value < 1000:
            return str(self.value)
        return f"{self.value / 1000:.1f}".removesuffix(".0") + "k"


@dataclass(frozen=True)
class Bar:
    label: str
    short_label: str
    value: int
    width: float
    top: float
    kind: str

    @property
    def value_text(self):
        return f"{self.value:,}"

    @property
    def text_y(self):
        return self.top + ROW_TEXT_Y

    @property
    def bar_y(self):
        return self.top + ROW_BAR_Y


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    description: str
    headings: tuple[str, str]
    items: list


@dataclass(frozen=True)
class ColumnChart(Chart):
    baseline: ClassVar[int] = COLUMN_TOP + COLUMN_PLOT
    height: ClassVar[int] = COLUMN_TOP + COLUMN_PLOT + COLUMN_AXIS
    axis_y: ClassVar[int] = COLUMN_TOP + COLUMN_PLOT + 18
    axis_line_height: ClassVar[int] = 16


@dataclass(frozen=True)
class BarChart(Chart):
    bar_height: ClassVar[int] = ROW_BAR_HEIGHT

    @property
    def height(self):
        return len(self.items) * ROW_HEIGHT


@dataclass(frozen=True)
class Point:
    """One value to draw: its full label, the short lines under a column, and a style."""

    label: str
    value: int
    axis: tuple[str, ...] = ()
    kind: str = "value"


def scale(value, largest):
    return value / largest if largest else 0


def column_chart(chart_id, title, description, headings, points):
    slot = 100 / len(points)
    largest = max(point.value for point in points)
    baseline = ColumnChart.baseline
    columns = []
    for index, point in enumerate(points):
        height = COLUMN_PLOT * scale(point.value, largest)
        columns.append(
            Column(
                label=point.label,
                axis=point.axis,
                value=point.value,
                x=round(slot * (index + (1 - COLUMN_FILL) / 2), 3),
                width=round(slot * COLUMN_FILL, 3),
                centre=round(slot * (index + 0.5), 3),
                y=round(baseline - height, 1),
                height=round(height, 1),
                kind=point.kind,
            )
        )
    return ColumnChart(chart_id, title, description, headings, columns)


def bar_chart(chart_id, title, description, headings, points):
    largest = max((point.value for point in points), default=0)
    bars = [
        Bar(
            label=point.label,
            short_label=shorten(point.label),
            value=point.value,
            width=round(100 * scale(point.value, largest), 3),
            top=index * ROW_HEIGHT,
            kind=point.kind,
        )
        for index, point in enumerate(points)
    ]
    return BarChart(chart_id, title, description, headings, bars)


def shorten(label, limit=LABEL_CHARACTERS):
    return label if len(label) <= limit else label[: limit - 1] + "…"
