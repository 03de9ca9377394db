"""Standalone micro-benchmarks: `--gemm MxKxN` (MeshGEMM, WaferLLM Fig. 9) and `--allreduce N` (WaferLLM Fig. 10,
Luczynski et al.): the same cost functions as the model simulation, timed alone."""

import json

import pytest

from runtime.wafer import cli
from runtime.wafer.errors import WaferError


def _run(**fields):
    return cli.run_case(dict(hardware="wse2", **fields))


def test_gemm_scales_with_the_grid_and_reports_flops():
    runs = [_run(gemm="8192x8192x8192", grid=f"{p}x{p}") for p in (240, 360, 480, 720)]
    times = [r.seconds for r in runs]
    assert times == sorted(times, reverse=True)  # MeshGEMM's local work falls as 1/P with O(1)-latency shifts
    r = runs[-1]
    assert r.flops_per_s == pytest.approx(2 * 8192**3 / r.seconds)
    assert sum(r.breakdown.values()) == pytest.approx(r.seconds, rel=1e-9)
    auto = _run(gemm="8192x8192x8192")
    assert auto.seconds <= min(times)  # auto takes the fastest square that fits


def test_gemm_that_does_not_fit_is_a_clear_error():
    with pytest.raises(WaferError, match="short by"):
        _run(gemm="65536x65536x65536", grid="100x100")


def test_allreduce_algorithms_order_and_scale_as_their_models_say():
    small = _run(allreduce=720, elems=1, collective="ktree")
    assert list(small.seconds_by_collective) == ["ktree", "pipeline", "ring"]
    kt, pl, rg = (small.seconds_by_collective[a] for a in ("ktree", "pipeline", "ring"))
    assert kt < pl < rg  # one value: latency decides (K-tree ~sqrt(N) relays, chain N, ring 2N steps)
    assert small.seconds == kt
    short = _run(allreduce=180, elems=1, collective="pipeline")
    assert short.seconds < pl  # the chain's cost grows with the line
    big = _run(allreduce=720, elems=65536, collective="pipeline")
    assert big.breakdown["wavelets"] > big.breakdown["relays"]  # a long message streams: bandwidth decides


def test_micro_benchmarks_on_the_command_line(capsys):
    from lsp_server import cli as top  # the waferline entry point

    assert top.main(["simulate", "--allreduce", "360", "--elems", "8", "--hardware", "wse2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["pes"] == 360 and data["elems"] == 8 and set(data["seconds_by_collective"]) == {"ktree", "pipeline", "ring"}
    assert top.main(["simulate", "--gemm", "1024x2048x4096", "--hardware", "wse2", "--grid", "256x256"]) == 0
    assert "GEMM [1024,2048] x [2048,4096]" in capsys.readouterr().out
