"""Prefill: auto placement streams the prompt through the layer pipeline in chunks; a forced grid keeps WaferLLM's
whole-prompt-per-layer methodology unchanged; prefill working tiles are checked against the PE's SRAM."""

import msgspec
import pytest

from runtime.wafer.errors import WaferError
from runtime.wafer.hardware import load_hardware
from runtime.wafer.placement import place
from runtime.wafer.sim import SimOptions, _Sim, simulate
from runtime.wafer.workload import load_arch, workload_for_arch

HW2, HW3 = load_hardware("wse2"), load_hardware("wse3")
W8 = workload_for_arch(load_arch("llama3-8b"))


@pytest.mark.parametrize("arch", ["llama3.1-70b", "llama3.1-405b"])
def test_auto_placed_prefill_is_faster_per_token_than_decode(arch):
    """Every layer owns its PEs, so the prompt's tokens overlap in the layer pipeline; decode cannot overlap tokens."""
    r = simulate(workload_for_arch(load_arch(arch)), HW3, SimOptions(collective="pipeline"))
    assert r.prefill_pipelined and r.prefill_kernel in ("stream", "meshgemm")
    assert r.prefill_tokens_per_s > 10 * r.decode_tokens_per_s
    # the pipeline bound: at least one token's trip through all layers, at most the tokens one after another
    assert r.per_token_latency_s * 0.5 < r.ttft_s < r.prompt_len * r.per_token_latency_s


def _sim_and_placement(arch, **kw):
    w = workload_for_arch(load_arch(arch))
    o = SimOptions(collective="pipeline", **kw)
    sim = _Sim(w, HW3, o)
    return sim, place(w, HW3, o.dtype, o.context, None, None, o.collective, sim.decode_cycles)


def test_ttft_falls_as_the_prompt_is_chunked():
    sim, p = _sim_and_placement("llama3.1-70b")
    ttft = [sim.prefill_pipelined(p, "stream", q) for q in (1024, 256, 64, 16, 4)]
    assert ttft == sorted(ttft, reverse=True)
    assert ttft[-1] < ttft[0] / 20
    # ... until per-chunk latency (allreduce hops and relays, instruction issue) dominates: one token is no better
    assert sim.prefill_pipelined(p, "stream", 1) > ttft[-1]


def test_one_meshgemm_chunk_is_the_old_layer_by_layer_model():
    sim, p = _sim_and_placement("llama3.1-70b")
    sequential, _ = sim.prefill(p)
    assert sim.prefill_pipelined(p, "meshgemm", 1024) == pytest.approx(sequential.total, rel=1e-12)


def test_chunk_is_chosen_reported_and_fits_sram():
    r = simulate(workload_for_arch(load_arch("smollm2-135m")), HW3, SimOptions(prompt_len=32))
    assert 1 <= r.prefill_chunk_tokens <= r.prefill_max_chunk_tokens
    assert r.prefill_chunks == -(-32 // r.prefill_chunk_tokens)
    assert r.prefill_sram_bytes_per_pe <= HW3.tensor_bytes_per_pe
    assert sum(r.prefill_breakdown.values()) == pytest.approx(r.ttft_s, rel=1e-9)  # critical path adds up
    forced = {q: simulate(workload_for_arch(load_arch("smollm2-135m")), HW3, SimOptions(prompt_len=32, prefill_chunk=q))
              for q in (1, 32)}
    assert all(f.prefill_chunk_tokens == q for q, f in forced.items())
    assert r.ttft_s <= min(f.ttft_s for f in forced.values())  # the chosen chunk is the best one


def test_chunk_limited_by_sram_and_too_big_a_chunk_is_a_clear_error():
    r = simulate(workload_for_arch(load_arch("llama3.1-70b")), HW3, SimOptions(collective="pipeline"))
    assert r.prefill_chunk_tokens <= r.prefill_max_chunk_tokens < r.prompt_len  # weights fill ~99% of the PEs
    with pytest.raises(WaferError) as e:
        simulate(workload_for_arch(load_arch("llama3.1-70b")), HW3,
                 SimOptions(collective="pipeline", prefill_chunk=r.prefill_max_chunk_tokens + 1))
    assert "does not fit" in str(e.value) and f"at most {r.prefill_max_chunk_tokens}" in str(e.value)
    assert "\n" not in str(e.value)


def test_forced_grid_prefill_is_whole_prompt_per_layer():
    """WaferLLM timed one layer on a P x P grid with the whole prompt, x layers (--method per-layer): that is
    calibration point 3, reproduced within the fit's residual; placed, the same grid also pays hops and the head."""
    o = SimOptions(grid=(720, 720), collective="ktree", context=4096, prompt_len=4096, method="per-layer")
    r = simulate(W8, HW2, o)
    assert not r.prefill_pipelined and r.prefill_chunks == 1 and r.prefill_chunk_tokens == 4096
    assert r.prefill_tokens_per_s == pytest.approx(27_686.5, rel=0.03)  # WaferLLM Table 3
    assert r.prefill_sram_bytes_per_pe <= HW2.tensor_bytes_per_pe
    placed = simulate(W8, HW2, msgspec.structs.replace(o, method="placed"))
    sim = _Sim(W8, HW2, o)
    p = place(W8, HW2, o.dtype, o.context, o.grid, None, o.collective, sim.decode_cycles)
    sequential, _ = sim.prefill(p)
    assert placed.ttft_s == pytest.approx(sequential.total / HW2.clock_hz, rel=1e-12)
    assert placed.ttft_s > r.ttft_s


def test_forced_grid_whose_meshgemm_tiles_do_not_fit_is_a_clear_error():
    with pytest.raises(WaferError) as e:  # 70b's weights fill this grid; MeshGEMM needs a second weight tile per PE
        simulate(workload_for_arch(load_arch("llama3.1-70b")), HW3, SimOptions(grid=(167, 251), collective="pipeline"))
    msg = str(e.value)
    assert "short by" in msg and "per PE" in msg and "auto placement" in msg and "\n" not in msg
    with pytest.raises(WaferError, match="applies to auto placement"):
        simulate(W8, HW2, SimOptions(grid=(420, 420), prefill_chunk=8))
    with pytest.raises(WaferError, match="must be > 0"):
        simulate(W8, HW3, SimOptions(prefill_chunk=0))


def test_prefill_and_decode_on_grids_of_their_own_in_one_run():
    """WaferLLM timed decode on 420x420 and prefill on 720x720: one run gives both, plus the weights' move between."""
    from runtime.wafer.cli import run_case

    base = dict(arch="llama3-8b", hardware="wse2", method="per-layer", context=4096, prompt_len=4096)
    both = run_case({**base, "grid": "420x420", "prefill_grid": "720x720"})
    decode, prefill = run_case({**base, "grid": "420x420"}), run_case({**base, "grid": "720x720"})
    assert both.decode_tokens_per_s == decode.decode_tokens_per_s
    assert both.prefill_tokens_per_s == prefill.prefill_tokens_per_s > decode.prefill_tokens_per_s
    assert both.prefill_grid == "720x720" and 0 < both.relayout_s < 1e-3  # ~218 MB over 420 links each way
    same = run_case({**base, "grid": "420x420", "prefill_grid": "420x420"})
    assert same.relayout_s == 0 and same.prefill_tokens_per_s == decode.prefill_tokens_per_s
    with pytest.raises(WaferError, match="--prefill-grid needs a forced --grid"):
        run_case({"arch": "llama3-8b", "prefill_grid": "720x720"})
