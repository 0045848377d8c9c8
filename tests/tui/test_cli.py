"""The headless CLI: one-line errors with exit status 2, JSONL that parses, Ctrl-C exits 130."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from mletui.tui.cli import main


def _err_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("argv,fragment", [
    (["run", "nosuch", "--steps", "3"], "unknown topic 'nosuch'"),
    (["run", "ising", "--steps", "3", "--set", "temperature=2"], "no parameter 'temperature'"),
    (["run", "ising", "--steps", "3", "--set", "beta=-1"], "beta must be >= 0"),
    (["run", "ising", "--steps", "3", "--set", "beta=nan"], "beta must be a finite number"),
    (["run", "ising", "--steps", "3", "--set", "beta=hot"], "beta must be a number"),
    (["run", "ising", "--steps", "3", "--set", "beta"], "--set beta: expected NAME=VALUE"),
    (["run", "ising", "--steps", "3", "--set", "L=7"], "even"),
    (["run", "ising", "--steps", "3", "--set", "method=wolff"], "metropolis|gibbs"),
    (["run", "ising", "--steps", "x"], "--steps"),
    (["run", "ising", "--steps", "0"], "--steps must be >= 1"),
    (["run", "ising"], "--steps"),
    (["run", "ising", "--steps", "3", "--device", "tpu"], "--device must be cpu or cuda"),
    (["run", "ising", "--steps", "3", "--preset", "no-such-preset"], "no preset named"),
    (["run", "ising", "--steps", "3", "--jsonl", "/nonexistent-dir/x.jsonl"], "--jsonl"),
    (["--fps", "0"], "--fps"),
    (["--bogus"], "--bogus"),
])
def test_bad_input_exits_2_with_one_line_naming_the_problem(argv, fragment, capsys):
    assert main(argv) == 2
    line = _err_line(capsys)
    assert line.startswith("mletui: error:") and fragment in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_asked_for_without_a_gpu_exits_2(capsys):
    assert main(["run", "ising", "--steps", "3", "--device", "cuda"]) == 2
    assert "CUDA is not available" in _err_line(capsys)


def test_version_and_topics_list_params(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("mletui ")
    assert main(["topics", "--json"]) == 0
    topics = {t["name"]: t for t in json.loads(capsys.readouterr().out)}
    names = {p["name"]: p for p in topics["ising"]["params"]}
    assert {"L", "beta", "h", "method", "replicas", "burn_in"} <= set(names)
    assert names["L"]["live"] is False and names["beta"]["live"] is True


def test_jsonl_run_parses_line_by_line_and_header_records_params(tmp_path):
    out = tmp_path / "run.jsonl"
    rc = main(["run", "ising", "--steps", "6", "--every", "2", "--seed", "5",
               "--set", "L=8", "--set", "beta=0.3", "--set", "replicas=4", "--jsonl", str(out)])
    assert rc == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    header, frames = lines[0], lines[1:]
    assert header["topic"] == "ising" and header["seed"] == 5 and header["device"] == "cpu"
    assert header["params"]["beta"] == 0.3 and header["params"]["L"] == 8
    assert "mletui" in header and "torch" in header
    assert [f["step"] for f in frames] == [2, 4, 6]
    assert frames[0]["params"]["beta"] == 0.3 and "params" not in frames[1]
    for f in frames:
        assert f["topic"] == "ising" and f["time_s"] >= 0
        assert -2.0 <= f["energy_per_spin"] <= 2.0
        assert "lattice" not in f  # view-only data stays out


def test_jsonl_to_stdout_is_reproducible_for_a_seed(capsys):
    argv = ["run", "ising", "--steps", "3", "--seed", "2", "--set", "L=8", "--jsonl", "-"]
    assert main(argv) == 0
    a = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert main(argv) == 0
    b = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    strip = lambda recs: [{k: v for k, v in r.items() if k != "time_s"} for r in recs]
    assert strip(a) == strip(b)


def test_summary_table_without_jsonl(capsys):
    assert main(["run", "ising", "--steps", "3", "--set", "L=8"]) == 0
    assert "energy_per_spin" in capsys.readouterr().out


def test_ctrl_c_closes_the_file_and_exits_130(tmp_path):
    out = tmp_path / "long.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "mletui.tui.cli", "run", "ising", "--steps", "100000000",
                             "--set", "L=8", "--jsonl", str(out)],
                            stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while (not out.exists() or out.read_text().count("\n") < 3) and time.time() - t0 < 60:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    lines = out.read_text().splitlines()
    assert len(lines) >= 3
    for line in lines:
        json.loads(line)


def test_set_and_preset_errors_name_the_flag_they_came_from(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLETUI_PRESETS", str(tmp_path))
    (tmp_path / "hot.toml").write_text('topic = "ising"\n[params]\nbeta = -2.0\n')
    assert main(["run", "--steps", "1", "ising", "--set", "beta=-1"]) == 2
    assert _err_line(capsys).startswith("mletui: error: --set beta=-1: beta must be >= 0")
    assert main(["run", "ising", "--steps", "1", "--preset", "hot"]) == 2
    assert _err_line(capsys).startswith("mletui: error: --preset hot: beta must be >= 0")
    # a --set over the preset's bad value wins: the last layer decides
    assert main(["run", "ising", "--steps", "1", "--preset", "hot", "--set", "beta=0.3",
                 "--set", "L=8", "--jsonl", str(tmp_path / "x.jsonl")]) == 2
    assert "--preset hot" in _err_line(capsys), "the preset's own value is still refused"


def test_bench_asks_the_bench_registry_and_a_topic_without_a_module_exits_2(monkeypatch, capsys):
    """``mletui bench`` reads engine/bench/<topic>.py through engine.bench; here the registry
    is replaced by one benchmark, so the test does not depend on which modules exist."""
    import mletui.engine.bench as registry

    def rows(device, quick=False):
        assert quick and device.type == "cpu"
        yield {"case": "L=32 metropolis", "value": 2.5, "unit": "flips/ns", "baseline": "torch",
               "baseline_value": 0.5, "ratio": 5.0, "peak_host_mib": 12.0}

    monkeypatch.setattr(registry, "benchmarks", lambda: {"ising": rows})
    assert main(["bench", "ising", "--quick", "--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# mletui") and "bench ising on cpu" in out[0]
    assert "L=32 metropolis" in out[1] and "ratio 5x" in out[1] and "peak_host_mib=12" in out[1]
    assert main(["bench", "ising", "--quick", "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["ratio"] == 5.0
    assert main(["bench", "em", "--quick"]) == 2
    assert _err_line(capsys) == "mletui: error: em has no benchmark (benchmarked: ising)"
    assert main(["bench", "nosuch"]) == 2
    assert "unknown topic 'nosuch'" in _err_line(capsys)


def test_topics_in_ascii_mode_spell_greek_letters_out(monkeypatch, capsys):
    monkeypatch.setenv("MLETUI_ASCII", "1")
    assert main(["topics"]) == 0
    out = capsys.readouterr().out
    assert out.isascii()
    from mletui.engine.topics import all_topics
    from mletui.tui.charset import to_ascii

    greek = [p.help for t in all_topics().values() for p in t.params if not p.help.isascii()]
    for text in greek:  # e.g. kfac's "Tikhonov damping λ" reads "Tikhonov damping lambda"
        assert to_ascii(text) in out and "?" not in to_ascii(text), text


def test_run_observes_at_the_topics_default_every_unless_told(tmp_path, monkeypatch):
    from mletui.engine.topics import get_topic

    monkeypatch.setattr(type(get_topic("ising")), "every", 3)
    out = tmp_path / "run.jsonl"
    assert main(["run", "ising", "--steps", "7", "--set", "L=8", "--jsonl", str(out)]) == 0
    assert [json.loads(x)["step"] for x in out.read_text().splitlines()[1:]] == [3, 6, 7]
    assert main(["run", "ising", "--steps", "2", "--every", "1", "--set", "L=8", "--jsonl", str(out)]) == 0
    assert [json.loads(x)["step"] for x in out.read_text().splitlines()[1:]] == [1, 2]


# -- --set without --topic -----------------------------------------------------------------

def test_set_without_topic_picks_the_one_topic_that_has_the_parameter(monkeypatch):
    from mletui.tui import cli

    seen = {}

    class FakeApp:
        def __init__(self, topic=None, overrides=None, **kw):
            seen["topic"], seen["overrides"] = topic, overrides
            self.return_code = 0

        def run(self):
            pass

    monkeypatch.setattr("mletui.tui.app.MletuiApp", FakeApp)
    monkeypatch.setattr(cli.os, "_exit", lambda rc: seen.setdefault("rc", rc))
    cli.main(["--set", "learn_weights=off", "--set", "rungs=4"])
    assert seen["topic"] == "tempering" and seen["rc"] == 0
    assert seen["overrides"] == {"tempering": {**cli.resolve_params("tempering", None, [
        "learn_weights=off", "rungs=4"])[1]}}
    assert seen["overrides"]["tempering"]["learn_weights"] is False


@pytest.mark.parametrize("argv,line", [
    (["--set", "nosuch=1"], "mletui: error: --set nosuch=1: no topic has a parameter 'nosuch' (see `mletui topics`)"),
    (["--set", "L=32"], "mletui: error: --set L=32: ising, annealing, tempering, population, boltzmann all have L; "
                        "choose one with --topic"),
    (["--set", "h=0.1", "--set", "rungs=4"], "mletui: error: --set h=0.1 --set rungs=4: no one topic has all "
                                             "of h, rungs; choose one with --topic"),
    (["--set", "beta=9"], "mletui: error: --set beta=9: beta must be <= 5, got 9"),
])
def test_set_without_topic_exits_2_with_one_line_when_no_single_topic_fits(argv, line, capsys):
    assert main(argv) == 2
    assert _err_line(capsys) == line


# -- run: progress, where the frames went, the summary ---------------------------------------

def _on_a_terminal(argv, seconds=120):
    """Run the CLI with stderr on a pseudo-terminal; returns (status, stdout, terminal text)."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "mletui.tui.cli", *argv], stdout=subprocess.PIPE,
                            stderr=slave, env={**os.environ, "COLUMNS": "100"})
    os.close(slave)
    chunks = []
    t0 = time.time()
    while time.time() - t0 < seconds:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    out = proc.stdout.read().decode()
    proc.wait(timeout=30)
    os.close(master)
    return proc.returncode, out, b"".join(chunks).decode(errors="replace")


def test_run_to_a_file_on_a_terminal_shows_progress_and_ends_with_where_it_wrote(tmp_path):
    out = tmp_path / "run.jsonl"
    rc, stdout, term = _on_a_terminal(["run", "ising", "--steps", "40", "--every", "10", "--set", "L=8",
                                       "--jsonl", str(out)])
    assert rc == 0 and stdout == ""
    assert "ising" in term and "/40" in term, term       # the bar: description, done/total
    last = term.replace("\r", "\n").strip().splitlines()[-1]
    assert last.strip().endswith(f"mletui: wrote 4 frames to {out}"), term
    assert len(out.read_text().splitlines()) == 5


def test_run_to_a_file_off_a_terminal_prints_only_where_it_wrote(tmp_path, capsys):
    out = tmp_path / "run.jsonl"
    assert main(["run", "ising", "--steps", "4", "--every", "2", "--set", "L=8", "--jsonl", str(out)]) == 0
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err == f"mletui: wrote 2 frames to {out}\n"


def test_ctrl_c_without_jsonl_prints_the_summary_of_the_steps_done():
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "mletui.tui.cli", "run", "ising", "--steps", "100000000",
                             "--set", "L=8"], stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    seen = b""
    t0 = time.time()
    stepping = re.compile(rb" [1-9][0-9]*/100000000")  # the progress bar past step 0
    while not stepping.search(seen) and time.time() - t0 < 120:
        seen += os.read(master, 65536)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=60)[0]
    rest = b""
    try:
        while True:
            data = os.read(master, 65536)
            if not data:
                break
            rest += data
    except OSError:
        pass
    os.close(master)
    assert proc.returncode == 130
    assert "interrupted after" in out and "energy_per_spin" in out, out
    assert b"mletui: interrupted" in seen + rest


def test_summary_labels_and_units_come_from_the_topic_and_ascii_mode_prints_only_ascii(monkeypatch, capsys):
    monkeypatch.setenv("MLETUI_ASCII", "1")
    assert main(["run", "ising", "--steps", "3", "--set", "L=8"]) == 0
    out = capsys.readouterr().out
    assert out.isascii(), [c for c in out if not c.isascii()][:5]
    row = next(line for line in out.splitlines() if "energy_per_spin" in line)
    assert "energy per spin" in row and " J " in row
    assert "--" in next(line for line in out.splitlines() if "energy_mean" in line)  # no value: a dash


_COLOUR_SGR = re.compile(r"\x1b\[((?:\d+;)*)(3[0-9]|4[0-9]|9[0-7]|10[0-7])(;[\d;]*)?m")


def test_no_color_sends_no_colour_codes_to_the_terminal(tmp_path):
    argv = ["run", "ising", "--steps", "30", "--every", "10", "--set", "L=8", "--jsonl", str(tmp_path / "r.jsonl")]
    rc, _, coloured = _on_a_terminal(argv)
    assert rc == 0 and _COLOUR_SGR.search(coloured), "the progress bar is coloured (the check can fail)"
    os.environ["NO_COLOR"] = "1"
    try:
        rc, _, plain = _on_a_terminal(argv)
    finally:
        del os.environ["NO_COLOR"]
    assert rc == 0 and "wrote 3 frames" in plain
    assert not _COLOUR_SGR.search(plain), _COLOUR_SGR.search(plain)


# -- bench output ------------------------------------------------------------------------------

def _one_bench(monkeypatch, *rows):
    import mletui.engine.bench as registry

    monkeypatch.setattr(registry, "benchmarks", lambda: {"ising": lambda device, quick=False: iter(rows)})


def test_bench_json_is_pure_json_lines_at_full_precision(monkeypatch, capsys):
    value = 5.823456789012345
    _one_bench(monkeypatch, {"case": "a", "value": value, "unit": "flips/ns", "value_min": 5.1,
                             "value_max": float("nan"), "load_avg": 0.5},
               {"case": "b", "value": 1e-9, "unit": "s"})
    assert main(["bench", "ising", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    rows = [json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} is not JSON")) for line in lines]
    assert rows[0]["value"] == value and rows[0]["value_max"] is None and rows[1]["value"] == 1e-9


def test_bench_table_says_which_way_is_better_with_the_spread_and_the_load(monkeypatch, capsys):
    from mletui.engine.bench import better

    _one_bench(monkeypatch,
               {"case": "sweep", "value": 5.8234, "unit": "flips/ns", "value_min": 5.1, "value_max": 6.02,
                "load_avg": 0.53, "baseline": "naive", "baseline_value": 1.0, "ratio": 5.8234},
               {"case": "first sweep", "value": 12.5, "unit": "s"},
               {"case": "overhead", "value": 8.0, "unit": "%", "better": "lower"})
    assert main(["bench", "ising"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# mletui")
    assert "5.8234 (5.1–6.02) flips/ns, higher is better" in out[1] and "load 0.53" in out[1]
    assert "baseline naive: 1" in out[1] and "ratio 5.8234x" in out[1]
    assert "12.5 s, lower is better" in out[2]
    assert "8 %, lower is better" in out[3]
    assert [better({"unit": u}) for u in ("flips/ns", "steps/s", "x", "ms", "MiB", "ms/step", "MiB/s")] == \
        ["higher", "higher", "higher", "lower", "lower", "lower", "higher"]
    monkeypatch.setenv("MLETUI_ASCII", "1")
    assert main(["bench", "ising"]) == 0
    text = capsys.readouterr().out
    assert text.isascii() and "(5.1-6.02)" in text


def test_the_summary_title_counts_steps_in_the_topics_own_unit(capsys):
    """The unit is a phrase for some topics: 'after 3 Langevin step of every chains' read
    wrong; the title counts '3 × Langevin step of every chain'."""
    assert main(["run", "langevin", "--steps", "3", "--set", "chains=100"]) == 0
    out = capsys.readouterr().out
    assert "after 3 × Langevin step of every chain (" in out and "chains (" not in out
