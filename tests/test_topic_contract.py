"""The topic contract, checked on every registered topic (``all_topics()``), so a new topic
gets these checks without writing them:

* every param's default validates and round-trips through ``parse(format(x))``, and a bad
  value for each param is a one-line ParamError naming it;
* ``Topic.quick`` exists and resolves; at it, ``init``/``step``/``observe`` run a few steps
  on the CPU, every view's source, series, reference and x are in the frames with data of
  the kind's shape (``engine.views.problems``), every scalar is finite or reported (None,
  or a non-finite value a note of the same frame names) and the frames survive the JSONL
  writer;
* ``step`` decides, ``observe`` reads: the same seed with ``every=1`` and ``every=7`` gives
  equal scalars at the common steps, except the topic's ``window_scalars``;
* every scalar a frame reports has a label (and unit) in ``Topic.scalars``, and the
  README's table of the topic's scalars is the one ``engine.views.scalar_table`` makes.

Headless: imports no UI package.
"""

from __future__ import annotations

import fnmatch
import json
import math

import pytest

from mletui.engine.params import ParamError
from mletui.engine.record import JsonlWriter, frame_record, header_record
from mletui.engine.runner import run
from mletui.engine.topics import all_topics, failed_topics
from mletui.engine.views import applicable, problems, scalar_table, undescribed

TOPICS = all_topics()
STEPS = 14          # a few steps: two frames of the every=7 run
EVERY = 7

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(params=list(TOPICS), ids=list(TOPICS))
def topic(request):
    return TOPICS[request.param]


def test_every_topic_module_imports():
    assert failed_topics() == {}


# -- params ----------------------------------------------------------------------------

def test_every_default_validates_and_round_trips_through_its_text(topic):
    for p in topic.params:
        value = p.validate(p.default)
        assert value == p.default, p.name
        assert p.parse(p.format(value)) == value, f"{p.name}: {p.format(value)!r}"
    topic.resolve()  # the defaults pass the topic's cross-parameter check


def _bad_texts(p) -> list[str]:
    if p.kind == "int":
        out = ["x", "1.5"]
        out += [str(int(math.floor(p.lo)) - 1)] if p.lo is not None else []
        return out + ([str(int(math.ceil(p.hi)) + 1)] if p.hi is not None else [])
    if p.kind == "float":
        out = ["x", "nan", "inf"]
        out += [repr(p.lo - 1.0 - abs(p.lo))] if p.lo is not None else []
        return out + ([repr(p.hi + 1.0 + abs(p.hi))] if p.hi is not None else [])
    if p.kind == "bool":
        return ["maybe"]
    if p.kind == "choice":
        return ["no-such-" + p.choices[0]]
    if p.kind == "path":
        return ["/nonexistent/mletui/contract"]
    return ["", "x", "-1", "!"] if p.parse_text is not None else []  # free text: nothing is bad


def test_a_bad_value_for_each_param_is_a_one_line_param_error_naming_it(topic):
    for p in topic.params:
        texts = _bad_texts(p)
        if not texts:
            continue
        refused = 0
        for text in texts:
            try:
                topic.resolve(texts={p.name: text})
            except ParamError as exc:
                msg = str(exc)
                assert msg and "\n" not in msg, (p.name, text, msg)
                assert p.name in msg, (p.name, text, msg)
                assert exc.param == p.name and exc.layer == "texts"
                refused += 1
        if p.kind == "text":
            assert refused, f"{p.name}: none of {texts} refused"
        else:
            assert refused == len(texts), f"{p.name}: some of {texts} accepted"
    with pytest.raises(ParamError, match="no parameter"):
        topic.resolve({"no_such_param": 1})


# -- a quick run on the CPU ------------------------------------------------------------------

def test_quick_is_defined_and_resolves(topic):
    assert topic.quick, f"{topic.name} defines no Topic.quick (a small, fast run)"
    topic.resolve(topic.quick)


_RUNS: dict[tuple[str, int], list] = {}


def frames(topic, every: int = 1) -> list:
    """The frames of the quick run (cached per topic and ``every``)."""
    if not topic.quick:
        pytest.fail(f"{topic.name} defines no Topic.quick: no quick run to check")
    key = (topic.name, every)
    if key not in _RUNS:
        _RUNS[key] = list(run(topic, steps=STEPS, params=topic.quick, seed=3, device="cpu",
                              every=every))
    return _RUNS[key]


def test_a_quick_run_steps_and_observes_on_the_cpu(topic):
    out = frames(topic)
    assert out, "no frame"
    steps = [f.step for f in out]
    assert steps == list(range(1, len(out) + 1)), steps
    assert len(out) == STEPS or (topic.finite and out[-1].done)
    assert out[0].params is not None and out[0].params == topic.resolve(topic.quick)


def test_every_views_source_series_reference_and_x_are_in_the_frames(topic):
    """Every view that applies to the quick run's params (``View.when``)."""
    last = frames(topic)[-1]
    views = applicable(topic.views, topic.resolve(topic.quick))
    found = [p for v in views for p in problems(v, last.scalars, last.arrays, last.views)]
    assert not found, found


def _reported(name: str, frame) -> bool:
    return any(name in note for note in frame.notes)


def test_every_scalar_is_finite_or_reported(topic):
    for f in frames(topic):
        for name, value in f.scalars.items():
            if value is None or isinstance(value, (bool, int, str)):
                continue
            assert isinstance(value, float), f"step {f.step}: {name} is a {type(value).__name__}"
            assert math.isfinite(value) or _reported(name, f), \
                f"step {f.step}: {name} = {value} and no note says so"


def test_the_frames_survive_the_jsonl_writer(topic, tmp_path):
    out = frames(topic)
    path = tmp_path / "run.jsonl"
    w = JsonlWriter(str(path))
    w.write(header_record(topic.name, out[0].params, 3, "cpu"))
    for f in out:
        w.write(frame_record(topic.name, f))
    w.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == len(out) + 1 and lines[0]["topic"] == topic.name
    for rec, f in zip(lines[1:], out):
        assert rec["step"] == f.step and rec["topic"] == topic.name
        assert set(f.scalars) | set(f.arrays) <= set(rec)
        for name, value in f.scalars.items():
            if isinstance(value, float) and not math.isfinite(value):
                assert rec[name] is None and any(name in w for w in rec["warnings"])
            else:
                assert rec[name] == value, name
        for name in set(f.views) - set(f.scalars) - set(f.arrays):
            assert name not in rec, f"view-only {name!r} reached the file"


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return True
        return a == b or abs(a - b) <= 1e-12 * max(abs(a), abs(b))
    return a == b


def test_observing_every_step_or_every_seventh_gives_the_same_run(topic):
    """``step`` decides, ``observe`` reads: only the window scalars may differ."""
    ones = {f.step: f for f in frames(topic, 1)}
    sevens = {f.step: f for f in frames(topic, EVERY)}
    common = sorted(set(ones) & set(sevens))
    assert common, "no common step"
    window = topic.window_scalars
    differ = []
    for step in common:
        a, b = ones[step].scalars, sevens[step].scalars
        assert set(a) == set(b), (step, set(a) ^ set(b))
        for name in a:
            if any(fnmatch.fnmatchcase(name, pat) for pat in window):
                continue
            if not _same(a[name], b[name]):
                differ.append(f"step {step}: {name} {a[name]!r} (every 1) vs {b[name]!r} (every {EVERY})")
    assert not differ, differ



# -- what each scalar means ----------------------------------------------------------------

# Topics whose scalars are not described yet (a topic being restructured may be listed
# here until it lands); the test below fails once one of them describes every scalar, so
# the entry is removed then.
NOT_YET_DESCRIBED: set[str] = set()


def test_every_scalar_a_frame_reports_has_a_label(topic):
    if topic.name in NOT_YET_DESCRIBED:
        pytest.skip(f"{topic.name}: scalars not described yet (NOT_YET_DESCRIBED)")
    names = sorted({name for f in frames(topic) for name in f.scalars})
    missing = undescribed(topic, names)
    assert not missing, f"{topic.name}: no Scalar describes {missing} (add them to {type(topic).__name__}.scalars)"
    for spec in topic.scalars:
        assert spec.label and "\n" not in spec.label, spec


def test_the_exemption_list_names_only_topics_still_undescribed():
    for name in NOT_YET_DESCRIBED & set(TOPICS):
        t = TOPICS[name]
        if t.scalars and t.quick:
            names = sorted({n for f in frames(t) for n in f.scalars})
            assert undescribed(t, names), f"{name} describes every scalar: drop it from NOT_YET_DESCRIBED"


def test_the_readme_scalar_table_is_the_topics_own(topic):
    """README.md holds each described topic's scalar table between markers, made by
    ``scalar_table``: one source for the screen and the documentation."""
    if not topic.scalars:
        pytest.skip(f"{topic.name} describes no scalars yet")
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start, end = f"<!-- scalars:{topic.name} -->", f"<!-- /scalars:{topic.name} -->"
    assert start in readme and end in readme, f"README.md has no {start} ... {end} block"
    block = readme.split(start, 1)[1].split(end, 1)[0].strip()
    assert block == scalar_table(topic), f"README's {topic.name} scalars differ; expected:\n{scalar_table(topic)}"


# -- a new topic is one file ---------------------------------------------------------------

SCRATCH = '''"""A scratch topic: a Gaussian random walk per chain, x <- x + sigma * noise."""
import torch

from ..params import Param
from ..topic import Frame, Scalar, Topic, View


class Scratch(Topic):
    name = "scratch"
    title = "Scratch walk"
    order = 999
    params = (Param("sigma", "float", 1.0, "step scale", lo=0.0, hi=10.0),
              Param("chains", "int", 64, "walkers", lo=1, hi=4096, live=False))
    views = (View("trace", "mean position", series=("mean",)),
             View("table", "moments", source="moments"),
             View("histogram", "positions", source="positions"))
    quick = {"chains": 16}
    window_scalars = ("moves_since_frame",)
    scalars = (Scalar("mean", "mean position"), Scalar("steps", "steps", "steps"),
               Scalar("moves_since_frame", "moves since the last frame"))

    def init(self, p, device, seed):
        g = torch.Generator(device="cpu").manual_seed(seed)
        return {"x": torch.zeros(p["chains"]), "g": g, "n": 0, "window": 0}

    def step(self, s, p):
        s["x"] += p["sigma"] * torch.randn(s["x"].shape, generator=s["g"])
        s["n"] += 1
        s["window"] += 1

    def observe(self, s, p):
        x = s["x"]
        moves, s["window"] = s["window"], 0
        counts, edges = torch.histogram(x, bins=8)
        sem = float(x.std() / x.numel() ** 0.5)
        return Frame(scalars={"mean": float(x.mean()), "steps": s["n"], "moves_since_frame": moves},
                     views={"moments": {"columns": ["moment", "value"],
                                        "rows": [["mean", (float(x.mean()), sem)], ["var", float(x.var())]]},
                            "positions": {"edges": edges.tolist(), "counts": counts.tolist()}})


TOPIC = Scratch()
'''


SCRATCH_README = """# scratch

<!-- scalars:scratch -->
| scalar | label | unit | meaning |
|---|---|---|---|
| `mean` | mean position | | |
| `steps` | steps | steps | |
| `moves_since_frame` | moves since the last frame | | |
<!-- /scalars:scratch -->
"""


def test_a_topic_file_dropped_into_a_copy_of_the_package_is_listed_and_passes_the_contract(tmp_path):
    """No registration anywhere: the file is the topic (and its README table of scalars). A
    module that fails to import is named with its reason, and the others still load."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    pkg = tmp_path / "mletui"
    for folder in ("engine", "tui", "assets"):
        shutil.copytree(root / folder, pkg / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "engine" / "topics" / "scratch.py").write_text(SCRATCH)
    (pkg / "engine" / "topics" / "broken.py").write_text("import no_such_module_for_mletui\n")
    (tmp_path / "README.md").write_text(SCRATCH_README)  # the new topic's scalars, documented
    (tmp_path / "tests").mkdir()
    for name in ("conftest.py", "test_topic_contract.py"):
        shutil.copy(root / "tests" / name, tmp_path / "tests" / name)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    listed = subprocess.run([sys.executable, "-m", "mletui.tui.cli", "topics", "--json"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr[-2000:]
    names = [t["name"] for t in json.loads(listed.stdout)]
    assert names[-1] == "scratch" and set(TOPICS) <= set(names)
    assert listed.stderr.strip() == ("mletui: topic broken not loaded: "
                                     "ModuleNotFoundError: No module named 'no_such_module_for_mletui'")

    suite = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "tests/test_topic_contract.py", "-k", "scratch and not dropped_into"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert suite.returncode == 0, suite.stdout[-3000:]
    assert f"{len(_per_topic_checks())} passed" in suite.stdout, suite.stdout[-1000:]


def _per_topic_checks() -> list[str]:
    """The tests of this module parametrised over the topics (their first argument)."""
    here = globals()
    return [n for n, f in here.items() if n.startswith("test_") and callable(f)
            and f.__code__.co_argcount and f.__code__.co_varnames[0] == "topic"]
