"""Views: what a topic's pane shows, and the shape of the data each kind reads.

A topic declares its panels as :class:`View` records; ``tui/`` maps each kind to one
widget, so a topic made of known kinds shows up in the app untouched, and a new kind is
one entry in :data:`VIEW_KINDS`, one TypedDict here and one widget in ``tui/widgets/``.

The data of a view lives in ``Frame.views[source]`` (view-only, never written to a file)
or ``Frame.arrays[source]`` (written to JSONL); trace views and history-fed histograms
read scalars from the frame history instead. :func:`problems` checks one view against one
frame; the contract suite (tests/test_topic_contract.py) runs it on every topic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, NotRequired, Sequence, TypedDict

# View kinds the TUI knows. A new kind is one new widget in tui/widgets/.
VIEW_KINDS = ("lattice", "histogram", "trace", "heatmap", "table", "plot", "bars")

XY = tuple[Sequence[float], Sequence[float]]
"""A curve: x values and y values of the same length."""

Cell = float | int | str | None | tuple[float, float]
"""A table cell: a number, ``None`` (no value), a ``(value, standard error)`` pair, or a
short text label (a row's name). Numbers are never pre-formatted: the UI formats them, so
its digits, ASCII mode and width rules apply to every table alike."""

LatticeData = Sequence[Sequence[int]]
"""lattice: a 2-D array of spins (+1/-1 or 0/1), already downsampled to what a
terminal can show."""


class HeatmapField(TypedDict):
    """heatmap: a 2-D float array ``z`` (rows top to bottom) over ``extent``
    (x0, x1, y0, y1). A bare 2-D array is accepted too."""

    z: Sequence[Sequence[float]]
    extent: NotRequired[tuple[float, float, float, float]]


HeatmapData = Sequence[Sequence[float]] | HeatmapField


class HistogramData(TypedDict):
    """histogram (source-fed): ``counts[i]`` in the bin ``[edges[i], edges[i+1])``,
    with optional curves drawn over the bars (an exact density)."""

    edges: Sequence[float]
    counts: Sequence[float]
    lines: NotRequired[Mapping[str, XY]]


class PlotData(TypedDict, total=False):
    """plot: either ``x`` with ``series`` {name: ys}, or ``lines`` {name: (x, y)};
    ``points`` {name: (x, y)} are drawn as a scatter under the lines; ``note`` is shown
    when nothing is drawn."""

    x: Sequence[float]
    series: Mapping[str, Sequence[float]]
    lines: Mapping[str, XY]
    points: Mapping[str, XY]
    xlabel: str
    ylabel: str
    note: str


class TableData(TypedDict):
    """table: column names and rows of :data:`Cell`."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Cell]]


class BarsData(TypedDict):
    """bars: one value per label."""

    labels: Sequence[str]
    values: Sequence[float]


# The data each source-fed kind reads (trace views read scalars, not a source).
DATA: dict[str, Any] = {
    "lattice": LatticeData,
    "heatmap": HeatmapData,
    "histogram": HistogramData,
    "plot": PlotData,
    "table": TableData,
    "bars": BarsData,
}


@dataclass(frozen=True)
class View:
    """One panel of a topic's pane.

    kind     one of :data:`VIEW_KINDS`.
    title    shown above the panel.
    source   key in ``Frame.views`` (or ``Frame.arrays``) holding the data, for
             lattice / heatmap / table / plot / bars and array-fed histograms; its shape
             is the kind's entry in :data:`DATA`.
    series   for trace: scalar names drawn over the frame history; for a history-fed
             histogram: the one scalar whose recent values are binned.
    reference scalar names drawn as reference lines on a trace (e.g. the exact value);
             a reference whose value is None or missing is shown as "no exact value".
    x        for trace: the scalar used as abscissa (default: the step).
    options  free-form hints (``logy``, ``ylabel``, ``bins``, ``width`` ...).
    """

    kind: str
    title: str
    source: str | None = None
    series: tuple[str, ...] = ()
    reference: tuple[str, ...] = ()
    x: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in VIEW_KINDS:
            raise ValueError(f"unknown view kind {self.kind!r}; known: {', '.join(VIEW_KINDS)}")


# -- checking a frame against a view ----------------------------------------------------
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) or _is_numpy_number(v)


def _is_numpy_number(v: Any) -> bool:
    return type(v).__module__ == "numpy" and hasattr(v, "dtype") and getattr(v, "ndim", 1) == 0


def _looks_formatted(text: str) -> bool:
    """A string that is a number written out (``"1.42"``, ``"0.5 +/- 0.1"``, ``"—"``)."""
    s = text.strip()
    if s in ("", "-", "—", "–", "n/a", "nan"):
        return True
    if "+/-" in s or "±" in s:
        return True
    try:
        float(s)
    except ValueError:
        return False
    return True


def _rows_of(value: Any) -> int | None:
    try:
        return len(value)
    except TypeError:
        return None


def _cell_problem(cell: Any) -> str | None:
    if cell is None or _is_number(cell):
        return None
    if isinstance(cell, (tuple, list)):
        if len(cell) == 2 and all(c is None or _is_number(c) for c in cell):
            return None
        return f"cell {cell!r} is neither a number nor a (value, stderr) pair"
    if isinstance(cell, str):
        if _looks_formatted(cell):
            return f"cell {cell!r} is a number written as text (give the number; the UI formats it)"
        return None
    return f"cell {cell!r} has type {type(cell).__name__}"


def _data_problems(kind: str, data: Any) -> list[str]:
    if kind in ("lattice", "heatmap"):
        grid = data.get("z") if kind == "heatmap" and isinstance(data, Mapping) else data
        rows = _rows_of(grid)
        if not rows or _rows_of(grid[0]) is None:
            return [f"{kind} data is not a 2-D array"]
        return []
    if not isinstance(data, Mapping):
        return [f"{kind} data is a {type(data).__name__}, not a dict"]
    if kind == "histogram":
        if "edges" not in data or "counts" not in data:
            return ["histogram data needs 'edges' and 'counts'"]
        if len(data["counts"]) != len(data["edges"]) - 1:
            return [f"histogram has {len(data['counts'])} counts for {len(data['edges'])} edges"]
        return []
    if kind == "plot":
        if not any(k in data for k in ("series", "lines", "points", "note")):
            return ["plot data needs 'series', 'lines', 'points' or a 'note'"]
        out = []
        for key in ("lines", "points"):
            for name, xy in (data.get(key) or {}).items():
                if len(xy) != 2 or len(xy[0]) != len(xy[1]):
                    out.append(f"plot {key}[{name!r}] is not an (x, y) pair of equal lengths")
        if "series" in data and data.get("x") is not None:
            for name, ys in data["series"].items():
                if len(ys) != len(data["x"]):
                    out.append(f"plot series {name!r} has {len(ys)} values for {len(data['x'])} x")
        return out
    if kind == "table":
        if "columns" not in data or "rows" not in data:
            return ["table data needs 'columns' and 'rows'"]
        out = []
        n = len(data["columns"])
        for i, row in enumerate(data["rows"]):
            if len(row) != n:
                out.append(f"table row {i} has {len(row)} cells for {n} columns")
            # the first column may hold the row's label; every other cell must be a number
            out.extend(f"table row {i}: {p}" for p in
                       (_cell_problem(c) for c in row[1:]) if p)
        return out
    if kind == "bars":
        if "labels" not in data or "values" not in data:
            return ["bars data needs 'labels' and 'values'"]
        if len(data["labels"]) != len(data["values"]):
            return [f"bars has {len(data['values'])} values for {len(data['labels'])} labels"]
        return []
    return []


def problems(view: View, scalars: Mapping[str, Any], arrays: Mapping[str, Any],
             views: Mapping[str, Any]) -> list[str]:
    """What a frame (its scalars, arrays and view data) lacks for ``view``: a missing
    source, series, reference or x, or data of the wrong shape. Empty when it can be drawn.
    A reference may be None (no exact value) but must be named in the scalars."""
    out: list[str] = []
    if view.source is not None:
        if view.source in views:
            data = views[view.source]
        elif view.source in arrays:
            data = arrays[view.source]
        else:
            return [f"view {view.title!r}: source {view.source!r} is in neither views nor arrays"]
        out.extend(f"view {view.title!r}: {p}" for p in _data_problems(view.kind, data))
    for name in view.series:
        if name not in scalars and name not in arrays:
            out.append(f"view {view.title!r}: series {name!r} is not in the scalars")
    for name in view.reference:
        if name not in scalars:
            out.append(f"view {view.title!r}: reference {name!r} is not in the scalars")
    if view.x is not None and view.x != "step" and view.x not in scalars:
        out.append(f"view {view.title!r}: x {view.x!r} is not in the scalars")
    if view.kind in ("trace",) and not view.series:
        out.append(f"view {view.title!r}: a trace needs series")
    if view.kind != "trace" and view.source is None and not (view.kind == "histogram" and view.series):
        out.append(f"view {view.title!r}: a {view.kind} needs a source")
    return out

