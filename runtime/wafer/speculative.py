"""Speculative decoding on the wafer: a draft model proposes k tokens, the target checks them in one pass.

Every vendor figure since Oct 2024 uses it. One step of the loop, in cycles:

    draft    k x t_draft          the draft decodes k tokens, one after another, on its own placement
    send     crossing(k ids)      the k draft ids to the target's embedding (the draft sits on its own wafer)
    verify   t_verify(k + 1)      the target runs k + 1 tokens through every layer at once: the stream kernel of
                                  pipelined prefill (weights stay put, the tokens are a batch), the head on all k + 1;
                                  in several passes when k + 1 tokens' working tiles do not fit beside the weights
    return   crossing(1 id)       the accepted prefix's next token back to the draft

and the step yields E = (1 - a^(k+1)) / (1 - a) tokens on average when each draft token is accepted with
probability a independently (Leviathan et al. 2023, "Fast Inference from Transformers via Speculative Decoding",
eq. 1). Speed = E / step. With t_verify(k+1) = t_target and no transfers this is the textbook speed-up
E / (1 + c k), c = t_draft / t_target; the wafer's verify costs more than one token (k + 1 tokens of allreduce
payload and attention), which this model charges.

Assumptions, stated: the draft never shares the target's PEs (its own wafer, placed by the same mapper); draft and
verify do not overlap; acceptance is an input (a measured rate of our CPU runtime on the user's code can be passed).
"""

from __future__ import annotations

from . import cost as C
from .cost import Cost
from .errors import WaferError
from .hardware import WaferSpec
from .placement import Placement, layer_region_groups, max_prefill_chunk, place
from .report import Speculation
from .workload import TOKEN_ID_BYTES, Workload

MAX_DRAFT_TOKENS = 32


def expected_tokens(acceptance: float, k: int) -> float:
    """E[tokens per verify step] with k drafts each accepted with probability `acceptance`, independently."""
    if acceptance >= 1.0:
        return float(k + 1)
    return (1.0 - acceptance ** (k + 1)) / (1.0 - acceptance)


def check(draft_tokens: int, acceptance: float | None) -> None:
    if not 1 <= draft_tokens <= MAX_DRAFT_TOKENS:
        raise WaferError(f"--draft-tokens must be 1..{MAX_DRAFT_TOKENS} (got {draft_tokens})")
    if acceptance is None or not 0.0 <= acceptance <= 1.0:
        raise WaferError(f"--acceptance must be a rate in 0..1 with --draft (got {acceptance})")


def verify_passes(sim, p: Placement, tokens: int) -> list[int]:
    """Tokens per verify pass: all at once when their working tiles fit the layer PEs beside the weights and KV
    (the mapper packs those tightly), else in as many equal passes as needed, one after another."""
    o = sim.o
    fits = min(max_prefill_chunk(m, rows, cols, o.dtype, o.context, "stream", sim.hw.tensor_bytes_per_pe, tokens)
               for m, rows, cols in layer_region_groups(p, sim.w))
    if fits == 0:  # pragma: no cover - one token is decode, which the placement made room for
        raise WaferError("not even one token's working tiles fit beside the target's weights and KV")
    n = -(-tokens // fits)
    return [tokens // n + (1 if i < tokens % n else 0) for i in range(n)]


def verify_cycles(sim, p: Placement, tokens: int) -> tuple[Cost, int]:
    """The target's pass(es) over `tokens` positions: every subgraph (head included: each position needs its
    logits) by the stream kernel, the hidden states hop region to region, the ids return to the embedding."""
    o, hw = sim.o, sim.hw
    regions = sim.region_of(p)
    passes = verify_passes(sim, p, tokens)
    total = Cost()
    for n in passes:
        for sg in sim.w.subgraphs:
            r = regions[sg.name]
            total += C.decode_subgraph(hw, sg, r.height, r.width, o.dtype, o.collective, o.context, tokens=n)
            if r.wrap_cols:
                total += C.fold_penalty(hw, sg, r.height, r.width, "stream")
        for a, b in zip(p.regions, p.regions[1:]):
            total += sim.hop(a, b, n, p.grid_rows, p.grid_cols)
        total += sim.hop(p.regions[-1], p.regions[0], n, p.grid_rows, p.grid_cols, ids=True)
    return total, len(passes)


def speculate(sim, p: Placement, draft: Workload, draft_tokens: int, acceptance: float,
              sim_factory) -> tuple[Speculation, dict[str, float]]:
    """The speculative loop's speed for the target placed at `p`; also its per-token breakdown (seconds by
    component, summing to one step / E). `sim_factory(workload)` builds the cost evaluator for the draft."""
    hw: WaferSpec = sim.hw
    o = sim.o
    if draft.vocab_size != sim.w.vocab_size:
        raise WaferError(f"the draft {draft.name} has a {draft.vocab_size}-token vocabulary, the target "
                         f"{sim.w.name} {sim.w.vocab_size}: speculative decoding needs the same tokenizer")
    dsim = sim_factory(draft)
    dp = place(draft, hw, o.dtype, o.context, None, None, o.collective, dsim.decode_cycles)
    draft_cost = dsim.decode(dp)[0]
    target_cost = sim.decode(p)[0]
    verify, passes = verify_cycles(sim, p, draft_tokens + 1)
    hops = sim._edge_hops(p.regions[0]) + dsim._edge_hops(dp.regions[-1])
    transfer = C.wafer_crossing(hw, draft_tokens * TOKEN_ID_BYTES, hops) + C.wafer_crossing(hw, TOKEN_ID_BYTES, hops)
    step = draft_cost * draft_tokens + transfer + verify
    e = expected_tokens(acceptance, draft_tokens)
    clock = hw.clock_hz
    plain = clock / target_cost.total
    spec = Speculation(
        draft_model=draft.name, draft_tokens=draft_tokens, acceptance=acceptance, draft_wafers=dp.wafers_used,
        draft_grid=f"{dp.grid_rows}x{dp.grid_cols}", draft_token_s=draft_cost.total / clock,
        verify_s=verify.total / clock, verify_passes=passes, transfer_s=transfer.total / clock, step_s=step.total / clock,
        expected_tokens_per_step=e, plain_decode_tokens_per_s=plain, speedup=(e * clock / step.total) / plain,
    )
    breakdown = {k: v / e for k, v in step.seconds(hw).items()}
    return spec, breakdown
