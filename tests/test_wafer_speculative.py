"""Speculative decoding on the wafer: the expected-tokens law, the loop's bookkeeping, trends and bad input."""

import numpy as np
import pytest

from runtime.wafer import cli
from runtime.wafer.errors import WaferError
from runtime.wafer.hardware import load_hardware
from runtime.wafer.sim import SimOptions, _Sim, simulate
from runtime.wafer.placement import place
from runtime.wafer.speculative import expected_tokens, verify_cycles

TARGET = dict(arch="llama3.1-70b", hardware="wse3", collective="pipeline", context=8192)


def spec(**kw):
    return cli.run_case({**TARGET, "draft": "llama3.2-1b", "draft_tokens": 2, "acceptance": 0.8, **kw})


@pytest.mark.parametrize("a", [0.0, 0.3, 0.7, 0.95])
@pytest.mark.parametrize("k", [1, 3, 6])
def test_expected_tokens_matches_a_monte_carlo_of_the_accept_loop(a, k):
    rng = np.random.default_rng(0)
    accepted = rng.random((200_000, k)) < a
    first_reject = np.where(accepted.all(1), k, np.argmin(accepted, 1))  # tokens accepted before the first reject
    assert np.mean(first_reject + 1) == pytest.approx(expected_tokens(a, k), rel=0.01)  # + the target's own token
    assert expected_tokens(1.0, k) == k + 1


def test_verifying_one_token_costs_exactly_one_decode_step():
    """The textbook's assumption (verify = one target step) holds at k = 0; the wafer's verify grows from there."""
    hw = load_hardware("wse3")
    w = cli.load_workload("llama3-8b")
    opts = SimOptions(context=4096)
    sim = _Sim(w, hw, opts)
    p = place(w, hw, opts.dtype, opts.context, None, None, opts.collective, sim.decode_cycles)
    sim = _Sim(w, hw, opts)  # a fresh cache: _Sim.hop's is keyed without the grid, so place()'s candidates leak into it
    one, passes = verify_cycles(sim, p, 1)
    assert passes == 1
    assert one.total == pytest.approx(sim.decode(p)[0].total, rel=1e-12)
    costs = [verify_cycles(sim, p, t)[0].total for t in (1, 2, 3, 5)]
    assert costs == sorted(costs) and costs[-1] > costs[0]


def test_the_loop_adds_up_and_reduces_to_the_textbook_form():
    r = spec()
    s = r.speculation
    e = expected_tokens(0.8, 2)
    assert s.expected_tokens_per_step == pytest.approx(e)
    assert s.step_s == pytest.approx(2 * s.draft_token_s + s.transfer_s + s.verify_s)
    assert r.decode_tokens_per_s == pytest.approx(e / s.step_s)
    assert r.per_token_latency_s == pytest.approx(s.step_s / e)
    assert sum(r.breakdown.values()) == pytest.approx(r.per_token_latency_s)
    # speed-up = E / (c k + v): c = draft/target per token, v = (verify + transfers)/target; v = 1 is the textbook
    t = 1.0 / s.plain_decode_tokens_per_s
    c, v = s.draft_token_s / t, (s.verify_s + s.transfer_s) / t
    assert s.speedup == pytest.approx(e / (c * 2 + v))
    assert v > 1.0  # k + 1 tokens through the target cost more than one
    assert r.wafers_used == cli.run_case(TARGET).wafers_used + s.draft_wafers
    assert r.acceptance == 0.8 and r.draft_tokens == 2


def test_more_acceptance_is_faster_and_a_bigger_draft_is_slower_per_token():
    rates = [spec(acceptance=a).decode_tokens_per_s for a in (0.2, 0.5, 0.8, 0.95)]
    assert rates == sorted(rates)
    assert spec(draft="llama3.2-3b").speculation.draft_token_s > spec().speculation.draft_token_s


@pytest.mark.parametrize("fields, words", [
    (dict(draft="smollm2-135m"), "same tokenizer"),
    (dict(acceptance=1.5), "--acceptance"),
    (dict(draft_tokens=0), "--draft-tokens"),
    (dict(draft_tokens=33), "--draft-tokens"),
])
def test_bad_speculation_input_is_one_clear_error(fields, words):
    with pytest.raises(WaferError, match=words):
        spec(**fields)


def test_acceptance_without_a_draft_is_refused():
    with pytest.raises(WaferError, match="need --draft"):
        cli.run_case({**TARGET, "acceptance": 0.7})


def test_a_target_with_room_for_its_verify_may_check_k_plus_1_tokens_in_one_chunk():
    """Planned for speculation, the target reserves the verify's buffers -- when that fits the same wafers; without
    them the verify still runs, one token per chunk, pipelined through the layer regions (no whole extra passes)."""
    from runtime.wafer.speculative import verify_chunk_limit
    from runtime.wafer.workload import load_arch, workload_for_arch

    w, d = workload_for_arch(load_arch("llama3.1-70b")), workload_for_arch(load_arch("llama3.2-1b"))
    hw = load_hardware("wse3")
    run = lambda wafers: simulate(w, hw, SimOptions(context=8192, collective="pipeline", draft_tokens=1,  # noqa: E731
                                                    acceptance=0.7, wafers=wafers), d)
    tight, roomy = run(None), run(5)
    assert tight.wafers_used == 4 + 1 and roomy.wafers_used == 5 + 1  # no room on the fewest (4) wafers
    assert tight.speculation.verify_passes == 2  # SRAM holds one token's working tiles: two chunks of one
    assert roomy.speculation.verify_passes in (1, 2)  # either split fits; the faster one is taken
    assert roomy.speculation.speedup > 1.0 and tight.speculation.speedup > 1.0
    opts = SimOptions(context=8192, collective="pipeline")
    sim = _Sim(w, hw, opts)
    p = place(w, hw, opts.dtype, opts.context, None, None, opts.collective, sim.decode_cycles, strips=True)
    assert verify_chunk_limit(sim, p, 5) == 1


# the vendor's 70B speculative case (bench/wafer_cases.toml) under its one stated setup: k = 4, acceptance 0.7
VENDOR_70B = dict(arch="llama3.1-70b", hardware="cs3", wafers=4, collective="pipeline", dtype="bf16", context=8192,
                  prompt_len=1024)


def test_a_verify_of_k_plus_1_tokens_costs_more_than_one_step_and_less_than_k_plus_1():
    """The verify is the T > 1 decode path through weight-stationary layers: the k + 1 tokens' MACs and payload are
    paid per token, the pipeline's fill (hops, relays, crossings, issue of one token's way through the model) once."""
    from runtime.wafer.speculative import chunkings, verify_chunk_limit, verify_pipelined

    for fields, arch in ((VENDOR_70B, "llama3.1-70b"), (dict(hardware="wse3", context=4096), "llama3-8b")):
        hw = load_hardware(fields["hardware"])
        w = cli.load_workload(arch)
        opts = SimOptions(context=fields["context"], collective=fields.get("collective", "ktree"),
                          wafers=fields.get("wafers"))
        sim = _Sim(w, hw, opts)
        p = place(w, hw, opts.dtype, opts.context, None, opts.wafers, opts.collective, sim.decode_cycles, strips=True)
        step = sim.decode(p)[0].total
        for k in (1, 4, 8):
            verify, chunks = verify_cycles(sim, p, k + 1)
            assert step < verify.total < (k + 1) * step, (arch, k)
            assert 1 <= chunks <= k + 1
            # every split that fits costs less than k + 1 separate decode steps
            for sizes in chunkings(k + 1, verify_chunk_limit(sim, p, k + 1)):
                assert step < verify_pipelined(sim, p, sizes).total < (k + 1) * step, (arch, k, sizes)


def test_speculation_speeds_up_the_vendor_70b_case_within_the_textbook_bound():
    r = cli.run_case({**VENDOR_70B, "draft": "llama3.2-1b", "draft_tokens": 4, "acceptance": 0.7})
    s = r.speculation
    assert s.speedup > 1.0
    assert r.decode_tokens_per_s > cli.run_case(VENDOR_70B).decode_tokens_per_s
    # the textbook speed-up E / (1 + c k) is the bound the wafer's verify (> one step) and transfers stay under
    t = 1.0 / s.plain_decode_tokens_per_s
    c = s.draft_token_s / t
    e = expected_tokens(0.7, 4)
    assert s.speedup < e / (1 + c * 4)
    assert s.speedup > e / (c * 4 + 5)  # and above a verify of k + 1 whole decode steps


def test_explore_places_the_draft_once_for_every_k(monkeypatch):
    """The draft's placement depends on neither the target nor k: explore's best-k search places it once (it was
    placed twice per k, half of a speculative point's time), and finds the same speed as placing it every time."""
    from runtime.wafer import explore, sim, speculative

    calls = []
    real_place, real_roomy = speculative.place, sim._roomy_for_verify
    monkeypatch.setattr(speculative, "place", lambda w, *a, **k: calls.append(w.name) or real_place(w, *a, **k))
    args = ("llama3-8b", explore.workload_for_arch(explore.load_arch("llama3-8b")), load_hardware("wse3"), "bf16",
            8192, 4, 0.7, "llama3.2-1b", 0, 1000.0)
    once = explore._point(*args)
    assert once.draft_tokens in range(1, 9) and calls == ["llama3.2-1b"]
    calls.clear()
    monkeypatch.setattr(sim, "_roomy_for_verify", lambda *a: real_roomy(*a[:6]))  # no shared placements
    again = explore._point(*args)
    assert len(calls) >= 8  # placed afresh for every k
    assert (again.decode_tokens_per_s, again.draft_tokens) == (once.decode_tokens_per_s, once.draft_tokens)
