"""The prepared device check (engine/gpu_check.py) and what it relies on: the engine tests
collect with no UI package installed (a GPU box has no textual), each step is cut at its own
timeout without losing the report, and a dry run on the CPU goes through every step."""

import json
import subprocess
import sys
from pathlib import Path

from mletui.engine import gpu_check

ROOT = Path(__file__).resolve().parents[2]

BLOCK_UI = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('textual', 'rich', 'plotext', 'textual_plotext'):
            raise ImportError('blocked ' + name)
sys.meta_path.insert(0, Block())
import pytest
sys.exit(pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', 'tests/engine']))
"""


def test_engine_tests_collect_without_textual_rich_or_plotext():
    env = {"PATH": "/usr/bin:/bin", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "TRITON_INTERPRET": "1"}
    out = subprocess.run([sys.executable, "-c", BLOCK_UI], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "error" not in out.stdout.lower().split("\n")[-2], out.stdout[-2000:]
    assert "tests/engine/test_kernel_builds.py::" in out.stdout


def test_a_step_past_its_timeout_is_killed_and_reported(tmp_path):
    s = gpu_check.run_step("hang", [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"],
                           timeout=2.0)
    assert s["status"] == "timeout" and s["seconds"] < 30
    assert "started" in s["output"]
    ok = gpu_check.run_step("ok", [sys.executable, "-c", "print('1 passed')"], timeout=30)
    assert ok["status"] == "passed" and ok["summary"] == "1 passed"
    report = {"started": "now", "steps": [s, ok],
              "bench": [{"topic": "ising", "case": "L=64", "value": 1.5, "unit": "flips/ns", "ratio": 2.0}]}
    gpu_check.write(report, tmp_path)
    md = (tmp_path / "gpu-check.md").read_text()
    assert "| hang | timeout |" in md and "| ising | L=64 | 1.5 | flips/ns |" in md
    assert json.loads((tmp_path / "gpu-check.json").read_text())["steps"][0]["status"] == "timeout"
    assert gpu_check._json_lines('# header\n{"case": "a", "value": 1}\nnoise {\n{"case": "b"}\n') == [
        {"case": "a", "value": 1}, {"case": "b"}]


def test_dry_run_on_the_cpu_goes_through_every_step(tmp_path):
    """--device cpu: the same steps as on a GPU box (bar the install), a report after each."""
    rc = gpu_check.main([str(tmp_path), "--device", "cpu", "--skip-install", "--budget", "240",
                         "--pytest", "tests/engine/test_kernel_builds.py -k cuobjdump", "--topics", ""])
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    steps = {s["step"]: s for s in report["steps"]}
    assert rc == 0, report
    assert steps["device"]["status"] == "passed" and "torch" in report["device"]
    assert steps["tests"]["summary"].startswith("1 passed")
    assert steps["bench-list"]["status"] == "passed"
    assert [s["step"] for s in report["steps"]] == ["device", "tests", "bench-list"] and report["topics"] == []
    assert (tmp_path / "gpu-check.md").read_text().startswith("# mletui gpu-check")
