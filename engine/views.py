"""Views: what a topic's pane shows, and the shape of the data each kind reads.

A topic declares its panels as :class:`View` records; ``tui/`` maps each kind to one
widget, so a topic made of known kinds shows up in the app untouched, and a new kind is
one entry in :data:`VIEW_KINDS`, one TypedDict here and one widget in ``tui/widgets/``.

The data of a view lives in ``Frame.views[source]`` (view-only, never written to a file)
or ``Frame.arrays[source]`` (written to JSONL); trace views and history-fed histograms
read scalars from the frame history instead. :func:`problems` checks one view against one
frame; the contract suite (tests/test_topic_contract.py) runs it on every topic.

What a scalar means on screen is here too: a topic's :class:`Scalar` records give each
scalar a label and a unit, the one source the values panel, the tables, the status line
and the README's scalar tables read through :func:`describe`.
"""

from __future__ import annotations

import fnmatch
import math
import re
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, NotRequired, Sequence, TypedDict

# View kinds the TUI knows. A new kind is one new widget in tui/widgets/.
VIEW_KINDS = ("lattice", "histogram", "trace", "heatmap", "table", "plot", "bars")

XY = tuple[Sequence[float], Sequence[float]]
"""A curve: x values and y values of the same length."""

Cell = float | int | str | None | tuple[float, float] | tuple[float, float, float]
"""A table cell: a number, ``None`` (no value), a ``(value, standard error)`` pair, a
``(value, standard error, split-R-hat)`` triple (the UI shows the value flagged "not
equilibrated" instead of a confident error when R-hat > 1.05), or a short text label (a
row's name). Numbers are never pre-formatted: the UI formats them, so its digits, ASCII
mode and width rules apply to every table alike."""


class ReferenceCurve(TypedDict):
    """A trace reference given as a whole curve over the view's x (the exact energy over
    the annealing schedule), in ``Frame.views[name]`` or ``Frame.arrays[name]``; drawn as
    given, ahead of the run's history."""

    x: Sequence[float]
    y: Sequence[float]

LatticeData = Sequence[Sequence[int]]
"""lattice: a 2-D array of spins (+1/-1 or 0/1), already downsampled to what a
terminal can show."""


class HeatmapField(TypedDict):
    """heatmap: a 2-D float array ``z`` (rows top to bottom) over ``extent``
    (x0, x1, y0, y1). A bare 2-D array is accepted too. ``scale`` (lo, hi) fixes the
    colour scale's ends, so that heatmaps meant to be compared (a sampled density beside
    the exact one) share one; without it the scale runs from the finite minimum to the
    maximum of ``z``. Values beyond a fixed scale are drawn at its end colour and counted.
    ``gutters``: how many of the NaN cells are gutters laid out between tiled images
    (drawn blank like every NaN, but not reported as missing values)."""

    z: Sequence[Sequence[float]]
    extent: NotRequired[tuple[float, float, float, float]]
    scale: NotRequired[tuple[float, float]]
    gutters: NotRequired[int]


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
    reference for trace: the exact values. A scalar name is drawn at each frame's x from
             that frame's value (a curve when it moves with x, a line for the stretch of
             history a constant holds; an edit starts a new stretch); None in a frame is
             "no exact value". A name in ``Frame.views``/``Frame.arrays`` holding a
             :class:`ReferenceCurve` is drawn as that curve.
    x        for trace: the scalar used as abscissa (default: the step).
    options  free-form hints (``logy``, ``ylabel``, ``bins``, ``width`` ...).
    when     ``when(params) -> bool``: whether the view applies to a run with these
             params (EM's 2-D ellipses only for data with D >= 2, a learned-score loss
             only with a learned score); None: always. The engine decides, the pane hides
             a view that does not apply (:meth:`applies`).

    Importance is the order of a topic's ``views``: the pane shows the first ones that
    fit and puts the rest one key away.
    """

    kind: str
    title: str
    source: str | None = None
    series: tuple[str, ...] = ()
    reference: tuple[str, ...] = ()
    x: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    when: Callable[[Mapping[str, Any]], bool] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in VIEW_KINDS:
            raise ValueError(f"unknown view kind {self.kind!r}; known: {', '.join(VIEW_KINDS)}")

    def applies(self, params: Mapping[str, Any] | None) -> bool:
        """Whether this view applies to a run with ``params`` (always, without ``when``;
        a predicate that fails on incomplete params counts as applying)."""
        if self.when is None or params is None:
            return True
        try:
            return bool(self.when(params))
        except (KeyError, TypeError, ValueError):
            return True


def applicable(views: Sequence[View], params: Mapping[str, Any] | None) -> list[View]:
    """The views that apply to ``params``, in the topic's order (its order of importance)."""
    return [v for v in views if v.applies(params)]


# -- whether a view has anything to show ---------------------------------------------------
def _finite(v: Any) -> bool:
    try:
        return v is not None and not isinstance(v, (str, bool)) and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _any_finite(values: Any) -> bool:
    if values is None or isinstance(values, (str, bytes)):
        return False
    if _finite(values):
        return True
    try:
        return any(_any_finite(v) for v in values)
    except TypeError:
        return False


def has_content(view: View, frame: Any, history: Sequence[Any] | None = None) -> bool:
    """Whether ``view`` has something to draw in ``frame`` (``history``: the frames a
    trace or a history-fed histogram reads; the frame alone when None): a finite point of
    some series, a histogram with counts, a non-empty lattice, table or bars, a plot with
    a finite point (a plot's note alone, "1-D data: see the histogram", is not content).
    A pane draws no frame without content."""
    if view.source is None:
        frames = list(history) if history else [frame]
        return any(_finite(f.scalars.get(name)) for f in frames for name in view.series)
    data = frame.views.get(view.source, frame.arrays.get(view.source))
    if data is None:
        return False
    kind = view.kind
    if kind == "lattice":
        return bool(_rows_of(data)) and bool(_rows_of(data[0]))
    if kind == "heatmap":
        grid = data.get("z") if isinstance(data, Mapping) else data
        return _any_finite(grid)
    if not isinstance(data, Mapping):
        return False
    if kind == "histogram":
        return any(_finite(c) and float(c) > 0 for c in data.get("counts") or ())
    if kind == "table":
        return bool(data.get("rows"))
    if kind == "bars":
        return _any_finite(data.get("values"))
    if kind == "plot":  # a note alone says why there is nothing to draw: no content
        if any(_any_finite(ys) for ys in (data.get("series") or {}).values()):
            return True
        return any(_any_finite(xy[1]) for key in ("lines", "points")
                   for xy in (data.get(key) or {}).values() if len(xy) == 2)
    return True


# -- what a scalar means ------------------------------------------------------------------
@dataclass(frozen=True)
class Scalar:
    """What one scalar of a topic's frames is, for a reader.

    name   the scalar's key in ``Frame.scalars``, or an fnmatch pattern for a suffixed
           family (``loss_*``, ``*_rhat``); an exact name wins over a pattern, and among
           patterns the first declared that matches.
    label  short words for the screen ("energy per spin", "acceptance"). In a pattern's
           label, ``{}`` stands for what the first ``*`` matched, in that part's own
           label when the topic describes it ("{} R-hat" on ``energy_rhat`` reads
           "energy R-hat" when ``energy`` is labelled "energy").
    unit   the unit after the value ("J", "sweeps", "%"), "" for a pure number.
    help   one sentence on what it measures (the README's scalar tables print it).
    """

    name: str
    label: str
    unit: str = ""
    help: str = ""

    @property
    def is_pattern(self) -> bool:
        return any(c in self.name for c in "*?[")


def _scalar_for(specs: Sequence[Scalar], name: str) -> tuple[Scalar, str] | None:
    """The spec describing ``name`` and what its ``*`` matched ("" for an exact name, or
    a pattern with other wildcards)."""
    for spec in specs:
        if spec.name == name:
            return spec, ""
    for spec in specs:
        if spec.is_pattern and fnmatch.fnmatchcase(name, spec.name):
            head, star, tail = spec.name.partition("*")
            simple = star and not any(c in head + tail for c in "*?[")
            return spec, name[len(head):len(name) - len(tail)] if simple else ""
    return None


def scalar_spec(topic: Any, name: str) -> Scalar | None:
    """The :class:`Scalar` record describing ``name`` in ``topic.scalars`` (None if none)."""
    found = _scalar_for(tuple(getattr(topic, "scalars", ()) or ()), name)
    return found[0] if found else None


def describe(topic: Any, name: str) -> tuple[str, str]:
    """(label, unit) of scalar ``name`` of ``topic``; the name itself and no unit when
    the topic does not describe it. A plain function of the topic's ``scalars``, for any
    reader (values panel, tables, status line, README)."""
    specs = tuple(getattr(topic, "scalars", ()) or ())
    found = _scalar_for(specs, name)
    if found is None:
        return name, ""
    spec, stem = found
    label = spec.label
    if "{}" in label:
        inner = _scalar_for(specs, stem) if stem and stem != name else None
        part = inner[0].label if inner is not None and not inner[0].is_pattern else stem
        label = label.replace("{}", part)
    return label, spec.unit


def undescribed(topic: Any, names: Sequence[str]) -> list[str]:
    """The names among ``names`` that no :class:`Scalar` of ``topic`` describes."""
    specs = tuple(getattr(topic, "scalars", ()) or ())
    return [n for n in names if _scalar_for(specs, n) is None]


class Labels(Mapping[str, Scalar]):
    """``topic.scalars`` as a read-only mapping name -> :class:`Scalar` whose lookups
    resolve patterns (``labels.get("loss_sgd")`` finds ``loss_*``) and whose labels have
    their ``{}`` filled: for readers that look scalars up by name (a widget may do so for
    every line it draws, so lookups are remembered). Iterates the exact names only."""

    def __init__(self, topic: Any) -> None:
        self._topic = topic
        self._exact = [s.name for s in getattr(topic, "scalars", ()) or () if not s.is_pattern]
        self._memo: dict[str, Scalar | None] = {}

    def _lookup(self, name: str) -> Scalar | None:
        if name not in self._memo:
            spec = scalar_spec(self._topic, name)
            if spec is None:
                self._memo[name] = None
            else:
                label, unit = describe(self._topic, name)
                self._memo[name] = Scalar(name, label, unit, spec.help)
        return self._memo[name]

    def __getitem__(self, name: str) -> Scalar:
        found = self._lookup(name) if isinstance(name, str) else None
        if found is None:
            raise KeyError(name)
        return found

    def get(self, name: str, default: Any = None) -> Any:
        found = self._lookup(name) if isinstance(name, str) else None
        return default if found is None else found

    def __iter__(self) -> Iterator[str]:
        return iter(self._exact)

    def __len__(self) -> int:
        return len(self._exact)

    def __bool__(self) -> bool:  # a topic with pattern-only scalars still has labels
        return bool(getattr(self._topic, "scalars", ()))


_LABELS: "weakref.WeakKeyDictionary[Any, Labels]" = weakref.WeakKeyDictionary()


def labels_of(topic: Any) -> Labels:
    """The topic's :class:`Labels`, made once per topic object."""
    try:
        found = _LABELS.get(topic)
        if found is None:
            found = _LABELS[topic] = Labels(topic)
        return found
    except TypeError:  # not weak-referenceable
        return Labels(topic)


def scalar_table(topic: Any) -> str:
    """The Markdown table of a topic's scalars (name, label, unit, meaning) that the README
    holds between ``<!-- scalars:NAME -->`` markers; a test keeps the two equal."""
    lines = ["| scalar | label | unit | meaning |", "|---|---|---|---|"]
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    for s in getattr(topic, "scalars", ()) or ():
        label = cell(s.label).replace("{}", "`*`")
        row = f"| `{s.name}` | {label} | {cell(s.unit)} | {cell(s.help)} |"
        lines.append(re.sub(r"(?<!\\)\|\s+(?=\|)", "| ", row))
    return "\n".join(lines)


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
        if len(cell) in (2, 3) and _is_number(cell[0]) and all(c is None or _is_number(c) for c in cell):
            return None
        return f"cell {cell!r} is neither a number nor a (value, stderr[, rhat]) tuple"
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
        scale = data.get("scale") if kind == "heatmap" and isinstance(data, Mapping) else None
        if scale is not None:
            if len(scale) != 2 or not all(_finite(v) for v in scale) or not scale[0] < scale[1]:
                return [f"heatmap scale {tuple(scale)!r} is not a finite (lo, hi) with lo < hi"]
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
    A reference scalar may be None (no exact value) but must be named; a reference curve
    needs x and y of equal lengths."""
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
        curve = views.get(name, arrays.get(name))
        if isinstance(curve, Mapping):
            if "x" not in curve or "y" not in curve or len(curve["x"]) != len(curve["y"]):
                out.append(f"view {view.title!r}: reference curve {name!r} needs x and y of equal lengths")
        elif name not in scalars:
            out.append(f"view {view.title!r}: reference {name!r} is in neither the scalars nor "
                       "the views (as a curve)")
    if view.x is not None and view.x != "step" and view.x not in scalars:
        out.append(f"view {view.title!r}: x {view.x!r} is not in the scalars")
    if view.kind in ("trace",) and not view.series:
        out.append(f"view {view.title!r}: a trace needs series")
    if view.kind != "trace" and view.source is None and not (view.kind == "histogram" and view.series):
        out.append(f"view {view.title!r}: a {view.kind} needs a source")
    return out

