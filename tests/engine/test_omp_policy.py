"""The engine's OpenMP wait policy (mletui.engine's docstring; BENCHMARKS.md "Under load"):
every entry point has OMP_WAIT_POLICY=PASSIVE in the environment before torch loads libgomp,
a user's own value is kept, and the processes the engine starts inherit it. Each check is a
fresh interpreter, since the variable only matters before torch's first import."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _python(code: str, policy: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


REPORT = "import os, sys; print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"


@pytest.mark.parametrize("entry", ["mletui.engine", "mletui.engine.params", "mletui.tui"])
def test_passive_is_set_before_torch_is_imported(entry):
    # the package sets it and has not imported torch yet: libgomp will read PASSIVE
    assert _python(f"import {entry}; {REPORT}", None) == "PASSIVE False"


def test_the_command_line_entry_point_sets_it():
    # the `mletui` script imports mletui.tui.cli (tui/ imports the engine package first)
    out = _python("import mletui.tui.cli, torch, os; print(os.environ.get('OMP_WAIT_POLICY'))", None)
    assert out == "PASSIVE"


@pytest.mark.parametrize("policy", ["ACTIVE", "passive", "active"])
def test_a_users_own_policy_wins(policy):
    assert _python(f"import mletui.engine; {REPORT}", policy) == f"{policy} False"


def test_spawned_engine_processes_inherit_it():
    # ProcessRunner's engines are multiprocessing "spawn" children: a fresh interpreter that
    # must see the policy in its environment before its own torch import
    code = ("import os, multiprocessing as mp\n"
            "import mletui.engine\n"
            "if __name__ == '__main__':\n"
            "    with mp.get_context('spawn').Pool(1) as pool:\n"
            "        print(pool.apply(os.getenv, ('OMP_WAIT_POLICY',)))\n")
    assert _python(code, None) == "PASSIVE"
