"""Frames kept and written: the runner's :class:`Record` (a regular, bounded history) and
the files made from frames, JSONL (header + one object per frame) and CSV (scalars).

One writer serves the headless CLI (``--jsonl``) and the app's export key, so a
file from either reads the same way.  Non-finite numbers are written as ``null``
with a ``warnings`` entry naming the field.  View-only data (lattices, raw
histogram counts) never reaches a file, nor the record.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from dataclasses import replace
from typing import IO, Any, Iterable, Mapping

import numpy as np
import torch

from .topic import Frame

try:
    from importlib.metadata import version as _pkg_version

    VERSION = _pkg_version("mletui")
except Exception:  # running from a checkout that is not installed
    VERSION = "0.1.0"


_STAMPED = re.compile(r"step \d+: ")


class Record:
    """A regular history of a run since its last reset, bounded in size: a frame at every
    step that is a multiple of ``every`` (and the last frame of a finite schedule), at most
    ``capacity`` of them. When full, every other frame goes and ``every`` doubles, so the
    record always spans the whole run at one step spacing (a decimating log): after S steps
    it holds between capacity/2 and capacity frames, whatever the run's length, and the
    exports made from it (the app's ``e``) are bounded on disk alike.

    What a dropped frame carried that its neighbours do not, its parameter edits and its
    notes, moves to the next frame kept ("step N: note"), so the record loses no event.
    Frames are stored without their view-only data. ``seq`` numbers each frame added, so
    a mirror (the process runner's parent side) can take the frames added since a count.
    """

    def __init__(self, every: int = 1, capacity: int = 2048) -> None:
        if every < 1 or capacity < 2:
            raise ValueError(f"a record needs every >= 1 and capacity >= 2, got {every}, {capacity}")
        self.first_every = int(every)
        self.capacity = int(capacity)
        self.every = self.first_every
        self.seq = 0
        self._frames: list[tuple[int, Frame]] = []
        self._carry_params: dict[str, Any] | None = None
        self._carry_notes: list[str] = []

    def __len__(self) -> int:
        return len(self._frames)

    def due(self, step: int) -> bool:
        """Whether the frame at ``step`` belongs in the record."""
        return step % self.every == 0

    def add(self, frame: Frame) -> bool:
        """Keep a copy of ``frame`` (without views) if its step is due or it ends the run;
        True when kept. A frame is added once, in step order."""
        if not (frame.done or self.due(frame.step)):
            return False
        kept = replace(frame, views={}, notes=list(frame.notes),
                       params=None if frame.params is None else dict(frame.params))
        self._take_carry(kept)
        self.seq += 1
        self._frames.append((self.seq, kept))
        if len(self._frames) > self.capacity:
            self._thin()
        return True

    def _take_carry(self, frame: Frame) -> None:
        if self._carry_params is not None and frame.params is None:
            frame.params = self._carry_params
        notes = [n for n in self._carry_notes if n not in frame.notes]
        frame.notes[:0] = notes
        self._carry_params, self._carry_notes = None, []

    def _thin(self) -> None:
        while len(self._frames) > self.capacity:
            self.every *= 2
            kept: list[tuple[int, Frame]] = []
            for seq, f in self._frames:
                if f.done or self.due(f.step):
                    self._take_carry(f)
                    kept.append((seq, f))
                    continue
                if f.params is not None:
                    self._carry_params = f.params
                self._carry_notes.extend(n if _STAMPED.match(n) else f"step {f.step}: {n}"
                                         for n in f.notes)
            self._frames = kept

    def clear(self) -> None:
        """Forget everything (the run was re-initialised); the spacing starts again."""
        self._frames = []
        self.every = self.first_every
        self._carry_params, self._carry_notes = None, []

    def frames(self) -> list[Frame]:
        return [f for _, f in self._frames]

    def since(self, seq: int) -> list[Frame]:
        """The frames still held that were added after the ``seq``-th."""
        return [f for s, f in self._frames if s > seq]


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
