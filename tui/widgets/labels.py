"""Names on screen: a scalar's label and unit from its topic, shortened to fit without
ever cutting a number.

A topic may declare ``labels``: {scalar name: "label" | ("label", "unit")} (or objects
with ``label`` and ``unit`` attributes). A scalar without one is shown by its name, as
in the JSONL. ``abbreviate`` shortens words ("magnetization" -> "magn.") rather than
cutting the text at the edge with an ellipsis.
"""

from __future__ import annotations

import os
from functools import lru_cache
import re
from typing import Any, Iterable, Mapping

_GREEK = {"beta": "β", "sigma": "σ", "mu": "μ", "pi": "π", "lambda": "λ", "tau": "τ"}


def describe(topic: Any, name: str) -> tuple[str, str]:
    """(label, unit) of a scalar; the name itself and no unit when the topic says nothing."""
    table: Mapping[str, Any] = getattr(topic, "labels", None) or {}
    entry = table.get(name) if isinstance(table, Mapping) else None
    if entry is None:
        return name, ""
    if isinstance(entry, str):
        return entry, ""
    if isinstance(entry, (tuple, list)):
        label = str(entry[0]) if entry else name
        unit = str(entry[1]) if len(entry) > 1 and entry[1] else ""
        return label, unit
    return str(getattr(entry, "label", name) or name), str(getattr(entry, "unit", "") or "")


def axis_name(name: str, ascii_only: bool) -> str:
    """An axis label for a scalar name: Greek letters drawn as such outside ASCII mode."""
    if not ascii_only and name in _GREEK:
        return _GREEK[name]
    return name


def with_unit(label: str, unit: str) -> str:
    """"energy (J)"; a label that already names its unit stays as it is ("sweeps", not
    "sweeps (sweeps)")."""
    if not unit or label == unit or label.endswith(f" {unit}"):
        return label
    return f"{label} ({unit})"


_WORD = re.compile(r"[A-Za-z]{4,}")


_QUALIFIED = re.compile(r"^(.*\S)\s*(\([^()]*\))$")


@lru_cache(maxsize=4096)  # a pure function, called for every label of every redraw
def abbreviate(text: str, width: int, cut: bool = True) -> str:
    """``text`` in at most ``width`` characters (see ``_abbreviate``). A trailing
    qualifier in parentheses is what tells rows apart ("Fisher error (kfac_true_0)",
    "... (kfac_true_1)"): the words before it are shortened first, and the qualifier is
    kept whole, or else shortened word by word, but never cut at the end."""
    m = _QUALIFIED.match(text) if len(text) > width > 0 else None
    if m:
        head, qual = m.groups()
        inner = qual[1:-1]
        short_qual = "(" + _abbreviate(inner, max(1, width - 6), cut=False) + ")"
        # words shortened but whole first (qualifier whole, then shortened); cut words last;
        # the first whose head words keep three letters each ("trai. loss", not "tr. lo."),
        # else the one whose shortest word is longest
        found = []
        for q, cut_head, least in ((qual, False, 2), (short_qual, False, 2), (qual, True, 4), (short_qual, True, 3)):
            room = width - len(q) - 1
            if room < least:
                continue
            h = _abbreviate(head, room, cut=cut_head)
            if h and len(h) <= room:
                if _stem(h) >= 3:
                    return f"{h} {q}"
                found.append((_stem(h), -len(found), f"{h} {q}"))
        if found:
            return max(found)[2]
    return _abbreviate(text, width, cut)


def _stem(text: str) -> int:
    """The fewest letters any word of ``text`` keeps."""
    return min((len(w) for w in re.findall(r"[A-Za-z]+", text)), default=99)


def _abbreviate(text: str, width: int, cut: bool = True) -> str:
    """``text`` in at most ``width`` characters: long words are cut to a stem and a dot,
    longest first ("magnetization_per_spin" -> "magn._per_spin"); digits are never cut.
    Only when that is not enough, and ``cut`` allows it, are characters dropped from the
    end (never part of a number: the text is cut before the number starts); without
    ``cut`` the shortest word-by-word form is returned even if it is wider."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    longest = max((len(m.group()) for m in _WORD.finditer(text)), default=0)
    for keep in range(longest - 2, 1, -1):
        short = _WORD.sub(lambda m: m.group() if len(m.group()) <= keep + 1 else m.group()[:keep] + ".",
                          text)
        if len(short) <= width:
            return short
    short = _WORD.sub(lambda m: m.group()[:2] + ".", text)
    if len(short) <= width or not cut:
        return short
    head = short[:width]
    # do not leave part of a number at the end
    m = re.search(r"[-+0-9.eE]+$", head)
    if m and width < len(short) and (short[width:width + 1].isdigit() or short[width:width + 1] in ".eE"):
        head = head[: m.start()]
    return head.rstrip(" _")


def strip_common(labels: Iterable[str]) -> list[str]:
    """Drop a prefix every label shares up to an underscore or space ("loss_sgd",
    "loss_adam" -> "sgd", "adam"), when there are at least two and each keeps at least
    three characters ("log_z", "log_z_exact" stay); a qualifier left in parentheses loses
    them ("training loss (sgd)", "training loss (adam)" -> "sgd", "adam"), and one cut
    inside a qualifier loses its closing one ("error (kfac_true)" -> "true", not "true)")."""
    labels = list(labels)
    if len(labels) < 2:
        return labels
    prefix = os.path.commonprefix(labels)
    cut = max(prefix.rfind("_"), prefix.rfind(" "))
    if cut <= 0:
        return labels
    out = [lab[cut + 1:] for lab in labels]
    if all(o.startswith("(") and o.endswith(")") for o in out):   # "(kfac_true)" -> "kfac_true"
        out = [o[1:-1] for o in out]
    elif prefix[:cut + 1].count("(") > prefix[:cut + 1].count(")"):
        # cut inside a qualifier ("Fisher error (kfac_true)" -> "true)"): its ")" goes too
        if not all(o.endswith(")") and "(" not in o for o in out):
            return labels
        out = [o[:-1] for o in out]
    return labels if any(len(o) < 3 for o in out) else out


def series_labels(series: list[str], references: list[str]) -> list[str]:
    """The legend labels of a chart's series then references: what they share stripped
    (:func:`strip_common`); when the series share more among themselves than with the
    references ("KL moved (sgd)", ..., beside "KL budget (ngd)"), the series by what tells
    them apart and the references by their names."""
    shown = strip_common(series + references)
    if references and len(series) > 1:
        alone = strip_common(series)
        if sum(map(len, alone)) < sum(map(len, shown[:len(series)])):
            return alone + list(references)
    return shown


def fit_parts(parts: list[tuple[str, str]], width: int, sep: str = " | ") -> str:
    """Join (label, value) parts, in priority order, into at most ``width`` characters:
    a part whose label does not fit is shown with its label abbreviated (to half its
    length and 4 characters at least), else left out; values are never cut."""
    if width <= 0:
        return ""

    def join(items):
        return sep.join(f"{a} {b}".strip() for a, b in items)

    kept: list[tuple[str, str]] = []
    for label, value in parts:
        if len(join(kept + [(label, value)])) <= width:
            kept.append((label, value))
            continue
        if not label:
            continue
        room = width - len(join(kept + [("", value)])) - 1
        short = abbreviate(label, room) if room >= 4 else ""
        if len(short) * 2 >= len(label):  # a label cut to less than half says nothing
            kept.append((short, value))
    return join(kept)
