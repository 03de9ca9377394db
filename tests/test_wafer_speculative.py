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


def test_a_target_with_room_for_its_verify_checks_k_plus_1_tokens_in_one_pass():
    """Planned for speculation, the target reserves the verify's buffers -- when that fits the same wafers."""
    from runtime.wafer.workload import load_arch, workload_for_arch

    w, d = workload_for_arch(load_arch("llama3.1-70b")), workload_for_arch(load_arch("llama3.2-1b"))
    hw = load_hardware("wse3")
    run = lambda wafers: simulate(w, hw, SimOptions(context=8192, collective="pipeline", draft_tokens=1,  # noqa: E731
                                                    acceptance=0.7, wafers=wafers), d)
    tight, roomy = run(None), run(5)
    assert tight.speculation.verify_passes == 2 and tight.wafers_used == 4 + 1  # no room on the fewest (4) wafers
    assert roomy.speculation.verify_passes == 1 and roomy.wafers_used == 5 + 1
    assert roomy.speculation.speedup > 1.0 > tight.speculation.speedup
