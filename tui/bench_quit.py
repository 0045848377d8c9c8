"""Quit latency: the real app on a pseudo-terminal, tabs visited, then ``q``.

    python -m mletui.tui.bench_quit [--tabs 1,2,3,4] [--dwell 8] [--size 120x40] [--rounds 1]

Starts ``python -m mletui.tui.cli`` (the app as ``mletui`` starts it: engines in spawned
processes) on a pseudo-terminal of the given size, presses each tab's number key and waits
``dwell`` seconds on it (so its engine starts and steps), then presses ``q`` and reports
the seconds from that key to the app's exit, how many processes it had (all descendants,
and its engine processes) before the key, and how many engine processes were still alive
one second after the exit (read from /proc; Linux only).

Not a test: a measurement, for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import select
import struct
import sys
import termios
import time


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc/*/stat)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parent[int(entry)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out.extend(kids)
        frontier.extend(kids)
    return out


def _drain(fd: int, seconds: float) -> None:
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        r, _, _ = select.select([fd], [], [], min(left, 0.1))
        if r:
            try:
                os.read(fd, 65536)
            except OSError:
                return


def measure(tabs: list[str], dwell: float, size: tuple[int, int], extra: list[str]) -> dict:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the app
        os.environ.setdefault("TERM", "xterm-256color")
        os.execv(sys.executable, [sys.executable, "-m", "mletui.tui.cli", *extra])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
    _drain(fd, dwell)
    for key in tabs:
        os.write(fd, key.encode())
        _drain(fd, dwell)
    engines = len(_children(pid))
    tagged = len(_engine_processes())
    t0 = time.monotonic()
    os.write(fd, b"q")
    while True:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                os.read(fd, 65536)
            except OSError:
                pass
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            quit_s = time.monotonic() - t0
            break
        if time.monotonic() - t0 > 60:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            quit_s = float("inf")
            break
    os.close(fd)
    # children of an exited app are reparented to init: look them up by name
    time.sleep(1.0)
    left = [p for p in _engine_processes() if p != pid]  # reparented to init if still there
    return {"tabs": tabs, "dwell_s": dwell, "size": f"{size[0]}x{size[1]}", "processes_before_q": engines,
            "engine_processes_before_q": tagged,
            "quit_s": round(quit_s, 2), "engines_left_after_1s": len(left),
            "load_avg": round(os.getloadavg()[0], 2)}


def _engine_processes() -> list[int]:
    """The engine processes this measurement's apps spawned: multiprocessing spawn
    children (by their argv) carrying this run's MLETUI_BENCH_TAG in their environment."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if any(b"multiprocessing.spawn" in a or b"spawn_main" in a for a in argv) \
                and any(b"--multiprocessing-fork" in a for a in argv):
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    env = f.read()
            except OSError:
                env = b""
            if f"MLETUI_BENCH_TAG={os.environ.get('MLETUI_BENCH_TAG', '')}".encode() in env:
                out.append(int(entry))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mletui.tui.bench_quit", description=__doc__.splitlines()[0])
    ap.add_argument("--tabs", default="1,2,3,4", help="number keys pressed in turn, comma-separated")
    ap.add_argument("--dwell", type=float, default=8.0, help="seconds on each tab")
    ap.add_argument("--size", default="120x40")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("app_args", nargs="*", help="arguments for the app (after --)")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    os.environ["MLETUI_BENCH_TAG"] = f"bench-quit-{os.getpid()}"
    for _ in range(args.rounds):
        row = measure(args.tabs.split(","), args.dwell, (w, h), args.app_args)
        row["date"] = time.strftime("%Y-%m-%d %H:%M")
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
