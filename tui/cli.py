"""The `mletui` command: the dashboard, and the same engine headless.

    mletui [--topic T] [--set NAME=VALUE ...] [--preset NAME] [--seed S] [--device cpu|cuda] [--fps F]
    mletui topics [--json]
    mletui run TOPIC --steps N [--set NAME=VALUE ...] [--preset NAME] [--seed S]
                     [--device cpu|cuda] [--jsonl PATH|-] [--every K]
    mletui bench TOPIC [--device cpu|cuda] [--quick]

Bad input exits with status 2 and one line naming the flag and the problem; nothing
starts on bad input. Ctrl-C during a run flushes and closes the JSONL file and exits 130.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any, NoReturn, Sequence

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad command-line input: one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + message
        raise UsageError(message)


def _version() -> str:
    from mletui.engine.record import VERSION

    return VERSION


def _build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                        help="set a topic parameter (repeatable); see `mletui topics`")
    common.add_argument("--preset", metavar="NAME", help="load a named parameter set (assets/presets or your own)")
    common.add_argument("--seed", type=int, metavar="S", help="random seed (runs on the CPU are reproducible)")
    common.add_argument("--device", metavar="cpu|cuda", help="compute device (default: cuda when present, else cpu)")

    p = _Parser(prog="mletui", parents=[common],
                description="A keyboard-driven terminal lab for maximum-likelihood learning and Monte Carlo sampling.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--topic", metavar="T", help="tab to open first")
    p.add_argument("--fps", type=float, default=4.0, metavar="F", help="plot redraws per second (default 4)")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    t = sub.add_parser("topics", help="list topics and their parameters")
    t.add_argument("--json", action="store_true", help="machine-readable output")

    r = sub.add_parser("run", parents=[common], help="run a topic headless")
    r.add_argument("topic", metavar="TOPIC")
    r.add_argument("--steps", type=int, required=True, metavar="N", help="number of steps (a finite schedule may end sooner)")
    r.add_argument("--jsonl", metavar="PATH|-", help="write frames as JSON lines to PATH, or '-' for stdout")
    r.add_argument("--every", type=int, metavar="K",
                   help="write a frame every K steps (default: the topic's, see Topic.every)")

    b = sub.add_parser("bench", help="measure a topic's throughput against its baseline")
    b.add_argument("topic", metavar="TOPIC")
    b.add_argument("--device", metavar="cpu|cuda", help="compute device")
    b.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    b.add_argument("--json", action="store_true", help="one JSON object per row")
    return p


# -- shared resolution of topic + preset + --set + device --------------------------------
def _split_set(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise UsageError(f"--set {item}: expected NAME=VALUE")
    name, value = item.split("=", 1)
    name = name.strip()
    if not name:
        raise UsageError(f"--set {item}: expected NAME=VALUE (the name is empty)")
    return name, value


def resolve_params(topic_name: str | None, preset: str | None, sets: Sequence[str]):
    """-> (topic, typed params), through ``Topic.resolve`` (defaults, the preset's values,
    then the ``--set`` texts, last one of a name winning). Raises UsageError with one line
    naming the flag on any bad input."""
    from mletui.engine import presets as presets_mod
    from mletui.engine.params import ParamError
    from mletui.engine.topics import get_topic

    texts = dict(_split_set(item) for item in sets)
    try:
        preset_obj = presets_mod.load(preset) if preset else None
        if preset_obj is not None and topic_name is not None and preset_obj.topic != topic_name:
            raise UsageError(f"--preset {preset}: it is for topic {preset_obj.topic!r}, not {topic_name!r}")
        name = topic_name or (preset_obj.topic if preset_obj else None)
        if name is None:
            return None, {}
        topic = get_topic(name)
    except ParamError as exc:
        raise UsageError(str(exc)) from None
    try:
        params = topic.resolve(texts=texts, preset=preset_obj.params if preset_obj else None)
    except ParamError as exc:
        if exc.layer == "preset":
            raise UsageError(f"--preset {preset}: {exc}") from None
        if exc.layer == "texts":
            raise UsageError(f"--set {exc.param}={texts[exc.param]}: {exc}") from None
        raise UsageError(f"--set: {exc}") from None
    return topic, params


def resolve_device_arg(name: str | None):
    from mletui.engine.device import resolve_device
    from mletui.engine.params import ParamError

    try:
        return resolve_device(name)
    except ParamError as exc:
        raise UsageError(str(exc)) from None


# -- commands -------------------------------------------------------------------------------
def cmd_topics(as_json: bool) -> int:
    """The registered topics and their params; a topic module that failed to import is
    named on stderr with the reason (exit status 0: the others are usable)."""
    from mletui.engine.topics import all_topics, failed_topics

    from .charset import glyphs

    text = glyphs().text
    topics = all_topics()
    if as_json:
        out = [{"name": t.name, "title": t.title, "finite": t.finite, "step": t.step_unit,
                "params": [p.describe() for p in t.params]} for t in topics.values()]
        print(json.dumps(out, indent=2))
    else:
        for t in topics.values():
            kind = "finite schedule" if t.finite else "runs until stopped"
            print(text(f"{t.name} — {t.title} (one step = one {t.step_unit}; {kind})"))
            rows = [p.describe() for p in t.params]
            w = [max(len(str(r[k])) for r in rows) for k in ("name", "type", "default", "range")]
            for r in rows:
                live = "live" if r["live"] else "re-init"
                print(text(f"  {r['name']:<{w[0]}}  {r['type']:<{w[1]}}  {r['default']:<{w[2]}}  "
                           f"{r['range']:<{w[3]}}  {live:<7}  {r['help']}"))
            print()
    for name, why in failed_topics().items():
        print(f"mletui: topic {name} not loaded: {why}", file=sys.stderr)
    return 0


def _is_writer() -> bool:
    """Under torchrun only rank 0 writes output."""
    return int(os.environ.get("RANK", "0")) == 0


def cmd_run(args: argparse.Namespace) -> int:
    from mletui.engine.record import JsonlWriter, frame_record, header_record
    from mletui.engine.runner import run

    if args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    if args.every is not None and args.every < 1:
        raise UsageError(f"--every must be >= 1, got {args.every}")
    topic, params = resolve_params(args.topic, args.preset, args.sets)
    every = topic.every if args.every is None else args.every
    device = resolve_device_arg(args.device)
    seed = 0 if args.seed is None else args.seed
    writer = None
    if args.jsonl and _is_writer():
        try:
            writer = JsonlWriter(args.jsonl)
        except OSError as exc:
            raise UsageError(f"--jsonl {args.jsonl}: cannot write: {exc.strerror}") from None

    frames = run(topic, steps=args.steps, params=params, seed=seed, device=device, every=every)
    last = None
    progress = None
    try:
        if writer is not None:
            writer.write(header_record(topic.name, params, seed, device))
        elif _is_writer():
            progress = _Progress(args.steps, topic.name)
        for frame in frames:
            last = frame
            if writer is not None:
                rec = frame_record(topic.name, frame)
                writer.write(rec)
                for w in rec.get("warnings", ()):
                    print(f"mletui: warning at step {frame.step}: {w}", file=sys.stderr)
            if progress is not None:
                progress.update(frame.step)
    except KeyboardInterrupt:
        if progress is not None:
            progress.close()
        if writer is not None:
            writer.close()
        print("mletui: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if writer is not None:
            writer.close()
    if progress is not None:
        progress.close()
        if last is not None:
            _summary(topic, last)
    return 0


class _Progress:
    """A rich progress bar on stderr."""

    def __init__(self, total: int, label: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._p = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                           TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        self._task = self._p.add_task(label, total=total)
        self._p.start()

    def update(self, step: int) -> None:
        self._p.update(self._task, completed=step)

    def close(self) -> None:
        self._p.stop()


def _fmt(v: Any) -> str:
    """A value in the run summary and the bench table: 6 significant digits; no value is a
    dash (ASCII on an ASCII terminal)."""
    from .charset import glyphs

    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    if v is None:
        return glyphs().text("—")
    return str(v)


def _summary(topic, frame) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{topic.title}: after {frame.step} {topic.step_unit}s ({frame.time_s:.2f} s)")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for k, v in frame.scalars.items():
        table.add_row(k, _fmt(v))
    Console(no_color=bool(os.environ.get("NO_COLOR"))).print(table)
    for note in frame.notes:
        print(f"note: {note}")


def cmd_bench(args: argparse.Namespace) -> int:
    """The rows of ``engine/bench/<topic>.py`` (the registry ``engine.bench``). An unknown
    topic, or one without a benchmark module, exits 2 with the registry's one line."""
    from mletui.engine.bench import bench
    from mletui.engine.params import ParamError
    from mletui.engine.topics import get_topic

    try:
        topic = get_topic(args.topic)
    except ParamError as exc:
        raise UsageError(str(exc)) from None
    device = resolve_device_arg(args.device)
    try:
        rows = bench(topic.name, device, quick=args.quick)
    except ParamError as exc:
        raise UsageError(str(exc)) from None
    try:
        print(f"# mletui {_version()} bench {topic.name} on {device} "
              f"({time.strftime('%Y-%m-%d')})", flush=True)
        for row in rows:
            if args.json:
                print(json.dumps(row), flush=True)
                continue
            ratio = row.get("ratio")
            extra = {k: v for k, v in row.items()
                     if k not in ("case", "value", "unit", "baseline", "baseline_value", "ratio")}
            line = (f"{row.get('case', ''):<28} {_fmt(row.get('value')):>10} {row.get('unit', ''):<12}"
                    f" baseline {row.get('baseline', '')}: {_fmt(row.get('baseline_value'))}"
                    f"  ratio {_fmt(ratio)}x")
            if extra:
                line += "  " + " ".join(f"{k}={_fmt(v)}" for k, v in extra.items())
            print(line, flush=True)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    topic, params = resolve_params(args.topic, args.preset, args.sets)
    device = resolve_device_arg(args.device)
    if not (args.fps > 0 and math.isfinite(args.fps)) or args.fps > 60:
        raise UsageError(f"--fps must be in (0, 60], got {args.fps}")
    from mletui.tui.app import MletuiApp

    overrides = {topic.name: params} if topic is not None else {}
    app = MletuiApp(topic=topic.name if topic is not None else None, overrides=overrides,
                    seed=args.seed, device=device, fps=args.fps, preset_name=args.preset)
    app.run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        if args.version:
            print(f"mletui {_version()}")
            return 0
        if args.command == "topics":
            return cmd_topics(args.json)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "bench":
            return cmd_bench(args)
        return cmd_app(args)
    except UsageError as exc:
        print(f"mletui: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
