"""The compile gate: every launched Triton kernel builds ahead of time for sm_90 (H100/H200) and
sm_80 (A100) with no GPU, at the specialisations its launch sites use, without a register spill;
the resource figures and occupancy follow the CUDA occupancy calculator's rules.

The interpreter (TRITON_INTERPRET=1, the CPU test path) checks the kernels' arithmetic but not
what the compiler rejects or spills; these builds do. The specialisations come from each kernel
module's LAUNCHES (engine/kernels/__init__.py), which call the launch sites themselves, so a
new kernel or a changed launch is covered without editing this file. The default set builds
here; the full set (every tile, dtype and switch) under ``-m slow``."""

import importlib
import re
from collections import defaultdict

import pytest

try:
    import triton  # noqa: F401
    from triton.backends.nvidia import compiler as _nvidia  # noqa: F401
    HAS_NVIDIA_BACKEND = True
except Exception:  # pragma: no cover
    HAS_NVIDIA_BACKEND = False

from mletui.engine.kernels import aot

pytestmark = pytest.mark.filterwarnings("ignore:TRITON_DEFAULT_FP_FUSION")   # Triton 3.9's notice
needs_backend = pytest.mark.skipif(not HAS_NVIDIA_BACKEND, reason="triton with its NVIDIA backend not installed")
ARCH_NAMES = ("sm_90", "sm_80")
DEFAULT = aot.declared_launches(full=False) if HAS_NVIDIA_BACKEND else []
FULL = aot.declared_launches(full=True) if HAS_NVIDIA_BACKEND else []


def _ids(launches):
    return [f"{module}:{launch.label}" for module, launch in launches]


def _build_all(arch, full, cache_dir):
    rows = defaultdict(list)
    for row in aot.resource_rows(arch, full=full, cache_dir=str(cache_dir)):
        rows[(row.module, row.specialisation)].append(row)
    return rows


@pytest.fixture(scope="module")
def default_builds(tmp_path_factory):
    cache = tmp_path_factory.mktemp("triton-cache")   # a fresh cache: every build really runs
    return {arch: _build_all(arch, False, cache) for arch in ARCH_NAMES}


def _check(rows, launch, arch):
    """No build error; no spill unless the launch declares the spill as known on ``arch``, and
    then the spill must still be there (so a fixed kernel drops its ``known`` note)."""
    for row in rows:
        assert not row.error, f"{row.kernel} [{launch.label}] does not build for {arch}: {row.error}"
        assert row.registers and row.registers <= 255
        assert row.occupancy > 0, f"{row.kernel} [{launch.label}] cannot be resident on {arch}"
        if arch in launch.known_archs and launch.known:
            assert row.spills > 0, (f"{row.kernel} [{launch.label}] no longer spills on {arch}: "
                                    f"remove its known note ({launch.known})")
        else:
            assert row.spills == 0, (f"{row.kernel} [{launch.label}] spills {row.spills} bytes per "
                                     f"thread on {arch} ({row.registers} registers)")


@needs_backend
@pytest.mark.parametrize("arch", ARCH_NAMES)
@pytest.mark.parametrize("module,launch", DEFAULT, ids=_ids(DEFAULT))
def test_kernel_builds_for_the_gpu_without_spilling(default_builds, arch, module, launch):
    # a launch whose specialisation equals an earlier one has no row of its own: it is built
    _check(default_builds[arch].get((module, launch.label), []), launch, arch)


@needs_backend
@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_every_declared_specialisation_builds_without_spilling(tmp_path, arch):
    rows = _build_all(arch, True, tmp_path)
    for module, launch in FULL:
        _check(rows.get((module, launch.label), []), launch, arch)


@needs_backend
def test_the_default_set_covers_every_launched_kernel():
    """Every kernel a module launches (``name[grid](...)`` in its source) is launched by the
    module's declared LAUNCHES, and by its default set: a new kernel needs a declared launch."""
    for module in aot.kernel_modules():
        source = open(module.__file__).read()
        kernels = {name for name in re.findall(r"\b(\w+)\[[^\]\n]*\]\(", source)
                   if hasattr(getattr(module, name, None), "run")}
        launches = getattr(module, "LAUNCHES", ())
        declared = {rec.name for launch in launches for rec in aot.record(launch)}
        defaults = {rec.name for launch in launches if launch.default for rec in aot.record(launch)}
        short = module.__name__.rsplit(".", 1)[-1]
        assert kernels <= declared, f"{short}: no declared launch of {sorted(kernels - declared)}"
        assert kernels <= defaults, f"{short}: none in the default set for {sorted(kernels - defaults)}"
    found = {rec.name for _, launch in DEFAULT for rec in aot.record(launch)}
    assert {"_half_sweep_kernel", "_uniforms_kernel", "_measure_kernel", "_estep_kernel",
            "_cov_ema_kernel", "_langevin_step_kernel"} <= found


@needs_backend
def test_the_recorded_signature_is_the_one_the_launch_site_passes():
    """Derived from the launch, not copied: the half-sweep's spins arrive as int8 pointers,
    per-replica betas as float32, the tile as constexprs from _sweep_tiling, and an int
    argument equal to 1 (colour 1) as a constexpr, as Triton's JIT specialises a launch."""
    cb = importlib.import_module("mletui.engine.kernels.checkerboard")
    launch = next(x for x in cb.LAUNCHES if x.label == "L=64 metropolis colour=1")
    (rec,) = aot.record(launch)
    spec = aot.specialise(rec, aot.ARCHS["sm_90"])
    assert spec.signature["spins_ptr"] == "*i8" and spec.signature["beta_ptr"] == "*fp32"
    assert spec.signature["h"] == "fp32" and spec.signature["L"] == "i32"
    assert spec.signature["color"] == "constexpr"
    names = spec.kernel.arg_names
    consts = {names[k[0]]: v for k, v in spec.constexprs.items()}
    rows, qw = cb._sweep_tiling(64)
    assert consts["BLOCK_ROWS"] == rows and consts["QW"] == qw and consts["color"] == 1
    assert consts["METHOD"] == 0 and consts["HAS_COUP"] is False


def _keys(launch_site, values):
    arch = aot.ARCHS["sm_90"]
    keys = set()
    for v in values:
        with aot.recorded_launches() as calls:
            launch_site(v)
        keys.add(aot.specialise(calls[0], arch).key())
    return keys


@needs_backend
def test_per_step_arguments_never_trigger_a_new_build():
    """Triton builds a new kernel when an integer argument equals 1 or turns divisible by 16,
    unless the kernel lists it in do_not_specialize: the step counters and trace rows a run
    changes every step must not, or the first steps on a GPU stall on compiles. (The seed is
    fixed for a run; one past 2^31 is an i64 argument, another build, once.)"""
    import torch

    from mletui.engine.exact.targets import make_target
    from mletui.engine.kernels import checkerboard as cb, langevin as lv, placeholder

    packed = lv.pack_target(make_target("gaussian"), "meta")

    def step(v):
        counter, row = v
        lv.langevin_step_triton(placeholder(2, 1000), placeholder(1000), placeholder(2, 1000), 0.1, packed,
                                True, seed=12345, counter=counter, trace=placeholder(64, 256),
                                accept_count=placeholder(1, dtype=torch.int64), trace_row=row)

    assert len(_keys(step, [(c, r) for c in (0, 1, 2, 16, 17, 2**31 + 3) for r in (0, 1, 5, 16)])) == 1

    def sweep(counter):
        cb.half_sweep_triton(placeholder(2, 64, 64, dtype=torch.int8), 0, 0.4, 0.0, "metropolis",
                             seed=12345, counter=counter)

    # counters below 2^31 and their high words; from 2^31 on the low word is an i64: one more build
    assert len(_keys(sweep, [0, 1, 2, 16, 17, (1 << 32) + 1, (7 << 32) + 16])) == 1


# -- the resource figures ------------------------------------------------------------------------
@pytest.mark.parametrize("arch,regs,warps,dyn,expect,limit", [
    ("sm_90", 32, 4, 0, 1.0, "registers"),       # 16 blocks of 4 warps fill the 64 warp slots
    ("sm_90", 64, 4, 0, 0.5, "registers"),       # 2048 registers a warp: 8 warps per sub-partition
    ("sm_90", 72, 4, 0, 0.4375, "registers"),    # 2304 a warp: 7 per sub-partition, 28 warps
    ("sm_90", 255, 4, 0, 0.125, "registers"),    # 8160 -> 8192 a warp: 2 per sub-partition
    ("sm_80", 16, 8, 0, 1.0, "warps"),           # registers would allow 128 warps: the 64 slots bind
    ("sm_80", 32, 4, 100 * 1024, 0.0625, "shared"),   # 164 KiB per SM holds one 101 KiB block
    ("sm_90", 32, 4, 100 * 1024, 0.125, "shared"),    # 228 KiB holds two
    ("sm_80", 32, 4, 200 * 1024, 0.0, "shared"),      # over sm_80's 163 KiB per block
])
def test_occupancy_follows_the_cuda_occupancy_calculator(arch, regs, warps, dyn, expect, limit):
    occ, binding = aot.occupancy(aot.ARCHS[arch], regs, warps, 0, dyn)
    assert occ == expect
    assert binding == limit


def test_occupancy_counts_the_reservation_once():
    """An sm_90 cubin carries the driver's 1 KiB per-block reservation as static shared memory;
    an sm_80 cubin does not, and the driver adds it: the same footprint either way."""
    sm90, sm80 = aot.ARCHS["sm_90"], aot.ARCHS["sm_80"]
    kib = 1024
    assert aot.occupancy(sm90, 32, 4, kib, 55 * kib) == aot.occupancy(sm90, 32, 4, 0, 55 * kib)
    # 56 KiB blocks: 4 fit in 228 KiB (sm_90), 2 in 164 KiB (sm_80)
    assert aot.occupancy(sm90, 32, 4, kib, 55 * kib)[0] == 4 * 4 / 64
    assert aot.occupancy(sm80, 32, 4, 0, 55 * kib)[0] == 2 * 4 / 64


def test_resource_usage_is_read_from_cuobjdump_output():
    text = ("\nResource usage:\n Common:\n  GLOBAL:0\n Function _half_sweep_kernel:\n"
            "  REG:114 STACK:16 SHARED:1024 LOCAL:8 CONSTANT[0]:608 TEXTURE:0 SURFACE:0 SAMPLER:0\n"
            " Function other:\n  REG:8 STACK:0 SHARED:0 LOCAL:0 CONSTANT[0]:400\n")
    got = aot.parse_resource_usage(text)
    assert got["_half_sweep_kernel"]["REG"] == 114
    assert got["_half_sweep_kernel"]["STACK"] == 16 and got["_half_sweep_kernel"]["LOCAL"] == 8
    assert got["_half_sweep_kernel"]["SHARED"] == 1024 and got["_half_sweep_kernel"]["CONSTANT[0]"] == 608
    assert got["other"]["REG"] == 8


@needs_backend
@pytest.mark.cuda
def test_ahead_of_time_figures_match_the_loaded_kernel_on_this_gpu():
    """On a GPU: the driver's own register count of each loaded kernel equals what the compile
    gate reads off the cubin with cuobjdump, and both see the same spills (none)."""
    import torch

    major, minor = torch.cuda.get_device_capability()
    arch = aot.Arch(f"sm_{major}{minor}", 10 * major + minor, torch.cuda.get_device_name())
    checked = 0
    for _, launch in DEFAULT:
        for rec in aot.record(launch):
            compiled = aot.compile_for(aot.specialise(rec, arch), arch)
            res = aot.cubin_resources(compiled)
            compiled._init_handles()             # loads the cubin on the device
            assert compiled.n_regs == res["registers"], (launch.label, compiled.n_regs, res)
            assert (compiled.n_spills > 0) == (res["stack"] + res["local"] > 0), (launch.label, res)
            checked += 1
    assert checked >= len(DEFAULT)
