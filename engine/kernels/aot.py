"""Ahead-of-time builds of every launched Triton kernel for a named NVIDIA GPU, on a machine
without one, and what the builds cost on the chip: registers, spills, shared memory, occupancy.

    python -m mletui.engine.kernels.aot [--arch sm_90|sm_80] [--json] [--full] [--kernel GLOB]
    (the same as ``mletui kernels``)

How a specialisation is built. Each kernel module's ``LAUNCHES`` (see ``engine/kernels``)
calls its launch site with placeholder tensors; :func:`recorded_launches` records each
``kernel[grid](...)`` instead of running it. The recorded arguments are specialised exactly as
Triton's JIT specialises a launch (its own binder: argument types, an integer equal to 1 made a
constexpr, pointers and integers divisible by 16 marked so, the constexprs, ``num_warps``),
and built with ``triton.compile(ASTSource(fn, signature, constexprs, attrs),
target=GPUTarget("cuda", cc, 32))``: Triton's bundled ``ptxas`` makes the cubin, no GPU needed.

What is read off the cubin, with the ``cuobjdump --dump-resource-usage`` shipped in the Triton
wheel: REG (registers per thread), STACK and LOCAL (bytes of local memory per thread: register
spills, or arrays the compiler could not keep in registers; either is device-memory traffic in
the inner loop, so ``spills`` is their sum and the compile gate requires 0), SHARED (static
shared memory; an sm_90 cubin carries the driver's 1 KiB per-block reservation there). Triton's
dynamic shared memory (its reductions' and layout conversions' scratch) comes from the build's
metadata; ``shared_bytes`` is static + dynamic.

Occupancy, by the rules of NVIDIA's CUDA occupancy calculator: registers are allocated per warp
in units of 256 within each of an SM's 4 sub-partitions (65536 registers per SM on sm_80 and
sm_90); shared memory per block is rounded up to 128 bytes, plus the 1 KiB reservation where the
cubin does not already carry it; at most 64 warps and 32 blocks per SM. ``occupancy`` is resident
warps / 64, the fraction of the SM's warp slots the kernel can fill; ``limit`` names the resource
that binds. It is an upper bound on latency hiding, not a speed: a memory-bound kernel at 25 %
occupancy with enough bytes in flight can still run at the bandwidth roofline (BENCHMARKS.md).

Under ``TRITON_INTERPRET=1`` (the test suite on a CPU) the kernels are interpreted functions and
cannot be compiled: :func:`resource_rows` then runs this module in a subprocess without it.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from . import Launch, triton


@dataclass(frozen=True)
class Arch:
    """What the occupancy calculator needs of one compute capability."""

    name: str              # "sm_90"
    capability: int        # 90
    chips: str             # "H100/H200"
    regs_per_sm: int = 65536
    max_regs_per_thread: int = 255
    max_warps_per_sm: int = 64
    max_blocks_per_sm: int = 32
    smem_per_sm: int = 233472          # bytes usable by blocks (228 KiB on sm_90)
    smem_per_block: int = 232448       # opt-in maximum for one block (227 KiB on sm_90)
    reserved_smem: int = 1024          # the driver's per-block reservation (sm_80 and newer)


ARCHS = {
    "sm_90": Arch("sm_90", 90, "H100/H200"),
    "sm_80": Arch("sm_80", 80, "A100", smem_per_sm=167936, smem_per_block=166912),
}

SUB_PARTITIONS = 4
REG_ALLOC_UNIT = 256      # registers per warp are allocated in multiples of this
SMEM_ALLOC_UNIT = 128     # bytes
WARP = 32


def occupancy(arch: Arch, registers: int, warps: int, static_smem: int,
              dynamic_smem: int) -> tuple[float, str]:
    """(resident warps per SM / max warps per SM, the binding limit), by the CUDA occupancy
    calculator's rules (see the module docstring). 0.0 when one block does not fit."""
    regs_per_warp = -(-max(1, registers) * WARP // REG_ALLOC_UNIT) * REG_ALLOC_UNIT
    if registers > arch.max_regs_per_thread:
        return 0.0, "registers"
    warps_per_sub = (arch.regs_per_sm // SUB_PARTITIONS) // regs_per_warp
    smem = dynamic_smem + max(static_smem, arch.reserved_smem)
    smem = -(-smem // SMEM_ALLOC_UNIT) * SMEM_ALLOC_UNIT
    if smem - arch.reserved_smem > arch.smem_per_block:
        return 0.0, "shared"
    limits = {
        "warps": arch.max_warps_per_sm // warps,
        "blocks": arch.max_blocks_per_sm,
        "registers": warps_per_sub * SUB_PARTITIONS // warps,
        "shared": arch.smem_per_sm // smem,
    }
    blocks = min(limits.values())
    binding = next(k for k in ("registers", "shared", "warps", "blocks") if limits[k] == blocks)
    return blocks * warps / arch.max_warps_per_sm, binding


_RESOURCE = re.compile(r"Function\s+(\S+?):\s*\n\s*(.*)")


def parse_resource_usage(text: str) -> dict[str, dict[str, int]]:
    """``cuobjdump --dump-resource-usage`` output -> {function: {"REG": n, "STACK": n, ...}}."""
    out: dict[str, dict[str, int]] = {}
    for name, line in _RESOURCE.findall(text):
        out[name] = {k: int(v) for k, v in re.findall(r"([A-Z_]+(?:\[\d+\])?):(\d+)", line)}
    return out


def cuobjdump() -> str:
    """The ``cuobjdump`` that ships in the Triton wheel (else one on PATH)."""
    if triton is not None:
        path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("cuobjdump")
    if found is None:
        raise RuntimeError("no cuobjdump: neither in the Triton wheel nor on PATH")
    return found


# -- recording launches ------------------------------------------------------------------------
@dataclass
class Recorded:
    """One ``kernel[grid](*args, **kwargs)`` a launch site made."""

    kernel: Any
    grid: Any
    args: tuple
    kwargs: dict

    @property
    def name(self) -> str:
        return self.kernel.__name__


@contextmanager
def recorded_launches() -> Iterator[list[Recorded]]:
    """Within the block every Triton kernel launch (``kernel[grid](...)``, compiled or
    interpreted) is recorded in the yielded list and not run. Not thread-safe: it swaps
    Triton's launch proxy for the whole process while the block runs."""
    from triton.runtime.jit import KernelInterface

    calls: list[Recorded] = []
    original = KernelInterface.__getitem__

    def record(self, grid):
        return lambda *args, **kwargs: calls.append(Recorded(self, grid, args, kwargs))

    KernelInterface.__getitem__ = record
    try:
        yield calls
    finally:
        KernelInterface.__getitem__ = original


def _jit_function(kernel: Any) -> Any:
    """The JITFunction behind a kernel (an interpreted one is rebuilt with the same options:
    enough to specialise, not to compile)."""
    from triton.runtime.jit import JITFunction

    if isinstance(kernel, JITFunction):
        return kernel
    return JITFunction(kernel.fn, **getattr(kernel, "kwargs", {}))


@dataclass(frozen=True)
class Specialisation:
    """A recorded launch specialised for one target, as Triton's JIT would at that launch."""

    kernel: Any                # the JITFunction
    signature: dict
    constexprs: dict
    attrs: dict
    options: dict

    def key(self) -> tuple:
        return (self.kernel.__name__, tuple(self.signature.items()),
                tuple(sorted((k, repr(v)) for k, v in self.constexprs.items())),
                tuple(sorted((k, repr(v)) for k, v in self.attrs.items())),
                self.options.get("num_warps"), self.options.get("num_stages"))


def specialise(rec: Recorded, arch: Arch) -> Specialisation:
    """The signature, constexprs and divisibility attributes Triton's JIT derives from a
    launch's arguments (its own binder and argument packing: the same code a GPU launch runs)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    fn = _jit_function(rec.kernel)
    backend = make_backend(GPUTarget("cuda", arch.capability, WARP))
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, spec, opts = binder(*rec.args, **rec.kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, rec.kwargs, bound, spec, opts)
    return Specialisation(fn, signature, constexprs, attrs, dict(options.__dict__))


# -- building ------------------------------------------------------------------------------------
@dataclass
class Row:
    """One kernel specialisation built for one arch (``error`` set when the build failed)."""

    kernel: str
    specialisation: str
    arch: str
    module: str = ""
    registers: int | None = None
    spills: int | None = None
    shared_bytes: int | None = None
    occupancy: float | None = None
    warps: int | None = None
    limit: str = ""
    instructions: int | None = None
    seconds: float = 0.0
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        d = {"kernel": self.kernel, "specialisation": self.specialisation, "arch": self.arch,
             "registers": self.registers, "spills": self.spills, "shared_bytes": self.shared_bytes,
             "occupancy": self.occupancy, "warps": self.warps, "limit": self.limit,
             "module": self.module, "seconds": round(self.seconds, 2)}
        if self.instructions is not None:
            d["instructions"] = self.instructions
        if self.error:
            d["error"] = self.error
        return d


def compile_for(spec: Specialisation, arch: Arch) -> Any:
    """``triton.compile`` of one specialisation for ``arch`` (Triton's bundled ptxas; no GPU)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    src = ASTSource(spec.kernel, spec.signature, spec.constexprs, spec.attrs)
    return triton.compile(src, target=GPUTarget("cuda", arch.capability, WARP), options=spec.options)


def cubin_resources(compiled: Any) -> dict[str, int]:
    """A compiled kernel's registers, stack, local, static_shared (cuobjdump on its cubin),
    dynamic_shared and warps (its metadata)."""
    cubin = compiled.asm.get("cubin")
    if not cubin:
        raise RuntimeError("the build produced no cubin")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.cubin")
        with open(path, "wb") as fh:
            fh.write(cubin)
        out = subprocess.run([cuobjdump(), "--dump-resource-usage", path], capture_output=True,
                             text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"cuobjdump failed: {out.stderr.strip()[:300]}")
    usage = parse_resource_usage(out.stdout)
    res = usage.get(compiled.metadata.name) or next(iter(usage.values()), None)
    if res is None:
        raise RuntimeError(f"cuobjdump listed no function: {out.stdout[:300]}")
    return {"registers": res.get("REG", 0), "stack": res.get("STACK", 0), "local": res.get("LOCAL", 0),
            "static_shared": res.get("SHARED", 0), "dynamic_shared": int(compiled.metadata.shared),
            "warps": int(compiled.metadata.num_warps)}


_SASS_OP = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)")


def sass_instructions(compiled: Any) -> int:
    """Machine instructions in the cubin (``cuobjdump -sass``), NOPs excepted: for a kernel
    without loops, what each thread issues per launch (the rooflines in BENCHMARKS.md divide
    it by the units of work a thread does)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "kernel.cubin")
        with open(path, "wb") as fh:
            fh.write(compiled.asm["cubin"])
        out = subprocess.run([cuobjdump(), "-sass", path], capture_output=True, text=True, timeout=120)
    return sum(1 for op in _SASS_OP.findall(out.stdout) if op != "NOP")


def build(spec: Specialisation, arch: Arch, sass: bool = False) -> dict[str, int]:
    """Compile one specialisation for ``arch``; its resources (:func:`cubin_resources`), and
    with ``sass`` its instruction count (:func:`sass_instructions`)."""
    compiled = compile_for(spec, arch)
    res = cubin_resources(compiled)
    if sass:
        res["instructions"] = sass_instructions(compiled)
    return res


def kernel_modules() -> list[Any]:
    """Every module of ``engine/kernels`` (this one excepted), imported."""
    from mletui.engine import kernels

    names = [m.name for m in pkgutil.iter_modules(kernels.__path__) if m.name != "aot"]
    return [importlib.import_module(f"{kernels.__name__}.{n}") for n in sorted(names)]


def declared_launches(full: bool = False) -> list[tuple[str, Launch]]:
    """(module short name, Launch) for every module's LAUNCHES: the default ones, or all."""
    found = []
    for module in kernel_modules():
        for launch in getattr(module, "LAUNCHES", ()):
            if full or launch.default:
                found.append((module.__name__.rsplit(".", 1)[-1], launch))
    return found


def record(launch: Launch) -> list[Recorded]:
    """The kernel launches one declared launch makes (its launch site run on placeholders)."""
    with recorded_launches() as calls:
        launch.call()
    if not calls:
        raise RuntimeError(f"launch {launch.label!r} launched no kernel")
    return calls


def _interpreted() -> bool:
    from triton.runtime.jit import JITFunction

    for module in kernel_modules():
        for obj in vars(module).values():
            if hasattr(obj, "fn") and hasattr(obj, "rewrite") and not isinstance(obj, JITFunction):
                return True
    return False


def _rows_here(arch: Arch, full: bool, kernel: str | None, sass: bool = False) -> Iterator[Row]:
    seen: set = set()
    for module, launch in declared_launches(full):
        try:
            calls = record(launch)
        except Exception as exc:
            yield Row("?", launch.label, arch.name, module, error=_one_line(exc))
            continue
        for rec in calls:
            if kernel and not fnmatch.fnmatch(rec.name, kernel):
                continue
            row = Row(rec.name, launch.label, arch.name, module)
            t0 = time.perf_counter()
            try:
                spec = specialise(rec, arch)
                if spec.key() in seen:
                    continue
                seen.add(spec.key())
                res = build(spec, arch, sass)
            except Exception as exc:
                row.error = _one_line(exc)
            else:
                row.registers = res["registers"]
                row.spills = res["stack"] + res["local"]
                row.shared_bytes = res["static_shared"] + res["dynamic_shared"]
                row.warps = res["warps"]
                row.instructions = res.get("instructions")
                row.occupancy, row.limit = occupancy(arch, res["registers"], res["warps"],
                                                     res["static_shared"], res["dynamic_shared"])
            row.seconds = time.perf_counter() - t0
            yield row


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    # a compile error's last line says what failed; keep the first and last
    return (lines[0] if len(lines) < 2 else f"{lines[0]} ... {lines[-1]}")[:400]


def resource_rows(arch: str = "sm_90", full: bool = False, kernel: str | None = None,
                  cache_dir: str | None = None, sass: bool = False) -> Iterator[Row]:
    """Build every declared launch (default set, or ``full``) for ``arch``; one Row per distinct
    specialisation. Under the interpreter the builds run in a subprocess (module docstring)."""
    if triton is None:
        raise RuntimeError("triton is not installed: no kernel to build")
    target = ARCHS[arch]
    if cache_dir is None and not _interpreted():
        yield from _rows_here(target, full, kernel, sass)
        return
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")   # Triton's default; silences its notice
    if cache_dir is not None:
        env["TRITON_CACHE_DIR"] = cache_dir
    cmd = [sys.executable, "-m", __name__, "--arch", arch, "--json"] + (["--full"] if full else []) \
        + (["--kernel", kernel] if kernel else []) + (["--sass"] if sass else [])
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{"):
            d = json.loads(line)
            yield Row(**{k: d.get(k) for k in ("kernel", "specialisation", "arch", "registers", "spills",
                                                 "shared_bytes", "occupancy", "warps")},
                      module=d.get("module", ""), limit=d.get("limit", ""),
                      instructions=d.get("instructions"), seconds=d.get("seconds", 0.0),
                      error=d.get("error", ""))
    err = proc.stderr.read() if proc.stderr else ""
    if proc.wait() not in (0, 1):
        raise RuntimeError(f"the build subprocess failed: {err.strip()[-600:]}")


def format_row(row: Row) -> str:
    if row.error:
        return f"{row.kernel:<24} {row.specialisation:<36} ERROR {row.error}"
    return (f"{row.kernel:<24} {row.specialisation:<36} {row.registers:>4} {row.spills:>6} "
            f"{row.shared_bytes:>7} {row.warps:>5} {100 * row.occupancy:>8.1f}%  {row.limit:<9}"
            + (f" {row.instructions:>6}" if row.instructions is not None else ""))


HEADER = f"{'kernel':<24} {'specialisation':<36} {'regs':>4} {'spills':>6} {'shared':>7} {'warps':>5} {'occupancy':>9}  limit"


def run_report(arch: str, as_json: bool, full: bool = False, kernel: str | None = None,
               sass: bool = False, out=None) -> int:
    """Print the table (or JSON lines) for ``arch``; 1 when a build failed or spilled, else 0."""
    out = out or sys.stdout
    target = ARCHS[arch]
    failed = False
    if not as_json:
        print(f"# {target.name} ({target.chips}): Triton {triton.__version__} ahead-of-time builds, "
              f"{'full' if full else 'default'} set; occupancy = resident warps / {target.max_warps_per_sm}",
              file=out, flush=True)
        print(HEADER, file=out, flush=True)
    for row in resource_rows(arch, full, kernel, sass=sass):
        failed |= bool(row.error) or bool(row.spills)
        print(json.dumps(row.as_json()) if as_json else format_row(row), file=out, flush=True)
    return 1 if failed else 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``mletui kernels`` (shared with ``python -m``)."""
    p.add_argument("--arch", choices=sorted(ARCHS), default="sm_90",
                   help="target GPU: sm_90 (H100/H200, default) or sm_80 (A100)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per line: kernel, specialisation, arch, registers, spills, "
                        "shared_bytes, occupancy")
    p.add_argument("--full", action="store_true", help="every declared specialisation, not the default few")
    p.add_argument("--kernel", metavar="GLOB", help="only kernels whose name matches (e.g. '_half*')")
    p.add_argument("--sass", action="store_true", help="also count each build's machine instructions")


def main(argv: Sequence[str] | None = None) -> int:
    p = _Parser(prog="python -m mletui.engine.kernels.aot", description=__doc__.splitlines()[0])
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run_report(args.arch, args.json, args.full, args.kernel, args.sass)
    except RuntimeError as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
