"""``mletui bench kfac`` through the bench registry: the rows of the quick study, their keys
and their ratios (steps and step costs against tuned SGD and Adam)."""

import math

import pytest
import torch

from mletui.engine.bench import benchmarks

STEPS_KEYS = ["case", "value", "unit", "baseline", "baseline_value", "ratio", "wall_ratio", "reached"]
COST_KEYS = ["case", "value", "unit", "baseline", "baseline_value", "ratio"]


def test_kfac_bench_rows_have_the_study_keys_and_consistent_ratios():
    rows = list(benchmarks()["kfac"](torch.device("cpu"), quick=True))
    cases = [r["case"] for r in rows]
    assert cases == ["AE sgd steps to adam's final loss",
                     "AE adam steps to sgd's final loss", "AE adam step cost",
                     "AE kfac_true steps to sgd's final loss", "AE kfac_true steps to adam's final loss",
                     "AE kfac_true step cost",
                     "AE kfac_empirical steps to sgd's final loss", "AE kfac_empirical steps to adam's final loss",
                     "AE kfac_empirical step cost"]
    for r in rows:
        if r["unit"] == "steps":
            assert list(r) == STEPS_KEYS
            if r["value"] is not None and r["baseline_value"] is not None:
                assert r["ratio"] == pytest.approx(r["baseline_value"] / r["value"])
            else:
                assert r["ratio"] is None and r["reached"].startswith("0/") == (r["value"] is None)
        else:
            assert list(r) == COST_KEYS and r["unit"] == "ms/step" and r["baseline"] == "sgd step"
            assert r["value"] > 0 and math.isfinite(r["value"])
            assert r["ratio"] == pytest.approx(r["baseline_value"] / r["value"])
