"""Param: the one spec behind CLI flags, TUI edits and validation."""

import math

import pytest

from mletui.engine.params import Param, ParamError, int_list


def test_float_parse_rejects_nan_inf_and_out_of_range_with_one_line_naming_the_param():
    beta = Param("beta", "float", 0.4, lo=0.0, hi=5.0)
    assert beta.parse(" 0.25 ") == 0.25
    for bad, fragment in [("nan", "finite"), ("inf", "finite"), ("-1", ">= 0"), ("6", "<= 5"), ("abc", "number")]:
        with pytest.raises(ParamError) as err:
            beta.parse(bad)
        msg = str(err.value)
        assert msg.startswith("beta") and fragment in msg and "\n" not in msg


def test_int_parse_accepts_integral_floats_and_rejects_fractions():
    L = Param("L", "int", 64, lo=4, hi=4096, check=lambda v: None)
    assert L.parse("128") == 128
    assert L.parse("1e3") == 1000
    with pytest.raises(ParamError, match="integer"):
        L.parse("12.5")
    with pytest.raises(ParamError, match=">= 4"):
        L.parse("2")


def test_custom_check_runs_on_parse_and_nudge():
    def even(v):
        if v % 2:
            raise ParamError(f"L must be even, got {v}")

    L = Param("L", "int", 64, lo=4, hi=4096, step=2, check=even)
    with pytest.raises(ParamError, match="even"):
        L.parse("65")
    assert L.nudge(64, +1) == 66 and L.nudge(4, -1) == 4


@pytest.mark.parametrize("text,value", [("true", True), ("ON", True), ("1", True),
                                        ("false", False), ("off", False), ("0", False)])
def test_bool_spellings(text, value):
    assert Param("learn", "bool", True).parse(text) is value


def test_bool_rejects_other_words():
    with pytest.raises(ParamError, match="true/false"):
        Param("learn", "bool", True).parse("maybe")


def test_choice_parse_and_cycle():
    m = Param("method", "choice", "metropolis", choices=("metropolis", "gibbs"))
    assert m.parse("gibbs") == "gibbs"
    with pytest.raises(ParamError, match="metropolis\\|gibbs"):
        m.parse("wolff")
    assert m.nudge("gibbs", +1) == "metropolis" and m.nudge("metropolis", -1) == "gibbs"


def test_log_stepped_float_multiplies_and_clamps():
    eps = Param("step_size", "float", 0.1, lo=1e-4, hi=1.0, log=True)
    up = eps.nudge(0.1, +1)
    assert math.isclose(up, 0.1 * 2 ** 0.5)
    assert math.isclose(eps.nudge(up, -1), 0.1)
    assert eps.nudge(0.9, +1) == 1.0


def test_linear_float_nudge_steps_by_a_round_amount():
    beta = Param("beta", "float", 0.44, lo=0.0, hi=2.0, step=0.01)
    assert beta.nudge(0.44, +1) == pytest.approx(0.45)
    assert beta.nudge(0.0, -1) == 0.0


def test_text_param_parses_layer_widths():
    widths = Param("widths", "text", (64, 32, 8), parse_text=int_list)
    assert widths.parse("64,32, 8") == (64, 32, 8)
    assert widths.format((64, 32, 8)) == "64,32,8"
    with pytest.raises(ParamError, match="widths"):
        widths.parse("64,x")
    with pytest.raises(ParamError, match="widths"):
        widths.parse("0,3")


def test_path_param_refuses_missing_file(tmp_path):
    data = Param("data", "path", "")
    f = tmp_path / "x.csv"
    f.write_text("1,2\n")
    assert data.parse(str(f)) == str(f)
    with pytest.raises(ParamError, match="no readable file"):
        data.parse(str(tmp_path / "missing.csv"))


def test_describe_lists_range_liveness_and_help():
    d = Param("L", "int", 64, lo=4, hi=4096, live=False, help="side").describe()
    assert d == {"name": "L", "type": "int", "default": "64", "range": "[4, 4096]",
                 "live": False, "help": "side"}


# -- Topic.resolve: the one path from defaults, a preset, typed values and texts ---------

from mletui.engine.topic import Topic  # noqa: E402


class Knobs(Topic):
    """``lo <= hi`` across params; setting ``auto`` alone turns ``mode`` to "auto" (a
    check that reads ``changed``, as em's data=PATH implying dataset=file does)."""

    name = "knobs"
    params = (Param("lo", "float", 0.0), Param("hi", "float", 1.0),
              Param("mode", "choice", "manual", choices=("manual", "auto")),
              Param("auto", "bool", False))

    def check(self, p, changed=()):
        if p["lo"] > p["hi"]:
            raise ParamError(f"lo must be <= hi, got lo={p['lo']} hi={p['hi']}")
        if "auto" in changed and p["auto"]:
            if "mode" in changed and p["mode"] != "auto":
                raise ParamError("auto=on implies mode=auto")
            p = {**p, "mode": "auto"}
        return p


def test_resolve_layers_defaults_then_preset_then_values_then_texts():
    k = Knobs()
    assert k.resolve() == {"lo": 0.0, "hi": 1.0, "mode": "manual", "auto": False}
    got = k.resolve({"hi": 3}, {"hi": "4"}, preset={"lo": 2.0, "hi": 2.5})
    assert got["lo"] == 2.0 and got["hi"] == 4.0 and isinstance(got["hi"], float)
    assert k.resolve({"hi": 3.0}, preset={"hi": 9.0})["hi"] == 3.0


@pytest.mark.parametrize("kw,layer,param,fragment", [
    ({"preset": {"lo": "x"}}, "preset", "lo", "lo must be a number"),
    ({"values": {"nope": 1}}, "values", "nope", "has no parameter 'nope'"),
    ({"texts": {"hi": "high"}}, "texts", "hi", "hi must be a number"),
    ({"texts": {"lo": "5"}}, "check", None, "lo must be <= hi"),
])
def test_resolve_names_the_layer_and_param_of_a_refusal(kw, layer, param, fragment):
    with pytest.raises(ParamError) as err:
        Knobs().resolve(**kw)
    assert err.value.layer == layer and err.value.param == param
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_resolve_over_a_base_counts_only_the_new_entries_as_changed():
    k = Knobs()
    base = k.resolve({"auto": True})
    assert base["mode"] == "auto"
    # mode edited over a base where auto is on: auto was not just set, so no refusal
    assert k.resolve({"mode": "manual"}, base=base) == {**base, "mode": "manual"}
    with pytest.raises(ParamError, match="implies mode=auto"):
        k.resolve({"mode": "manual", "auto": True})
