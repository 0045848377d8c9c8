"""`mletui kernels`: the compile gate's table from the command line (engine/kernels/aot.py)."""

import json

import pytest

from mletui.engine.kernels import aot
from mletui.tui import cli

pytestmark = pytest.mark.filterwarnings("ignore:TRITON_DEFAULT_FP_FUSION")


@pytest.mark.parametrize("argv,flag", [(["kernels", "--arch", "sm_70"], "--arch"),
                                       (["kernels", "--bogus"], "--bogus")])
def test_bad_flag_exits_2_with_one_line_naming_it(capsys, argv, flag):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err


def test_the_cli_offers_the_archs_the_builder_knows():
    assert set(cli.KERNEL_ARCHS) == set(aot.ARCHS)


def test_json_lines_carry_every_figure_for_the_named_arch(capsys):
    pytest.importorskip("triton.backends.nvidia.compiler")
    assert cli.main(["kernels", "--arch", "sm_80", "--json", "--kernel", "_uniforms_kernel"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and {r["kernel"] for r in rows} == {"_uniforms_kernel"}
    for r in rows:
        assert {"kernel", "specialisation", "arch", "registers", "spills", "shared_bytes", "occupancy"} <= set(r)
        assert r["arch"] == "sm_80" and r["spills"] == 0 and 0 < r["registers"] <= 255
        assert 0 < r["occupancy"] <= 1
