"""engine/views.py: scalar descriptions (labels and units, patterns), which views apply to
a run's params, and whether a view has anything to draw. Headless."""

from __future__ import annotations

import math

from mletui.engine.topic import Frame, Topic
from mletui.engine.views import Scalar, View, applicable, describe, has_content, problems, scalar_table, undescribed


class Described(Topic):
    name = "described"
    scalars = (
        Scalar("energy", "energy per spin", "J", "E/N"),
        Scalar("loss_*", "loss ({})", "nats"),
        Scalar("*_rhat", "{} R-hat"),
        Scalar("loss_exact", "exact loss", "nats"),
    )


T = Described()


def test_an_exact_name_wins_over_a_pattern_and_a_pattern_fills_in_what_its_star_matched():
    assert describe(T, "energy") == ("energy per spin", "J")
    assert describe(T, "loss_exact") == ("exact loss", "nats")        # declared after loss_*
    assert describe(T, "loss_sgd") == ("loss (sgd)", "nats")
    # the star's part in its own label when the topic describes it
    assert describe(T, "energy_rhat") == ("energy per spin R-hat", "")
    assert describe(T, "foo_rhat") == ("foo R-hat", "")


def test_an_undescribed_scalar_reads_as_its_name_and_is_listed_as_undescribed():
    assert describe(T, "mystery") == ("mystery", "")
    assert undescribed(T, ["energy", "loss_adam", "mystery", "x_rhat"]) == ["mystery"]
    assert describe(object(), "energy") == ("energy", "")


def test_labels_is_a_mapping_that_resolves_patterns():
    labels = T.labels
    assert labels.get("loss_adam").label == "loss (adam)" and labels["loss_adam"].unit == "nats"
    assert labels.get("mystery") is None
    assert sorted(labels) == ["energy", "loss_exact"] and len(labels) == 2


def test_the_readme_table_escapes_bars_and_shows_patterns():
    class Bars(Topic):
        scalars = (Scalar("m", "|m|", "", "mean |M|/N"), Scalar("*_rhat", "{} R-hat"))

    table = scalar_table(Bars()).splitlines()
    assert table[0] == "| scalar | label | unit | meaning |"
    assert table[2] == "| `m` | \\|m\\| | | mean \\|M\\|/N |"
    assert table[3] == "| `*_rhat` | `*` R-hat | | |"


def test_a_view_applies_unless_its_predicate_says_no():
    two_d = View("plot", "ellipses", source="e", when=lambda p: p["D"] >= 2)
    always = View("trace", "ll", series=("ll",))
    assert two_d.applies({"D": 2}) and not two_d.applies({"D": 1})
    assert two_d.applies(None) and two_d.applies({})            # unknown params: shown
    assert applicable((always, two_d), {"D": 1}) == [always]
    assert applicable((two_d, always), {"D": 3}) == [two_d, always]


def _frame(scalars=None, views=None, arrays=None):
    return Frame(scalars=scalars or {}, views=views or {}, arrays=arrays or {})


def test_a_trace_has_content_once_a_series_has_a_finite_value_in_the_history():
    v = View("trace", "loss", series=("a", "b"))
    assert not has_content(v, _frame({"a": None, "b": math.nan}))
    hist = [_frame({"a": None, "b": math.nan}), _frame({"a": 1.0, "b": None}), _frame({"a": None})]
    assert has_content(v, hist[-1], hist)
    assert not has_content(View("trace", "x", series=("c",)), hist[-1], hist)


def test_source_fed_views_have_content_only_with_something_to_draw():
    h = View("histogram", "h", source="h")
    assert not has_content(h, _frame(views={"h": {"edges": [0, 1, 2], "counts": [0, 0]}}))
    assert has_content(h, _frame(views={"h": {"edges": [0, 1, 2], "counts": [0, 3]}}))
    assert not has_content(h, _frame())                              # no data at all
    t = View("table", "t", source="t")
    assert not has_content(t, _frame(views={"t": {"columns": ["a"], "rows": []}}))
    assert has_content(t, _frame(arrays={"t": {"columns": ["a"], "rows": [[1]]}}))
    p = View("plot", "p", source="p")
    assert not has_content(p, _frame(views={"p": {"lines": {"a": ([0, 1], [math.nan, math.inf])}}}))
    assert has_content(p, _frame(views={"p": {"lines": {"a": ([0, 1], [math.nan, 2.0])}}}))
    assert not has_content(p, _frame(views={"p": {"note": "1-D data: see the histogram"}}))
    b = View("bars", "b", source="b")
    assert not has_content(b, _frame(views={"b": {"labels": ["x"], "values": [math.nan]}}))
    hm = View("heatmap", "z", source="z")
    assert problems(hm, {}, {}, {"z": {"z": [[0.0, 1.0]], "scale": (0.0, 2.0)}}) == []
    for bad in [(1.0, 1.0), (0.0, math.nan), (2.0,)]:
        assert "heatmap scale" in " ".join(problems(hm, {}, {}, {"z": {"z": [[0.0, 1.0]], "scale": bad}}))
    assert not has_content(hm, _frame(views={"z": {"z": [[math.nan, math.nan]]}}))
    assert has_content(hm, _frame(views={"z": [[0.0, 1.0]]}))
    lat = View("lattice", "s", source="s")
    assert has_content(lat, _frame(views={"s": [[1, -1], [-1, 1]]}))
    assert not has_content(lat, _frame(views={"s": []}))
