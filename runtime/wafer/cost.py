"""Cost model: cycles on the critical path of one decode token and of one prompt (prefill), by component.

Everything is counted on the slowest PE of each step, in cycles of `hw.clock_hz`:

    local work       compute (datapath cycles: MACs at the dtype's lanes (precision.py), element-wise ops), sram_read (only
                     when the SRAM ports, not the MACs, bound a step), instr_issue (one `vector_op_issue_cycles` per
                     standalone DSD vector instruction, one `loop_step_cycles` per step of a GEMV/GEMM loop),
                     nonlinear (exp / sigmoid / rsqrt / reciprocal as short vector-op sequences: no SFU on the PE)
    collectives      after Luczynski et al. (HPDC'24): T = L*alpha + D*(2*T_R + 1) + streaming + per-phase setup,
                     with L the longest hop distance, D the dependent relays; split into fabric_hops (alpha per hop),
                     relays (beta per software relay), ramp, wavelets (message streaming), coll_setup
    between regions  region_hops (hidden state to the neighbouring rectangle), wafer_crossing (link latency +
                     bytes / link bandwidth + hops to the wafer edge), host_io (prompt in, token out)

Why decode gets slower on a bigger grid: a GEMV's local work shrinks as 1/(R*C) (and its instruction count as 1/R),
but every allreduce along a line of n PEs costs ~n hops (alpha) plus sqrt(n) (ktree) or n (pipeline) software relays
(beta): decode is latency-bound. Prefill (MeshGEMM, Cannon-style) does P shift steps of O(1) latency each, while its
local work per step falls as 1/P^3: its total falls as 1/P until the per-step latency dominates, so prefill gets faster.

Two prefill kernels per layer (sim.py chooses and pipelines them over chunks of the prompt):
    prefill_subgraph   MeshGEMM over `s` tokens after `past` cached ones; the weights travel round the grid. With the
                       whole prompt and past = 0 it is WaferLLM's prefill (the forced-grid path and calibration point 3).
    decode_subgraph    with tokens = T > 1, the weight-stationary stream kernel: decode's GEMV dataflow with the chunk
                       as a batch (loops of T x Kt fmac steps of length Nt, allreduces of T x Nt values). Its per-token
                       work is decode's local work; its per-chunk cost is decode's latency (hops, relays, issue), so
                       short chunks are latency-bound and long ones lengthen the layer pipeline's fill.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from . import precision as P
from .hardware import WaferSpec
from .workload import ACT_BYTES, TOKEN_ID_BYTES, WEIGHT_BYTES, Subgraph

COMPONENTS = (
    "compute", "sram_read", "instr_issue", "nonlinear",
    "fabric_hops", "relays", "ramp", "wavelets", "coll_setup",
    "region_hops", "wafer_crossing", "host_io", "expert_dispatch", "wafer_relayout",
)
COLLECTIVES = ("ktree", "pipeline", "ring")
# fabric colors each algorithm routes per axis (WaferLLM comm_pe.csl: 2 chains x 2 phases + 2 broadcast = 6 for ktree)
COLORS_PER_AXIS = {"ktree": 6, "pipeline": 3, "ring": 2}
# MeshGEMM's asynchronous DSD launches (WaferLLM comm_pe.csl): a compute round's two_hop_comm sends and receives the
# A and B tiles (4 @mov16); an alignment (skew) step sends and receives A (2)
GEMM_ROUND_LAUNCHES = 4
GEMM_SKEW_LAUNCHES = 2
RMSNORM_VECTOR_OPS = 4  # square, local sum, scale by rsqrt, multiply by gamma (WaferLLM decode.csl rmsnorm)
# Nonlinear functions: the PE has no special-function unit, so each is a short sequence of vector ops (counts from the
# standard algorithms, not fitted): exp = range reduction (2) + degree-4 polynomial by Horner (4); reciprocal = seed +
# 2 Newton steps of 2 FMAs (5; 2 steps take a 4-bit seed past f16's 11-bit mantissa); rsqrt = seed + 2 Newton steps
# of 3 ops (7); sigmoid = exp + add + reciprocal.
EXP_VECTOR_OPS = 6
RECIP_VECTOR_OPS = 5
RSQRT_VECTOR_OPS = 7
SIGMOID_VECTOR_OPS = EXP_VECTOR_OPS + 1 + RECIP_VECTOR_OPS
ROPE_VECTOR_OPS = 6  # 4 multiplies, 1 subtract, 1 add over the rotated pairs (WaferLLM decode.csl xq_rope)
SOFTMAX_VECTOR_OPS = 4  # local max, subtract max, local sum, scale by 1/sum (WaferLLM decode.csl softmax_score)


@dataclass
class Cost:
    """Cycles by component; `+` adds, `*` repeats."""

    cycles: dict = field(default_factory=dict)

    def add(self, component: str, value: float) -> "Cost":
        if value:
            self.cycles[component] = self.cycles.get(component, 0.0) + value
        return self

    def __iadd__(self, other: "Cost") -> "Cost":
        for k, v in other.cycles.items():
            self.add(k, v)
        return self

    def __add__(self, other: "Cost") -> "Cost":
        out = Cost(dict(self.cycles))
        out += other
        return out

    def __mul__(self, n: float) -> "Cost":
        return Cost({k: v * n for k, v in self.cycles.items()})

    @property
    def total(self) -> float:
        return sum(self.cycles.values())

    def seconds(self, hw: WaferSpec) -> dict[str, float]:
        return {k: self.cycles.get(k, 0.0) / hw.clock_hz for k in COMPONENTS if self.cycles.get(k)}


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


# ------------------------------------------------------------------------------------------------ local work
def vector_op(hw: WaferSpec, elems: int, count: int = 1, component: str = "") -> Cost:
    """`count` standalone element-wise DSD instructions over `elems` 16-bit elements each."""
    if elems <= 0 or count <= 0:
        return Cost()
    issue, work = count * hw.vector_op_issue_cycles, count * cdiv(elems, hw.macs_per_cycle_16bit)
    if component:
        return Cost().add(component, issue + work)
    return Cost().add("instr_issue", issue).add("compute", work)


def nonlinear(hw: WaferSpec, elems: int, ops: int) -> Cost:
    """A nonlinear function over `elems` values as `ops` vector instructions (see EXP_VECTOR_OPS ...)."""
    return vector_op(hw, elems, ops, component="nonlinear")


def local_matmul(hw: WaferSpec, rows: int, length: int, dtype: str, batches: int = 1, standalone: bool = True,
                 tokens: int = 1) -> Cost:
    """A local GEMV tile: per batch, one standalone loop of `tokens` x `rows` fused multiply-accumulate steps (one per
    input element) of `length` outputs each; each step costs `loop_step_cycles` to start.

    The fmac runs at the dtype's MAC lanes; it waits on SRAM only when the weight (at the width it is read, see
    precision.py) plus the 16-bit accumulator exceed the read ports. Low-bit weights add their dequantisation:
    widening once per weight row block (shared by all tokens), scale folding once per block and token.
    """
    if rows <= 0 or length <= 0:
        return Cost()
    lanes = P.mac_lanes(hw, dtype)
    n = rows * batches * tokens
    mac = n * cdiv(length, lanes)
    read = n * math.ceil(length * (P.operand_bytes(hw, dtype) + ACT_BYTES) / hw.sram_read_bytes_per_cycle)
    c = Cost().add("instr_issue", (batches * hw.vector_op_issue_cycles if standalone else 0) + n * hw.loop_step_cycles)
    c.add("compute", mac).add("sram_read", max(0, read - mac))
    return c + dequant(hw, rows * batches, length, dtype, tokens)


def dequant(hw: WaferSpec, rows: int, length: int, dtype: str, tokens: int = 1) -> Cost:
    """Dequantising `rows` weight rows of `length` (precision.py): the widening pass, one vector instruction per
    scale block over the block's rows, one element per MAC lane per cycle; then, on the native 8-bit path, one fmac
    over the outputs per scale block and token (partial sums x scales, added to the output)."""
    c = Cost()
    if dtype == "bf16" or rows <= 0 or length <= 0:
        return c
    blocks = P.scale_blocks(dtype, rows)
    if P.widens(hw, dtype):
        c.add("instr_issue", blocks * hw.vector_op_issue_cycles).add("compute", rows * cdiv(length, P.mac_lanes(hw, dtype)))
    if P.folds_scales(hw, dtype):
        c.add("instr_issue", tokens * blocks * hw.loop_step_cycles)
        c.add("compute", tokens * blocks * cdiv(length, hw.macs_per_cycle_16bit))
    return c


# ------------------------------------------------------------------------------------------------ collectives
def wavelets(hw: WaferSpec, elems: int, bytes_per_elem: float = ACT_BYTES) -> int:
    return max(1, math.ceil(elems * bytes_per_elem / hw.link_bytes_per_cycle))


def allreduce(hw: WaferSpec, n: int, elems: int, algo: str) -> Cost:
    """Allreduce of `elems` 16-bit values over a line of `n` PEs (every PE ends with the sum).

    ktree    WaferLLM MeshGEMV (K=2): chains inside groups of g~sqrt(n) toward the group root, a chain over the
             group roots toward the middle, then a hardware multicast from the middle: ~n hops, ~sqrt(n) relays.
    pipeline the vendor's chain: reduce end to end, broadcast back: 2n hops, n relays.
    ring     reduce-scatter + all-gather around a folded ring (neighbours <= 2 hops): 2(n-1) steps, each a separate
             send/receive with its own setup: bandwidth-optimal, latency-poor.
    """
    if n <= 1 or elems <= 0:
        return Cost()
    a, beta, tr, gamma = hw.hop_latency_cycles, hw.relay_cycles, hw.ramp_latency_cycles, hw.collective_setup_cycles
    w = wavelets(hw, elems)
    c = Cost()
    if algo == "ktree":
        g = max(1, round(math.sqrt(n)))
        groups = cdiv(n, g)
        d1, d2 = cdiv(g - 1, 2), cdiv(groups - 1, 2)  # dependent relays of the longer half-chain, per phase
        hops = d1 + d2 * g + cdiv(n - 1, 2)
        phases = 1 + (1 if d2 else 0) + 1
        c.add("fabric_hops", hops * a).add("relays", (d1 + d2) * beta).add("ramp", 2 * tr)
        c.add("wavelets", phases * (w - 1) + phases).add("coll_setup", phases * gamma)
    elif algo == "pipeline":
        c.add("fabric_hops", 2 * (n - 1) * a).add("relays", (n - 1) * beta).add("ramp", 2 * tr)
        c.add("wavelets", 2 * w).add("coll_setup", 2 * gamma)
    elif algo == "ring":
        steps = 2 * (n - 1)
        chunk = cdiv(w, n)
        c.add("fabric_hops", steps * 2 * a).add("relays", steps * beta).add("wavelets", steps * chunk)
        c.add("coll_setup", steps * gamma)
    else:  # pragma: no cover - validated by the CLI
        raise ValueError(algo)
    return c


def transfer(hw: WaferSpec, hops: int, elems: int, bytes_per_elem: float = ACT_BYTES, component: str = "region_hops") -> Cost:
    """A point-to-point move of `elems` values over `hops` hardware hops (all lines in parallel)."""
    if hops <= 0 and elems <= 0:
        return Cost()
    w = wavelets(hw, elems, bytes_per_elem)
    return Cost().add(component, hw.collective_setup_cycles + hops * hw.hop_latency_cycles + 2 * hw.ramp_latency_cycles + w)


def wafer_crossing(hw: WaferSpec, nbytes: int, edge_hops: int, links: int = 1) -> Cost:
    """Hidden state leaves one wafer and enters another: `edge_hops` to the I/O edge on the way out plus from it on
    the way in, the link latency, and the bytes at link rate; over `links` links (a chain's long way back) each
    wafer between is crossed edge to edge too; a switched topology adds its switch once."""
    link_s = links * (hw.wafer_link_latency_s + nbytes / hw.wafer_link_bytes_per_s)
    if hw.wafer_topology == "switched":
        link_s += hw.wafer_switch_latency_s
    through = (links - 1) * (hw.mesh_width_pes * hw.hop_latency_cycles + 4 * hw.ramp_latency_cycles)
    return Cost().add("wafer_crossing", link_s * hw.clock_hz + edge_hops * hw.hop_latency_cycles + 4 * hw.ramp_latency_cycles
                      + through)


def relayout(hw: WaferSpec, layer_bytes: int, side: int) -> Cost:
    """A layer's weights (and KV) moved from the prefill grid's tiling to the decode grid's, all layers at once on
    their own regions: half the bytes cross the middle of the smaller square (`side` links each way, a wavelet per
    cycle per link), after up to `side` hops. A lower bound (no contention beyond the bisection)."""
    return Cost().add("wafer_relayout", cdiv(layer_bytes // 2, 2 * side * hw.link_bytes_per_cycle)
                      + side * hw.hop_latency_cycles + 2 * hw.ramp_latency_cycles)


def host_io(hw: WaferSpec, nbytes: int) -> Cost:
    return Cost().add("host_io", (hw.host_io_latency_s + nbytes / hw.host_io_bytes_per_s) * hw.clock_hz)


# ------------------------------------------------------------------------------------------------ decode (GEMV)
def gemv(hw: WaferSpec, k: int, n: int, k_axis: int, n_axis: int, dtype: str, algo: str, tokens: int = 1) -> Cost:
    """y[T,N] = x[T,K] W[K,N] with K split over a line of `k_axis` PEs and N over `n_axis`: one local loop of T x Kt
    fmac steps of length Nt (the weights stay put), then one allreduce of T x Nt values. T = 1: decode."""
    kt, nt = cdiv(k, k_axis), cdiv(n, n_axis)
    return local_matmul(hw, kt, nt, dtype, tokens=tokens) + allreduce(hw, k_axis, tokens * nt, algo)


def gemv_fused(hw: WaferSpec, k: int, ns: list[int], k_axis: int, n_axis: int, dtype: str, algo: str,
               tokens: int = 1) -> Cost:
    """Several GEMVs sharing the input x[T,K] (q, k, v; gate, up): one local loop per projection, as WaferLLM's
    decode.csl runs them (xq/xk/xv_matvec_mult, up/gate_matvec_mult: a `vecmat_computation` each), then one allreduce
    of all their outputs (its `..._QKV_fusion` / `..._ZZ_fusion`). One projection: `gemv`."""
    kt = cdiv(k, k_axis)
    c = Cost()
    for n in ns:
        c += local_matmul(hw, kt, cdiv(n, n_axis), dtype, tokens=tokens)
    return c + allreduce(hw, k_axis, tokens * sum(cdiv(n, n_axis) for n in ns), algo)


def rmsnorm_decode(hw: WaferSpec, d: int, axis: int, algo: str, skip: bool, tokens: int = 1) -> Cost:
    e = cdiv(d, axis)
    c = vector_op(hw, tokens * e, RMSNORM_VECTOR_OPS + (1 if skip else 0))
    return c + allreduce(hw, axis, tokens, algo) + nonlinear(hw, tokens, RSQRT_VECTOR_OPS)


def decode_subgraph(hw: WaferSpec, sg: Subgraph, rows: int, cols: int, dtype: str, algo: str, context: int,
                    tokens: int = 1) -> Cost:
    """`tokens` consecutive tokens through one subgraph on a rows x cols GEMV grid (WaferLLM's alternating-axis
    layout: a projection reduces along rows (y), the next along columns (x), so no transpose is ever needed).

    tokens = 1 is decode. tokens > 1 is the weight-stationary stream kernel of pipelined prefill: the same dataflow
    with the chunk as a batch -- weights never move, each GEMV loop runs tokens x Kt fmac steps of length Nt, each
    allreduce carries tokens x Nt values (its latency paid once per chunk), every query of the chunk attends over
    all `context` positions (causal masking not skipped, as in the MeshGEMM prefill).
    """
    q = tokens
    c = Cost()
    if sg.kind == "attn":
        d = sg.matmuls[0].k
        c += rmsnorm_decode(hw, d, rows, algo, skip=sg.layer > 0, tokens=q)
        proj = [m for m in sg.matmuls if "o_proj" not in m.name]
        out = [m for m in sg.matmuls if "o_proj" in m.name]
        n_in = sum(m.n for m in proj)
        c += gemv_fused(hw, d, [m.n for m in proj], rows, cols, dtype, algo, q)  # q, k, v: one shared reduction
        if sg.ops.get("Add"):
            c += vector_op(hw, q * cdiv(n_in, cols))  # qkv bias
        nh, nkv, hd = sg.n_heads, sg.n_kv_heads, sg.head_dim
        group = nh // nkv
        c += vector_op(hw, q * cdiv((nh + nkv) * hd, cols), ROPE_VECTOR_OPS)
        # KV cache: kv heads x head_dim along x (cols), context along y (rows); q heads of a group share their kv head
        kvc, cc = cdiv(nkv * hd, cols), cdiv(context, rows)
        heads_pe = max(1, kvc // hd)  # whole kv heads held by one PE (when cols < kv heads)
        seg = max(1, cdiv(cols, nkv))  # PEs that share one kv head along x: the score reduction stays inside them
        c += vector_op(hw, q * kvc, 2)  # append the chunk's k and v to the cache
        c += local_matmul(hw, kvc, cc, "bf16", batches=group * q)  # scores q.K over the local head slice
        scores = q * group * heads_pe * cc
        c += allreduce(hw, seg, scores, algo)
        c += vector_op(hw, scores)  # 1/sqrt(head_dim)
        c += vector_op(hw, scores, SOFTMAX_VECTOR_OPS)
        c += allreduce(hw, rows, q * group * heads_pe, algo) * 2  # softmax max and sum over the context axis
        c += nonlinear(hw, scores, EXP_VECTOR_OPS) + nonlinear(hw, q * group * heads_pe, RECIP_VECTOR_OPS)  # exp, 1/sum
        c += local_matmul(hw, cc, kvc, "bf16", batches=group * q)  # probabilities . V
        c += allreduce(hw, rows, q * group * kvc, algo)
        for m in out:
            c += gemv(hw, m.k, m.n, cols, rows, dtype, algo, q)
    elif sg.kind == "mlp":
        parts = sg.mlp_parts()
        if parts.router is not None:
            return c + moe_decode(hw, sg, rows, cols, dtype, algo, q)
        d = parts.gate_up[0].k
        ff2 = sum(m.n for m in parts.gate_up)
        c += rmsnorm_decode(hw, d, rows, algo, skip=True, tokens=q)
        c += gemv_fused(hw, d, [m.n for m in parts.gate_up], rows, cols, dtype, algo, q)  # one shared reduction
        act = q * cdiv(ff2 // 2, cols)
        c += nonlinear(hw, act, SIGMOID_VECTOR_OPS) + vector_op(hw, act, 2)  # sigmoid, gate * sigmoid, * up
        for m in parts.down:
            c += gemv(hw, m.k, m.n, cols, rows, dtype, algo, q)
    elif sg.kind == "head":  # prefill sends only the prompt's last token here; a speculative verify sends all k + 1
        m = sg.matmuls[0]
        c += rmsnorm_decode(hw, m.k, rows, algo, skip=True, tokens=q)
        c += gemv(hw, m.k, m.n, rows, cols, dtype, algo, q)
        nt = cdiv(m.n, cols)
        c += vector_op(hw, q * nt) + allreduce(hw, cols, 2 * q, algo)  # argmax: local max, then (value, index) over x
    elif sg.kind == "embed":
        c += vector_op(hw, q * cdiv(sg.gather_cols, cols))  # copy the looked-up row slices
    return c


def moe_decode(hw: WaferSpec, sg: Subgraph, rows: int, cols: int, dtype: str, algo: str, tokens: int = 1) -> Cost:
    """A mixture-of-experts MLP, `tokens` at a time, with every expert sliced over the whole rows x cols region.

    Each PE holds its [K/rows, N/cols] slice of every expert (SRAM holds all of them), so a token's work per PE is that
    of its k chosen experts only: per-PE work falls with the active parameters, not the total. The router's logits
    come out of one GEMV; top-k is k rounds of (value, index) max along x, as the head's argmax; every PE then knows
    the choice, so no hidden state is gathered or scattered: the chosen experts' gate_up loops run on the input slice
    the PE already has (k loops, one allreduce of k x Nt values, fused with the shared experts'), and down_proj's
    partial sums are scaled by the routing weights and summed on the PE before one allreduce (the combine is linear).
    (Giving each expert its own sub-region instead would move the hidden state to k sub-regions and back, and leave
    the other E - k idle: per-PE work E/k times larger per token.)
    """
    q = tokens
    p = sg.mlp_parts()
    r, egu, edn = p.router, p.experts_gate_up, p.experts_down
    k = egu.active
    d = r.k
    c = rmsnorm_decode(hw, d, rows, algo, skip=True, tokens=q)
    c += gemv(hw, d, r.n, rows, cols, dtype, algo, q)  # router logits, E over x
    e_pe = q * cdiv(r.n, cols)
    c += vector_op(hw, e_pe, SOFTMAX_VECTOR_OPS) + nonlinear(hw, e_pe, EXP_VECTOR_OPS) + allreduce(hw, cols, q, algo) * 2
    c += (vector_op(hw, e_pe) + allreduce(hw, cols, 2 * q, algo)) * k  # top-k: k rounds of (value, index) max
    kt = cdiv(d, rows)
    nt_dense = sum(cdiv(m.n, cols) for m in p.gate_up)
    nt_exp = cdiv(egu.n, cols)
    for m in p.gate_up:
        c += local_matmul(hw, kt, cdiv(m.n, cols), dtype, tokens=q)
    c += local_matmul(hw, kt, nt_exp, dtype, batches=k, tokens=q)
    c += allreduce(hw, rows, q * (nt_dense + k * nt_exp), algo)
    act = q * (nt_dense + k * nt_exp) // 2
    c += nonlinear(hw, act, SIGMOID_VECTOR_OPS) + vector_op(hw, act, 2)
    nt_out = cdiv(edn.n, rows)
    for m in p.down:
        c += local_matmul(hw, cdiv(m.k, cols), nt_out, dtype, tokens=q)
    c += local_matmul(hw, cdiv(edn.k, cols), nt_out, dtype, batches=k, tokens=q)
    c += vector_op(hw, q * k * nt_out, 2)  # x routing weight, sum over the chosen experts (and the shared)
    return c + allreduce(hw, cols, q * nt_out, algo)


def moe_prefill(hw: WaferSpec, sg: Subgraph, rows: int, cols: int, dtype: str, algo: str, s: int) -> Cost:
    """A mixture-of-experts MLP over `s` prompt tokens by MeshGEMM: the router's GEMM, then each expert's GEMM over the
    tokens routed to it (s x k / E on average: routing assumed balanced), the tokens' rows permuted to their experts
    and back across the grid (expert_dispatch), the shared experts as a dense MLP."""
    p = sg.mlp_parts()
    r, egu, edn = p.router, p.experts_gate_up, p.experts_down
    e, k, d = egu.experts, egu.active, r.k
    c = rmsnorm_prefill(hw, s, d, rows, cols, algo) + gemm(hw, s, d, r.n, rows, cols, dtype)
    mt = cdiv(s, rows)
    c += vector_op(hw, mt * cdiv(r.n, cols), SOFTMAX_VECTOR_OPS + k) + nonlinear(hw, mt * cdiv(r.n, cols), EXP_VECTOR_OPS)
    c += (allreduce(hw, cols, 2 * mt, algo)) * (k + 2)
    per_expert = cdiv(s * k, e)
    moved = cdiv(s * k, rows) * cdiv(d, cols)
    c += transfer(hw, rows + cols, moved, component="expert_dispatch") * 2  # to the experts' rows and back
    for m in p.gate_up:
        c += gemm(hw, s, m.k, m.n, rows, cols, dtype)
    c += gemm(hw, per_expert, egu.k, egu.n, rows, cols, dtype) * e
    act = mt * (sum(cdiv(m.n, cols) for m in p.gate_up) + k * cdiv(egu.n, cols)) // 2
    c += nonlinear(hw, act, SIGMOID_VECTOR_OPS) + vector_op(hw, act, 2)
    for m in p.down:
        c += gemm(hw, s, m.k, m.n, rows, cols, dtype)
    c += gemm(hw, per_expert, edn.k, edn.n, rows, cols, dtype) * e
    return c + vector_op(hw, mt * k * cdiv(d, cols), 2)


def fold_penalty(hw: WaferSpec, sg: Subgraph, rows: int, cols: int, kernel: str) -> Cost:
    """A strip region wrapped round a band's end (packing.py): every x-line folds through the next band, `rows` PEs
    away. Each collective along x crosses the fold once reducing and once broadcasting (decode and the stream
    kernel: o_proj's and down_proj's allreduces, the head's argmax); MeshGEMM's x-shifts cross it every round."""
    fold = rows * hw.hop_latency_cycles
    if kernel == "meshgemm":
        gemms = {"attn": 4, "mlp": 2}.get(sg.kind, 0)  # qkv, QK^T, PV, o_proj; gate_up, down
        steps = max(rows, cols)
        return Cost().add("fabric_hops", gemms * (steps + steps // 2) * fold)
    x_collectives = {"attn": 1, "mlp": 1, "head": 1}.get(sg.kind, 0)
    return Cost().add("fabric_hops", x_collectives * 2 * fold)


# ------------------------------------------------------------------------------------------------ prefill (GEMM)
def gemm(hw: WaferSpec, s: int, k: int, n: int, rows: int, cols: int, dtype: str, weights_move: bool = True) -> Cost:
    """C[S,N] = A[S,K] B[K,N] by MeshGEMM (WaferLLM meshgemm.csl, Cannon-style) on rows x cols.

    An initial skew of steps/2 shifts aligns A; then `steps` rounds, each a local tile product overlapped with the
    shift of the next A and B tiles to a PE <= gemm_shift_hops away (double buffers). Each round is the kernel's code
    as written (meshgemm.csl `mm_compute`, comm_pe.csl `two_hop_comm`): its task entry (one standalone op), then the
    shift's four asynchronous @mov16 launches (send and receive of the A tile along x and of the B tile along y, each
    a standalone DSD op: base address, DSR load, launch -- `GEMM_ROUND_LAUNCHES`) issued on the PE before it computes,
    then the longer of the tile product and the transfer they started. A skew step launches two (send and receive of
    A). The tile product: for each of Kt rows, descriptors are set up once (`loop_step_cycles`: base address, three
    DSR loads, two offset increments), then one `@map` over the Nt weights of the row, each element an fmac of
    length Mt (`map_step_cycles` to start, then Mt / lanes). The per-round launches are the part of a layer's prefill
    that does not shrink with the tiles: why a larger model (bigger tiles, the same rounds) gains per weight and why
    a larger grid (more rounds) gains less than 1/P.
    """
    steps = max(rows, cols)
    mt, kt, nt = cdiv(s, rows), cdiv(k, steps), cdiv(n, cols)
    b_bytes = WEIGHT_BYTES[dtype] if weights_move else ACT_BYTES
    w = max(wavelets(hw, mt * kt), wavelets(hw, kt * nt, b_bytes))
    shift = Cost().add("fabric_hops", hw.gemm_shift_hops * hw.hop_latency_cycles).add("ramp", 2 * hw.ramp_latency_cycles)
    shift.add("wavelets", w).add("coll_setup", hw.collective_setup_cycles)
    # the fmac's vector is the A column (16-bit activations); the B weight is its scalar operand, widened to 16 bit
    compute = mesh_tile(hw, kt, nt, mt)
    if weights_move and dtype != "bf16":
        compute += widen_scalars(hw, kt, nt, dtype)
    per_round = Cost().add("instr_issue", (1 + GEMM_ROUND_LAUNCHES) * hw.vector_op_issue_cycles)
    per_round += compute if compute.total >= shift.total else shift
    a_shift = Cost().add("fabric_hops", hw.gemm_shift_hops * hw.hop_latency_cycles).add("ramp", 2 * hw.ramp_latency_cycles)
    a_shift.add("wavelets", wavelets(hw, mt * kt)).add("coll_setup", hw.collective_setup_cycles)
    a_shift.add("instr_issue", GEMM_SKEW_LAUNCHES * hw.vector_op_issue_cycles)
    return per_round * steps + a_shift * (steps // 2)


def mesh_tile(hw: WaferSpec, kt: int, nt: int, mt: int) -> Cost:
    """One MeshGEMM round's local product on a PE: Kt descriptor setups, Kt x Nt @map elements (fmacs of length Mt).
    SRAM: each MAC reads an A element and an accumulator at 16 bit (the B element is the map's scalar)."""
    if kt <= 0 or nt <= 0 or mt <= 0:
        return Cost()
    n = kt * nt
    mac = n * cdiv(mt, hw.macs_per_cycle_16bit)
    read = n * math.ceil(mt * 2 * ACT_BYTES / hw.sram_read_bytes_per_cycle)
    c = Cost().add("instr_issue", kt * hw.loop_step_cycles + n * hw.map_step_cycles)
    return c.add("compute", mac).add("sram_read", max(0, read - mac))


def widen_scalars(hw: WaferSpec, kt: int, nt: int, dtype: str) -> Cost:
    """A received Kt x Nt low-bit B tile widened (with its scales) to 16 bit before MeshGEMM uses its elements as fmac
    scalars: one vector instruction per scale block, one element per 16-bit lane per cycle."""
    blocks = max(1, P.scale_blocks(dtype, kt))
    return Cost().add("instr_issue", blocks * hw.vector_op_issue_cycles).add("compute", cdiv(kt * nt, hw.macs_per_cycle_16bit))


def rmsnorm_prefill(hw: WaferSpec, s: int, d: int, rows: int, cols: int, algo: str) -> Cost:
    mt, e = cdiv(s, rows), cdiv(d, cols)
    return vector_op(hw, mt * e, RMSNORM_VECTOR_OPS + 1) + allreduce(hw, cols, mt, algo) + nonlinear(hw, mt, RSQRT_VECTOR_OPS)


def prefill_subgraph(hw: WaferSpec, sg: Subgraph, rows: int, cols: int, dtype: str, algo: str, s: int,
                     past: int = 0) -> Cost:
    """`s` prompt tokens through one subgraph by MeshGEMM (the head only for the last token, as the graph does).

    `past`: tokens already in the KV cache (a later chunk of a chunked prompt attends over past + s keys);
    0 = the whole prompt at once (WaferLLM's prefill, the forced-grid path).
    """
    ctx = past + s
    c = Cost()
    if sg.kind == "attn":
        d = sg.matmuls[0].k
        nh, hd = sg.n_heads, sg.head_dim
        mt = cdiv(s, rows)
        c += rmsnorm_prefill(hw, s, d, rows, cols, algo)
        n_in = sum(m.n for m in sg.matmuls if "o_proj" not in m.name)
        c += gemm(hw, s, d, n_in, rows, cols, dtype)
        c += vector_op(hw, mt * cdiv((nh + sg.n_kv_heads) * hd, cols), ROPE_VECTOR_OPS)
        c += gemm(hw, s, nh * hd, ctx, rows, cols, dtype, weights_move=False)  # Q K^T, all heads (causal not skipped)
        scores = nh * mt * cdiv(ctx, cols)
        c += vector_op(hw, scores, SOFTMAX_VECTOR_OPS + 1)
        c += nonlinear(hw, scores, EXP_VECTOR_OPS) + nonlinear(hw, nh * mt, RECIP_VECTOR_OPS)
        c += allreduce(hw, cols, nh * mt, algo) * 2  # row max, row sum
        c += gemm(hw, s, ctx, nh * hd, rows, cols, dtype, weights_move=False)  # P V
        for m in sg.matmuls:
            if "o_proj" in m.name:
                c += gemm(hw, s, m.k, m.n, rows, cols, dtype)
    elif sg.kind == "mlp" and sg.mlp_parts().router is not None:
        c += moe_prefill(hw, sg, rows, cols, dtype, algo, s)
    elif sg.kind == "mlp":
        parts = sg.mlp_parts()
        d, ff2 = parts.gate_up[0].k, sum(m.n for m in parts.gate_up)
        c += rmsnorm_prefill(hw, s, d, rows, cols, algo)
        c += gemm(hw, s, d, ff2, rows, cols, dtype)
        act = cdiv(s, rows) * cdiv(ff2 // 2, cols)
        c += nonlinear(hw, act, SIGMOID_VECTOR_OPS) + vector_op(hw, act, 2)
        for m in parts.down:
            c += gemm(hw, s, m.k, m.n, rows, cols, dtype)
    elif sg.kind == "head":
        c += decode_subgraph(hw, sg, rows, cols, dtype, algo, 0)
    elif sg.kind == "embed":
        c += vector_op(hw, cdiv(s, rows) * cdiv(sg.gather_cols, cols))
    return c


# ------------------------------------------------------------------------------------------------ single GEMV
def gemv_benchmark(hw: WaferSpec, m: int, n: int, rows: int, cols: int, algo: str) -> Cost:
    """WaferLLM's MeshGEMV micro-benchmark: [1,M] x [M,N] at 16 bit, local GEMV then one allreduce."""
    return gemv(hw, m, n, rows, cols, "bf16", algo)


def hidden_bytes(d_model: int, tokens: int = 1) -> int:
    return d_model * ACT_BYTES * tokens


def token_bytes(tokens: int = 1) -> int:
    return TOKEN_ID_BYTES * tokens
