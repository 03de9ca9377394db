"""Speculative decoding on the wafer: a draft model proposes k tokens, the target checks them in one pass.

Every vendor figure since Oct 2024 uses it. One step of the loop, in cycles:

    draft    k x t_draft          the draft decodes k tokens, one after another, on its own placement
    send     crossing(k ids)      the k draft ids to the target's embedding (the draft sits on its own wafer)
    verify   t_verify(k + 1)      the target runs k + 1 positions through every layer: the T > 1 decode path (the
                                  weight-stationary stream kernel, weights stay put, the tokens are a batch), the head
                                  on all k + 1, the tokens streamed through the layer regions in chunks as pipelined
                                  prefill streams a prompt (see verify_cycles)
    return   crossing(1 id)       the accepted prefix's next token back to the draft

and the step yields E = (1 - a^(k+1)) / (1 - a) tokens on average when each draft token is accepted with
probability a independently (Leviathan et al. 2023, "Fast Inference from Transformers via Speculative Decoding",
eq. 1). Speed = E / step. With t_verify(k+1) = t_target and no transfers this is the textbook speed-up
E / (1 + c k), c = t_draft / t_target; the wafer's verify costs more than one token (the k + 1 tokens' MACs, their
allreduce payload and attention, and the pipeline's k extra chunks behind its slowest stage), which this model
charges -- but less than k + 1 tokens, since what a pass pays once (the fill of the layer pipeline: every hop,
relay, wafer crossing and instruction of one token's way through the model) is not paid again per token.

Assumptions, stated: the draft never shares the target's PEs (its own wafer, placed by the same mapper); draft and
verify do not overlap; acceptance is an input (a measured rate of our CPU runtime on the user's code can be passed).
"""

from __future__ import annotations

import numpy as np

from . import cost as C
from .cost import Cost
from .errors import WaferError
from .hardware import WaferSpec
from .placement import Placement, layer_region_groups, max_prefill_chunk, place, sram_parts
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


def verify_chunk_limit(sim, p: Placement, tokens: int) -> int:
    """Largest verify chunk (<= tokens) whose working tiles fit every region beside its weights and KV: a layer's
    stream-kernel live set (placement.prefill_sram_per_pe: the chunk's residual slice, one projection's inputs and
    partial sums, its scores -- per token, reusing decode's reserved buffers), the embedding's looked-up rows and
    the head's inputs and logits slices (decode's buffers, one set per token of the chunk)."""
    o, cap = sim.o, sim.hw.tensor_bytes_per_pe
    fits = min(max_prefill_chunk(m, rows, cols, o.dtype, o.context, "stream", cap, tokens)
               for m, rows, cols in layer_region_groups(p, sim.w))
    sgs = {sg.name: sg for sg in sim.w.subgraphs}
    for r in p.regions:
        if r.name in ("embed", "head"):
            sg = sgs[r.subgraphs[0]]
            res, buf = sram_parts(sg, r.height, r.width // r.tiles, o.dtype, o.context, r.tiles)
            per_token = buf if sg.kind == "embed" else buf // sg.work_tokens  # the embedding's is one token's
            fits = min(fits, (cap - res) // per_token if per_token else tokens)
    if fits <= 0:  # pragma: no cover - one token is decode, which the placement made room for
        raise WaferError("not even one token's working tiles fit beside the target's weights and KV")
    return min(fits, tokens)


def chunkings(tokens: int, limit: int) -> list[list[int]]:
    """Every split of `tokens` into n near-equal chunks of at most `limit` tokens (n = ceil(tokens / limit) ..
    tokens), largest chunks first."""
    out = []
    for n in range(-(-tokens // limit), tokens + 1):
        out.append([tokens // n + (1 if i < tokens % n else 0) for i in range(n)])
    return out


def verify_pipelined(sim, p: Placement, sizes: list[int]) -> Cost:
    """The critical path of a verify whose positions go through the target in chunks of `sizes` tokens.

    The verify is the decode path with T > 1 (cost.decode_subgraph's stream kernel: each layer's weights stay on
    its PEs; per chunk, one GEMV loop of T x Kt fmac steps, one allreduce of T x Nt values whose hops, relays and
    setup are paid once, attention of the chunk over the cache) -- what pipelined prefill runs, with the positions
    appended after the `context - k - 1` already cached (decode charges every step at `context`) and every chunk
    going on to the head. Each layer owns its region, so the chunks flow through the regions as a prompt's chunks
    do (sim._flow_shop): chunk c works in layer i while chunk c + 1 works in layer i - 1, which is causal -- chunk
    c + 1 attends over chunk c's K and V, written when c left that layer. One chunk of all k + 1 tokens pays the
    pipeline's fill once and every per-token cost (MACs, loop steps, payload) in full; chunks of one token each pay a
    single-token step's work, but only the first pays the fill: the others follow it stage by stage, behind the
    slowest region. Then the ids go back to the embedding.
    """
    tokens = sum(sizes)
    past = max(0, sim.o.context - tokens)
    types, order = sim._stages(p, "stream", sizes, past=past, head_all=True)
    f = sim._flow_shop([np.array([c.total for c in types[k]]) for k in order])
    path = sim._critical_path(types, order, f)
    return path + sim.hop(p.regions[-1], p.regions[0], tokens, p.grid_rows, p.grid_cols, ids=True)


def verify_cycles(sim, p: Placement, tokens: int) -> tuple[Cost, int]:
    """The target's verify of `tokens` positions and the chunks it takes: the split (into chunks whose working tiles
    fit, see verify_chunk_limit) with the shortest critical path, fewest chunks on a tie. One token is one decode
    step exactly."""
    best = None
    for sizes in chunkings(tokens, verify_chunk_limit(sim, p, tokens)):
        c = verify_pipelined(sim, p, sizes)
        if best is None or c.total < best[0].total:
            best = (c, len(sizes))
    return best


def speculate(sim, p: Placement, draft: Workload, draft_tokens: int, acceptance: float,
              sim_factory, drafts: dict | None = None) -> tuple[Speculation, dict[str, float]]:
    """The speculative loop's speed for the target placed at `p`; also its per-token breakdown (seconds by
    component, summing to one step / E). `sim_factory(workload)` builds the cost evaluator for the draft; `drafts`
    (one dict per draft and hardware) keeps the draft's placement for the next call: it does not depend on the target
    or k, and placing it again for every k of explore's search was half of a speculative point's time."""
    hw: WaferSpec = sim.hw
    o = sim.o
    if draft.vocab_size != sim.w.vocab_size:
        raise WaferError(f"the draft {draft.name} has a {draft.vocab_size}-token vocabulary, the target "
                         f"{sim.w.name} {sim.w.vocab_size}: speculative decoding needs the same tokenizer")
    key = (o.dtype, o.context, o.collective)
    placed = drafts.get(key) if drafts is not None else None
    if placed is None:
        dsim = sim_factory(draft)
        dp = place(draft, hw, o.dtype, o.context, None, None, o.collective, dsim.decode_cycles)
        placed = (dsim, dp, dsim.decode(dp)[0])
        if drafts is not None:
            drafts[key] = placed
    dsim, dp, draft_cost = placed
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
