"""Frames to files: JSONL (header + one object per frame) and CSV (scalars).

One writer serves the headless CLI (``--jsonl``) and the app's export key, so a
file from either reads the same way.  Non-finite numbers are written as ``null``
with a ``warnings`` entry naming the field.  View-only data (lattices, raw
histogram counts) never reaches a file.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from typing import IO, Any, Iterable, Mapping

import numpy as np
import torch

from .topic import Frame

try:
    from importlib.metadata import version as _pkg_version

    VERSION = _pkg_version("mletui")
except Exception:  # running from a checkout that is not installed
    VERSION = "0.1.0"


def plain(value: Any) -> Any:
    """Params and arrays to JSON-able values (tuples -> lists, tensors -> lists)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def _finite(value: Any, path: str, warnings: list[str]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        warnings.append(f"{path} is {value} (not finite), written as null")
        return None
    if isinstance(value, list):
        bad_before = len(warnings)
        out = [_finite(v, path, warnings) for v in value]
        if len(warnings) - bad_before > 1:  # one warning per array, not per element
            n = len(warnings) - bad_before
            del warnings[bad_before:]
            warnings.append(f"{path} has {n} non-finite entries, written as null")
        return out
    return value


def header_record(topic: str, params: Mapping[str, Any], seed: int, device: Any) -> dict[str, Any]:
    return {
        "mletui": VERSION,
        "topic": topic,
        "params": plain(params),
        "seed": seed,
        "device": str(device),
        "torch": torch.__version__,
    }


def frame_record(topic: str, frame: Frame) -> dict[str, Any]:
    warnings: list[str] = []
    rec: dict[str, Any] = {"topic": topic, "step": frame.step, "time_s": round(frame.time_s, 6)}
    if frame.params is not None:
        rec["params"] = plain(frame.params)
    for key, val in frame.scalars.items():
        rec[key] = _finite(plain(val), key, warnings)
    for key, val in frame.arrays.items():
        rec[key] = _finite(plain(val), key, warnings)
    if frame.done:
        rec["done"] = True
    if frame.notes:
        rec["notes"] = list(frame.notes)
    if warnings:
        rec["warnings"] = warnings
    return rec


class JsonlWriter:
    """Writes to a path, or to stdout for '-'. Flushes each line, so Ctrl-C loses nothing."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fh: IO[str] = sys.stdout if path == "-" else open(path, "w", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        self._fh.write(json.dumps(record, allow_nan=False) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not sys.stdout:
            self._fh.close()
        else:
            self._fh.flush()


def write_jsonl(path: str, topic: str, params: Mapping[str, Any], seed: int, device: Any,
                frames: Iterable[Frame]) -> None:
    w = JsonlWriter(path)
    try:
        w.write(header_record(topic, params, seed, device))
        for f in frames:
            w.write(frame_record(topic, f))
    finally:
        w.close()


def write_csv(path: str, topic: str, frames: Iterable[Frame]) -> None:
    """One row per frame, one column per scalar (arrays are left to the JSONL)."""
    frames = list(frames)
    cols: list[str] = []
    for f in frames:
        for k in f.scalars:
            if k not in cols:
                cols.append(k)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["topic", "step", "time_s", *cols])
    for f in frames:
        row = [topic, f.step, f"{f.time_s:.6f}"]
        for k in cols:
            v = f.scalars.get(k)
            if isinstance(v, float) and not math.isfinite(v):
                v = ""
            row.append("" if v is None else v)
        w.writerow(row)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())
