"""Presets: every shipped preset names a real topic and valid values; save/load round-trips."""

import pytest

from mletui.engine import presets
from mletui.engine.params import ParamError
from mletui.engine.topics import get_topic


def test_every_builtin_preset_loads_and_validates_against_its_topic():
    found = presets.available()
    for name, path in found.items():
        if path.parent != presets.builtin_dir():
            continue
        pre = presets.load(name)
        topic = get_topic(pre.topic)
        topic.resolve(preset=pre.params)  # raises ParamError on any bad value


def test_save_then_load_round_trips_typed_values(tmp_path, monkeypatch):
    monkeypatch.setenv("MLETUI_PRESETS", str(tmp_path))
    path = presets.save("mine", "ising", {"beta": 0.5, "L": 32, "method": "gibbs", "flag": True,
                                          "widths": (64, 32)}, description='a "quoted" one')
    assert path.parent == tmp_path
    pre = presets.load("mine")
    assert pre.topic == "ising" and pre.description == 'a "quoted" one'
    assert pre.params == {"beta": 0.5, "L": 32, "method": "gibbs", "flag": True, "widths": [64, 32]}


def test_user_preset_overrides_builtin_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.setenv("MLETUI_PRESETS", str(tmp_path))
    presets.save("shadow", "ising", {"beta": 0.1})
    assert presets.available()["shadow"].parent == tmp_path


@pytest.mark.parametrize("text,fragment", [("topic = 3\n", "needs a `topic"), ("not toml [", "cannot read")])
def test_malformed_preset_is_refused_with_one_line(tmp_path, text, fragment):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ParamError) as err:
        presets.load(str(f))
    assert fragment in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["../evil", "bad name!", ".hidden", "", "a/b", "caf\u00e9"])
def test_preset_names_are_letters_digits_dash_and_underscore_only(tmp_path, monkeypatch, name):
    """The rule the save dialog states; nothing is written for a refused name."""
    monkeypatch.setenv("MLETUI_PRESETS", str(tmp_path))
    with pytest.raises(ParamError, match="letters, digits"):
        presets.save(name, "ising", {})
    assert list(tmp_path.iterdir()) == []
    assert presets.save("ok-Name_2", "ising", {}).name == "ok-Name_2.toml"
