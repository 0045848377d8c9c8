"""The prepared device check: one command on a machine with a CUDA GPU, the project copied in and
no network (``make gpu-check DIR=out``, or ``python3 engine/gpu_check.py out`` from the
repository root). Within a 4-minute budget, each step in its own subprocess with its own
timeout, so one hang loses only that step:

    install   pip install --no-deps --no-build-isolation --no-index -e .   (the machine's own
              torch and Triton; no UI packages needed); should it fail (setuptools < 68), the
              folders go on PYTHONPATH under their installed names instead
    device    Python, torch, Triton and the GPU; stops the check when CUDA is absent
    tests     pytest -m cuda tests/engine   (the engine tests collect without textual)
    bench     python -m mletui.engine.bench TOPIC --device cuda --quick, for every topic the
              registry (engine/bench) offers, each with its share of the time left (at most
              60 s; the rows printed before a cut are kept). Quick sizes are small: on a GPU
              they measure launch overhead more than the kernels (--full-bench for the rest)

After every step it rewrites ``DIR/gpu-check.json`` (each step's command, seconds, exit status,
output tail, and the benchmark rows) and ``DIR/gpu-check.md`` (the same as tables), so a check
killed from outside still leaves what it had. Exit status 0 when every step passed.

Only the standard library is imported here: the script runs before the project is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parent.parent
TAIL = 4000


def run_step(name: str, cmd: Sequence[str], timeout: float, cwd: Path = ROOT) -> dict[str, Any]:
    """Run ``cmd`` with a timeout (its whole process group is killed at the limit)."""
    t0 = time.monotonic()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("TRITON_INTERPRET", None)
    proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=max(1.0, timeout))
        status = "passed" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        status = "timeout"
    lines = [ln for ln in (out or "").splitlines() if ln.strip()]
    return {"step": name, "command": shlex.join(cmd), "status": status, "returncode": proc.returncode,
            "seconds": round(time.monotonic() - t0, 1), "timeout": round(timeout, 1),
            "summary": lines[-1].strip()[:200] if lines else "", "output": (out or "")[-TAIL:]}


def _json_lines(text: str) -> list[dict[str, Any]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return rows


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "/") if v is not None else ""


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# mletui gpu-check, {report['started']}", "",
             f"{report.get('device', 'device: unknown')}", "",
             "| step | status | seconds | timeout | last line | command |",
             "| --- | --- | --- | --- | --- | --- |"]
    for s in report["steps"]:
        cmd = s["command"] if "\n" not in s["command"] else s["command"].split("\n")[0] + " …"
        lines.append(f"| {s['step']} | {s['status']} | {s['seconds']} | {s['timeout']} | "
                     f"{_cell(s.get('summary', ''))} | `{cmd}` |")
    rows = report.get("bench", [])
    if rows:
        keys = ["topic", "case", "value", "unit", "baseline", "baseline_value", "ratio"]
        lines += ["", "## Benchmarks (quick sizes)", "", "| " + " | ".join(keys) + " |",
                  "| " + " | ".join("---" for _ in keys) + " |"]
        lines += ["| " + " | ".join(_cell(r.get(k)) for k in keys) + " |" for r in rows]
    failed = [s for s in report["steps"] if s["status"] != "passed"]
    for s in failed:
        lines += ["", f"## {s['step']}: {s['status']}", "", "```", s["output"][-1500:], "```"]
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], folder: Path) -> None:
    (folder / "gpu-check.json").write_text(json.dumps(report, indent=1) + "\n")
    (folder / "gpu-check.md").write_text(markdown(report))


DEVICE_PROBE = """
import sys, torch
try:
    import triton; tv = triton.__version__
except Exception as exc:
    tv = f"absent ({exc})"
want = sys.argv[1]
line = f"python {sys.version.split()[0]}, torch {torch.__version__}, triton {tv}"
if want == "cuda":
    if not torch.cuda.is_available():
        print(line + ": CUDA is not available"); sys.exit(1)
    p = torch.cuda.get_device_properties(0)
    line += f", {p.name} (sm_{p.major}{p.minor}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB)"
print(line)
"""


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpu_check", description="the prepared device check (module docstring)")
    p.add_argument("folder", help="where gpu-check.json and gpu-check.md are written")
    p.add_argument("--budget", type=float, default=240.0, help="seconds for the whole check (default 240)")
    p.add_argument("--device", default="cuda", help="cuda (default); cpu runs the same steps as a dry run")
    p.add_argument("--skip-install", action="store_true", help="the project is installed already")
    p.add_argument("--pytest", default="-m cuda tests/engine", help="pytest's arguments (default: %(default)s)")
    p.add_argument("--python", default=sys.executable, help="the interpreter that holds torch")
    p.add_argument("--topics", help="comma-separated topics to benchmark (default: all the registry offers)")
    p.add_argument("--full-bench", action="store_true",
                   help="the benchmarks' full sizes (default: --quick, small sizes that fit the budget)")
    args = p.parse_args(argv)
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    t_end = time.monotonic() + args.budget
    py = args.python
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "budget_s": args.budget,
                              "steps": [], "bench": []}

    def step(name: str, cmd: Sequence[str], timeout: float) -> dict[str, Any]:
        s = run_step(name, cmd, min(timeout, max(1.0, t_end - time.monotonic())))
        report["steps"].append(s)
        write(report, folder)
        print(f"gpu-check: {name}: {s['status']} in {s['seconds']} s", flush=True)
        return s

    write(report, folder)
    if not args.skip_install:
        s = step("install", [py, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                             "--quiet", "-e", str(ROOT)], 60)
        if s["status"] != "passed":
            # an old setuptools cannot do an editable install of this layout: put the three
            # folders on the path under their installed names instead (symlinks, no copy)
            shim = folder / "mletui-path"
            for name in ("engine", "tui", "assets"):
                link = shim / "mletui" / name
                link.parent.mkdir(parents=True, exist_ok=True)
                if not link.exists():
                    link.symlink_to(ROOT / name, target_is_directory=True)
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shim.resolve()),
                                                                    os.environ.get("PYTHONPATH")]))
            report["install_fallback"] = f"PYTHONPATH={shim.resolve()}"
            write(report, folder)
    s = step("device", [py, "-c", DEVICE_PROBE, args.device], 60)
    report["device"] = s["output"].strip().splitlines()[-1] if s["output"].strip() else ""
    write(report, folder)
    if s["status"] != "passed":
        return 1
    step("tests", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", *shlex.split(args.pytest)], 100)
    s = step("bench-list", [py, "-m", "mletui.engine.bench", "--list"], 30)
    topics = s["output"].split() if s["status"] == "passed" else []
    if args.topics is not None:
        wanted = [t for t in args.topics.split(",") if t]
        topics = [t for t in topics if t in wanted]
    report["topics"] = topics
    for i, topic in enumerate(topics):
        share = (t_end - time.monotonic()) / (len(topics) - i)
        s = step(f"bench {topic}", [py, "-m", "mletui.engine.bench", topic, "--device", args.device]
                 + ([] if args.full_bench else ["--quick"]), min(60.0, share))
        report["bench"].extend(_json_lines(s["output"]))
        write(report, folder)
    report["seconds"] = round(args.budget - (t_end - time.monotonic()), 1)
    write(report, folder)
    return 0 if all(s["status"] == "passed" for s in report["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
