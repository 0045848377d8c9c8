"""The `mletui` command: the dashboard, and the same engine headless.

    mletui [--topic T] [--set NAME=VALUE ...] [--preset NAME] [--seed S] [--device cpu|cuda] [--fps F]
    mletui topics [--json]
    mletui run TOPIC --steps N [--set NAME=VALUE ...] [--preset NAME] [--seed S]
                     [--device cpu|cuda] [--jsonl PATH|-] [--every K]
    mletui bench TOPIC [--device cpu|cuda] [--quick]
    mletui kernels [--arch sm_90|sm_80] [--json] [--full] [--kernel GLOB] [--sass]

Bad input exits with status 2 and one line naming the flag and the problem; nothing
starts on bad input. ``--set NAME=VALUE`` without ``--topic`` (or a preset) picks the one
topic that has every parameter named. On a terminal a run shows a progress bar on stderr;
with ``--jsonl PATH`` it ends with "wrote N frames to PATH", without it with the summary
table (also after Ctrl-C, for the steps done). Ctrl-C flushes and closes the JSONL file
and exits 130. ``NO_COLOR`` sends no colour codes; in ASCII mode (charset.py) nothing
printed is outside ASCII.
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

    k = sub.add_parser("kernels", help="build every Triton kernel ahead of time for a GPU (no GPU needed): "
                                       "registers, spills, shared memory, occupancy")
    k.add_argument("--arch", choices=KERNEL_ARCHS, default="sm_90",
                   help="target: sm_90 (H100/H200, default) or sm_80 (A100)")
    k.add_argument("--json", action="store_true", help="one JSON object per line")
    k.add_argument("--full", action="store_true", help="every declared specialisation, not the default few")
    k.add_argument("--kernel", metavar="GLOB", help="only kernels whose name matches, e.g. '_half*'")
    k.add_argument("--sass", action="store_true", help="also count each build's machine instructions")
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


def topic_for_sets(texts: dict[str, str], sets: Sequence[str]) -> str:
    """The one registered topic that has every parameter in ``texts`` (``--set`` without
    ``--topic``). UsageError with one line when none or several do."""
    from mletui.engine.topics import all_topics

    topics = all_topics()
    having = {n: [t.name for t in topics.values() if any(p.name == n for p in t.params)] for n in texts}
    flag = "--set " + " --set ".join(sets)
    unknown = [n for n, ts in having.items() if not ts]
    if unknown:
        raise UsageError(f"{flag}: no topic has a parameter {unknown[0]!r} (see `mletui topics`)")
    both = [t for t in topics if all(t in ts for ts in having.values())]
    if not both:
        raise UsageError(f"{flag}: no one topic has all of {', '.join(texts)}; choose one with --topic")
    if len(both) > 1:
        names = ", ".join(texts)
        raise UsageError(f"{flag}: {', '.join(both)} all have {names}; choose one with --topic")
    return both[0]


def resolve_params(topic_name: str | None, preset: str | None, sets: Sequence[str]):
    """-> (topic, typed params), through ``Topic.resolve`` (defaults, the preset's values,
    then the ``--set`` texts, last one of a name winning). Without a topic or a preset,
    ``--set`` names the topic (``topic_for_sets``). Raises UsageError with one line naming
    the flag on any bad input."""
    from mletui.engine import presets as presets_mod
    from mletui.engine.params import ParamError
    from mletui.engine.topics import get_topic

    texts = dict(_split_set(item) for item in sets)
    try:
        preset_obj = presets_mod.load(preset) if preset else None
        if preset_obj is not None and topic_name is not None and preset_obj.topic != topic_name:
            raise UsageError(f"--preset {preset}: it is for topic {preset_obj.topic!r}, not {topic_name!r}")
        name = topic_name or (preset_obj.topic if preset_obj else None)
        if name is None and texts:
            name = topic_for_sets(texts, sets)
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
    written = 0
    progress = _Progress(args.steps, topic.name) if _is_writer() and sys.stderr.isatty() else None
    try:
        if writer is not None:
            writer.write(header_record(topic.name, params, seed, device))
        for frame in frames:
            last = frame
            if writer is not None:
                rec = frame_record(topic.name, frame)
                writer.write(rec)
                written += 1
                for w in rec.get("warnings", ()):
                    _stderr_line(f"mletui: warning at step {frame.step}: {w}", progress)
            if progress is not None:
                progress.update(frame.step)
    except KeyboardInterrupt:
        if progress is not None:
            progress.close()
        if writer is not None:
            writer.close()
            _wrote(written, args.jsonl)
        elif _is_writer() and last is not None:
            _summary(topic, last, interrupted=True)
        print("mletui: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if writer is not None:
            writer.close()
    if progress is not None:
        progress.close()
    if writer is not None:
        _wrote(written, args.jsonl)
    elif _is_writer() and last is not None:
        _summary(topic, last)
    return 0


def _wrote(n: int, path: str) -> None:
    """The run's last line on stderr: where the frames went (not for stdout, which holds them)."""
    if path != "-":
        print(f"mletui: wrote {n} frame{'s' if n != 1 else ''} to {path}", file=sys.stderr)


def _stderr_line(text: str, progress: "_Progress | None") -> None:
    if progress is not None:
        progress.print(text)
    else:
        print(text, file=sys.stderr)


def console(stderr: bool = False):
    """A rich Console for the CLI's tables and progress bar: no colour under NO_COLOR (no
    escape codes at all when the output is not a terminal), ASCII boxes and bars in ASCII
    mode (charset.py)."""
    from rich.console import Console

    from .charset import glyphs

    ascii_mode = glyphs().ascii

    class _Console(Console):
        @property
        def encoding(self) -> str:  # rich draws ASCII boxes and bars for a non-UTF encoding
            return "ascii" if ascii_mode else super().encoding

    return _Console(stderr=stderr, no_color=bool(os.environ.get("NO_COLOR")), highlight=False)


class _Progress:
    """A rich progress bar on stderr."""

    def __init__(self, total: int, label: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._p = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                           TimeRemainingColumn(), console=console(stderr=True), transient=True)
        self._task = self._p.add_task(label, total=total)
        self._p.start()

    def update(self, step: int) -> None:
        self._p.update(self._task, completed=step)

    def print(self, text: str) -> None:
        self._p.console.print(text, markup=False)

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


def _summary(topic, frame, interrupted: bool = False) -> None:
    """The last frame's scalars: name, label, value and unit (Topic.scalars)."""
    from rich.table import Table

    from mletui.engine.views import describe

    from .charset import glyphs

    text = glyphs().text
    when = "interrupted after" if interrupted else "after"
    # "3 × Langevin step of every chain", "500 × sweep": a unit that is a phrase takes no plural "s"
    table = Table(title=text(f"{topic.title}: {when} {frame.step} × {topic.step_unit} ({frame.time_s:.2f} s)"))
    table.add_column("scalar")
    table.add_column("label")
    table.add_column("value", justify="right")
    table.add_column("unit")
    for k, v in frame.scalars.items():
        label, unit = describe(topic, k)
        table.add_row(k, text(label if label != k else ""), _fmt(v), text(unit))
    out = console()
    out.print(table)
    for note in frame.notes:
        out.print(text(f"note: {note}"), markup=False)


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
        if not args.json:
            print(f"# mletui {_version()} bench {topic.name} on {device} "
                  f"({time.strftime('%Y-%m-%d')})", flush=True)
        for row in rows:
            print(json.dumps(_json_safe(row)) if args.json else bench_line(row), flush=True)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return 0


_BENCH_KEYS = ("case", "value", "unit", "better", "value_min", "value_max", "load_avg", "baseline",
               "baseline_value", "baseline_min", "baseline_max", "ratio")


def _json_safe(v: Any) -> Any:
    """A bench row for ``--json``: values as they are (full precision); a non-finite float
    becomes null, so every line is strict JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def _spread(row: dict, lo: str, hi: str) -> str:
    from .charset import glyphs

    if row.get(lo) is None or row.get(hi) is None:
        return ""
    return glyphs().text(f" ({_fmt(row[lo])}–{_fmt(row[hi])})")


def bench_line(row: dict) -> str:
    """One bench row as text: the figure with its spread and unit, which direction is
    better, the baseline, the ratio, the load average, then the other keys."""
    from mletui.engine.bench import better

    line = (f"{row.get('case', ''):<28} {_fmt(row.get('value')):>10}{_spread(row, 'value_min', 'value_max')}"
            f" {row.get('unit', '')}, {better(row)} is better")
    if "baseline" in row or "baseline_value" in row:
        line += (f"; baseline {row.get('baseline', '')}: {_fmt(row.get('baseline_value'))}"
                 f"{_spread(row, 'baseline_min', 'baseline_max')}")
    if row.get("ratio") is not None:
        line += f"; ratio {_fmt(row.get('ratio'))}x"
    if row.get("load_avg") is not None:
        line += f"; load {row['load_avg']:.2f}"
    extra = {k: v for k, v in row.items() if k not in _BENCH_KEYS}
    if extra:
        line += "  " + " ".join(f"{k}={_fmt(v)}" for k, v in extra.items())
    return line


KERNEL_ARCHS = ("sm_90", "sm_80")   # engine.kernels.aot.ARCHS (kept light: no torch import to parse flags)


def cmd_kernels(args: argparse.Namespace) -> int:
    """Ahead-of-time builds of the engine's Triton kernels (engine/kernels/aot.py): exit 1 when
    a build failed or spilled registers."""
    from mletui.engine.kernels import aot

    try:
        return aot.run_report(args.arch, args.json, args.full, args.kernel, args.sass)
    except RuntimeError as exc:
        raise UsageError(f"kernels: {exc}") from None


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
    # The app has stopped its engines and restored the terminal; what is left is the
    # interpreter's teardown of torch and its modules, seconds on a loaded machine, with
    # nothing to save: leave at once so `q` exits within a second.
    rc = app.return_code or 0
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


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
        if args.command == "kernels":
            return cmd_kernels(args)
        return cmd_app(args)
    except UsageError as exc:
        print(f"mletui: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
