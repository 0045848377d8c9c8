"""``mletui bench kfac``: steps and wall-clock to tuned SGD's (and Adam's) final loss on
the digits autoencoder, and each method's per-step cost against SGD's, from the K-FAC
study (engine/bench/kfac_study.py), timed with engine/bench/timing.py."""

from __future__ import annotations

from typing import Any, Iterator

import torch

from .kfac_study import study


def rows(device: torch.device, quick: bool = False) -> Iterator[dict[str, Any]]:
    """The study's rows (quick: a tiny study, for tests). On the CPU the study runs on one
    torch thread: the matrices are small, and one thread is faster and steadier."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        out = _study_rows(device, quick)
    finally:
        torch.set_num_threads(threads)
    yield from out


def _study_rows(device: torch.device, quick: bool) -> list[dict[str, Any]]:
    if quick:
        res = study("digits_autoencoder", steps=40, seeds=1, device=device, tune_steps=20,
                    levers=False, log=lambda *_: None, timing_rounds=1, timing_steps=20)
    else:
        res = study("digits_autoencoder", steps=1000, seeds=3, device=device, tune_steps=600,
                    log=lambda *_: None)
    rows = res["rows"]
    out = []
    for name, r in rows.items():
        for base in ("sgd", "adam"):
            if name == base:
                continue
            out.append({"case": f"AE {name} steps to {base}'s final loss", "value": r[f"steps_to_{base}_final"],
                        "unit": "steps", "baseline": f"tuned {base}",
                        "baseline_value": rows[base][f"steps_to_{base}_final"],
                        "ratio": r[f"steps_ratio_vs_{base}"], "wall_ratio": r[f"wall_ratio_vs_{base}"],
                        "reached": f"{r[f'reached_{base}_final']}/{res['seeds']}"})
        if name != "sgd":
            out.append({"case": f"AE {name} step cost", "value": r["ms_per_step"], "unit": "ms/step",
                        "baseline": "sgd step", "baseline_value": rows["sgd"]["ms_per_step"],
                        "ratio": rows["sgd"]["ms_per_step"] / r["ms_per_step"]})
    return out
