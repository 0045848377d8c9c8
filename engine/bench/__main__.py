"""The benchmark registry from the command line, with no UI package imported (for a GPU box
without textual: ``make gpu-check`` runs the benchmarks through this).

    python -m mletui.engine.bench --list
    python -m mletui.engine.bench TOPIC [TOPIC ...] [--device cpu|cuda] [--quick]

Prints one JSON object per benchmark row (the registry's keys, plus ``topic`` and
``device``). Bad input: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from ..device import describe_device, resolve_device
from ..params import ParamError
from . import bench, benchmarks


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    p = _Parser(prog="python -m mletui.engine.bench", description="benchmark rows as JSON lines")
    p.add_argument("topics", nargs="*", metavar="TOPIC")
    p.add_argument("--list", action="store_true", help="print the benchmarked topics, one a line")
    p.add_argument("--device", metavar="cpu|cuda", help="compute device (default: cuda when present)")
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = p.parse_args(argv)
    if args.list:
        for name in sorted(benchmarks()):
            print(name)
        return 0
    if not args.topics:
        p.error("name a TOPIC (or --list)")
    try:
        device = resolve_device(args.device)
        known = benchmarks()
        for topic in args.topics:
            if topic not in known:
                raise ParamError(f"{topic} has no benchmark (benchmarked: {', '.join(sorted(known)) or 'none'})")
        for topic in args.topics:
            for row in bench(topic, device, quick=args.quick):
                print(json.dumps({"topic": topic, "device": describe_device(device), **row}), flush=True)
    except ParamError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
