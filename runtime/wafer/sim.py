"""Plan + simulate: workload x hardware -> placement -> cost -> Report. The one entry point the CLI and LSP call.

Prefill has two methodologies:
    forced grid (--grid RxC)  WaferLLM's: one layer runs the whole prompt by MeshGEMM on its P x P grid, layers one
                              after another (their per-layer timing x layers). Kept as is: it is what the calibration
                              points measured.
    auto placement            every layer owns its rectangle, so the prompt is streamed through the layer pipeline in
                              chunks: layer i works on chunk c while layer i+1 works on chunk c-1. Stages are the
                              embedding, each layer, each link between regions (hop or wafer crossing) and the head
                              (last token only); the finish time of chunk c at stage j is
                              F[j,c] = max(F[j-1,c], F[j,c-1]) + t[j,c] (a flow shop; with equal stages this is
                              T(chunk) x (chunks + layers - 1)). The mapper picks the kernel -- weight-stationary stream
                              (decode dataflow batched over the chunk) or MeshGEMM -- and the chunk size that minimise
                              TTFT among those whose working tiles fit the PE's SRAM (placement.prefill_sram_per_pe).
                              Small chunks pay every per-chunk latency (allreduce hops and relays, instruction issue)
                              more often; big chunks lengthen the pipeline fill and need more SRAM.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import numpy as np

from . import cost as C
from . import speculative
from .cost import Cost, cdiv
from .errors import WaferError
from .hardware import WaferSpec
from .placement import (Placement, Region, _layers, fmt_bytes, gemv_grid, layer_region_groups, max_prefill_chunk, place,
                        prefill_sram_per_pe, sram_parts, sram_per_pe)
from .report import GemvReport, RegionReport, Report, SubgraphReport, SystemReport
from .users import concurrent_users
from .workload import ACT_BYTES, DTYPES, TOKEN_ID_BYTES, Subgraph, Workload, waferllm_decode_subgraph


METHODS = ("placed", "per-layer")


class SimOptions(msgspec.Struct, kw_only=True):
    dtype: str = "bf16"
    collective: str = "ktree"
    grid: tuple[int, int] | None = None  # per-layer rows x cols; None = auto
    wafers: int | None = None  # None = as many as the placement needs
    prompt_len: int = 1024
    context: int = 4096  # KV positions held resident (and attended over per decode token)
    prefill_chunk: int | None = None  # auto placement: tokens per pipelined prefill chunk; None = the TTFT-optimal one
    draft_tokens: int = 4  # with a draft model: tokens it proposes per verify step
    acceptance: float | None = None  # with a draft model: probability that one draft token is accepted
    # "placed": the whole model as placed (embedding, every layer on its own region, hops, wafer crossings, head,
    # host I/O). "per-layer": WaferLLM's measurement -- one layer on its P x P grid, its time x the layer count; no
    # hops between layers, no wafer crossings, no embedding, no LM head, no host I/O (HARDWARE.md, "How WaferLLM
    # measured"). The calibration points were measured this way, so the PE constants are fitted on it.
    method: str = "placed"
    placement: str = "fewest-wafers"  # auto grid: the fastest plan on the fewest wafers, or the fastest on any count
    users: int = 1  # concurrent users decoding: each holds its own KV cache; their tokens pipeline through the regions
    # forced grids: prefill on a grid of its own (WaferLLM timed prefill and decode on different grids), the weights
    # moved to the decode grid's layout before the first decode step (relayout_s); None = the decode grid
    prefill_grid: tuple[int, int] | None = None
    # tokens generated after the prompt, for the end-to-end speed WaferLLM's Table 2 reports (output tokens over the
    # prefill + decode time); 0 = not asked. Plain decoding charges each step at the positions it attends over
    # (decode_s_for_output); with --draft or --users every step is charged at `context` (a little pessimistic).
    output_len: int = 0


MAX_USERS = 4096


def _check(opts: SimOptions) -> None:
    if opts.dtype not in DTYPES:
        raise WaferError(f"unknown dtype '{opts.dtype}' (known: {', '.join(DTYPES)})")
    if opts.collective not in C.COLLECTIVES:
        raise WaferError(f"unknown collective '{opts.collective}' (known: {', '.join(C.COLLECTIVES)})")
    if opts.method not in METHODS:
        raise WaferError(f"unknown method '{opts.method}' (known: {', '.join(METHODS)})")
    if opts.prompt_len <= 0 or opts.context <= 0:
        raise WaferError(f"--prompt-len and --context must be > 0 (got {opts.prompt_len}, {opts.context})")
    if opts.output_len < 0:
        raise WaferError(f"--output-len must be >= 0 (got {opts.output_len})")
    if opts.prompt_len + opts.output_len > opts.context:
        raise WaferError(f"--prompt-len {opts.prompt_len} + --output-len {opts.output_len} exceeds --context "
                         f"{opts.context}: the request's KV must fit the cache")
    if opts.prompt_len > opts.context:
        raise WaferError(f"--prompt-len {opts.prompt_len} exceeds --context {opts.context}: the prompt's KV must fit the cache")
    if not 1 <= opts.users <= MAX_USERS:
        raise WaferError(f"--users must be 1..{MAX_USERS} (got {opts.users})")
    if opts.wafers is not None and opts.wafers <= 0:
        raise WaferError(f"--wafers must be > 0 (got {opts.wafers})")
    if opts.prefill_chunk is not None and opts.prefill_chunk <= 0:
        raise WaferError(f"--prefill-chunk must be > 0 (got {opts.prefill_chunk})")
    if opts.prefill_grid is not None and opts.grid is None and opts.method != "per-layer":
        raise WaferError("--prefill-grid needs a forced --grid (or --method per-layer): auto placement pipelines the "
                         "prompt through the decode placement")
    if opts.prefill_chunk is not None and opts.grid is not None:
        raise WaferError("--prefill-chunk applies to auto placement; a forced --grid runs the whole prompt per layer (WaferLLM)")


def _shape_key(sg: Subgraph) -> tuple:
    return (sg.kind, tuple((m.name.rsplit("/", 1)[-1], m.k, m.n) for m in sg.matmuls), sg.n_heads, sg.n_kv_heads,
            sg.head_dim, sg.layer == 0, sg.gather_cols, tuple(sorted(sg.ops.items())))


class _Sim:
    """Cost evaluation with a cache: layers of one model share shapes, so a 126-layer plan costs a few evaluations."""

    def __init__(self, w: Workload, hw: WaferSpec, opts: SimOptions):
        self.w, self.hw, self.o = w, hw, opts
        self.cache: dict = {}
        self.shape_keys: dict[int, tuple[Subgraph, tuple]] = {}  # id -> (the subgraph, kept alive so ids stay unique; its key)

    def _key_of(self, sg: Subgraph) -> tuple:
        """_shape_key, once per subgraph object: placement scores ~1,000 grids of the same subgraphs."""
        held = self.shape_keys.get(id(sg))
        if held is None or held[0] is not sg:
            held = self.shape_keys[id(sg)] = (sg, _shape_key(sg))
        return held[1]

    def sub(self, sg: Subgraph, region: Region, phase: str) -> Cost:
        key = (phase, self._key_of(sg), region.height, region.width, region.wrap_cols > 0)
        c = self.cache.get(key)
        if c is None:
            o = self.o
            if phase == "decode":
                c = C.decode_subgraph(self.hw, sg, region.height, region.width, o.dtype, o.collective, o.context)
            else:
                c = C.prefill_subgraph(self.hw, sg, region.height, region.width, o.dtype, o.collective, o.prompt_len)
            if region.wrap_cols:
                gemm = phase != "decode" and sg.kind in ("attn", "mlp")  # prefill's head runs the decode dataflow
                c = c + C.fold_penalty(self.hw, sg, region.height, region.width, "meshgemm" if gemm else "stream")
            self.cache[key] = c
        return c

    def _edge_hops(self, r: Region) -> int:
        centre = r.x + r.width // 2
        return min(centre, self.hw.mesh_width_pes - centre)

    def hop(self, a: Region, b: Region, tokens: int, grid_rows: int, grid_cols: int, ids: bool = False) -> Cost:
        links = self.hw.links_between(a.wafer, b.wafer, max(a.wafer, b.wafer) + 1)  # exact for the way back: a is the last
        key = ("hop", links, abs(a.x - b.x) + abs(a.y - b.y), self._edge_hops(a) + self._edge_hops(b), tokens, ids,
               grid_rows, grid_cols)  # the payload per PE row depends on the grid: placements tried must not leak
        c = self.cache.get(key)
        if c is None:
            d = self.w.d_model
            if a.wafer == b.wafer:
                hops = abs(a.x - b.x) + abs(a.y - b.y)
                if ids:
                    c = C.transfer(self.hw, hops, tokens, TOKEN_ID_BYTES)
                else:  # each PE row moves its slice of the hidden state (tokens x d / rows ... / cols)
                    c = C.transfer(self.hw, hops, cdiv(tokens, grid_rows) * cdiv(d, grid_cols) if tokens > 1 else cdiv(d, grid_rows))
            else:
                nbytes = tokens * (TOKEN_ID_BYTES if ids else d * ACT_BYTES)
                c = C.wafer_crossing(self.hw, nbytes, self._edge_hops(a) + self._edge_hops(b), links)
            self.cache[key] = c
        return c

    def region_of(self, p: Placement) -> dict[str, Region]:
        out = {}
        for r in p.regions:
            for s in r.subgraphs:
                out[s] = r
        return out

    def decode(self, p: Placement) -> tuple[Cost, dict[str, Cost]]:
        regions = self.region_of(p)
        per_sg = {sg.name: self.sub(sg, regions[sg.name], "decode") for sg in self.w.subgraphs}
        total = Cost()
        for c in per_sg.values():
            total += c
        for a, b in zip(p.regions, p.regions[1:]):
            total += self.hop(a, b, 1, p.grid_rows, p.grid_cols)
        total += self.hop(p.regions[-1], p.regions[0], 1, p.grid_rows, p.grid_cols, ids=True)  # next token back to the embedding
        return total, per_sg

    def decode_cycles(self, p: Placement) -> float:
        return self.decode(p)[0].total

    def prefill(self, p: Placement) -> tuple[Cost, dict[str, Cost]]:
        regions = self.region_of(p)
        s = self.o.prompt_len
        per_sg = {sg.name: self.sub(sg, regions[sg.name], "prefill") for sg in self.w.subgraphs}
        total = C.host_io(self.hw, (s + 1) * TOKEN_ID_BYTES)  # prompt ids in, first token out
        for c in per_sg.values():
            total += c
        for a, b in zip(p.regions, p.regions[1:]):
            total += self.hop(a, b, s if b.name != "head" else 1, p.grid_rows, p.grid_cols)
        return total, per_sg


    # ---------------------------------------------------------------------------------------- pipelined prefill
    def _chunk_cost(self, sg: Subgraph, region: Region, kernel: str, size: int, past: int) -> Cost:
        """One chunk of `size` tokens (after `past` cached ones) through one subgraph, cached by what the cost reads."""
        rows, cols = region.height, region.width
        ctx = past + size
        if kernel == "stream":  # the stream kernel reads the context only as its slice per PE row
            ckey = cdiv(ctx, rows) if sg.kind == "attn" else 0
        else:
            ckey = (cdiv(ctx, cols), cdiv(ctx, max(rows, cols))) if sg.kind == "attn" else 0
        key = ("chunk", kernel, _shape_key(sg), rows, cols, size, ckey, region.wrap_cols > 0)
        c = self.cache.get(key)
        if c is None:
            o = self.o
            if kernel == "stream":
                c = C.decode_subgraph(self.hw, sg, rows, cols, o.dtype, o.collective, ctx, tokens=size)
            else:
                c = C.prefill_subgraph(self.hw, sg, rows, cols, o.dtype, o.collective, size, past=past)
            if region.wrap_cols:
                c = c + C.fold_penalty(self.hw, sg, rows, cols, kernel)
            self.cache[key] = c
        return c

    def _link_cost(self, a: Region, b: Region, kernel: str, size: int, rows: int, cols: int) -> Cost:
        """A chunk's hidden state from region a to b: in the stream (decode) layout each PE line carries
        size x d/rows values, in the MeshGEMM layout ceil(size/rows) x d/cols; across wafers, all of it."""
        same = a.wafer == b.wafer
        geo = abs(a.x - b.x) + abs(a.y - b.y) if same else self._edge_hops(a) + self._edge_hops(b)
        key = ("link", kernel, same, geo, size)
        c = self.cache.get(key)
        if c is None:
            d = self.w.d_model
            if not same:
                c = C.wafer_crossing(self.hw, size * d * ACT_BYTES, geo)
            elif kernel == "stream" or size == 1:  # one token: the decode layout whatever the kernel (as `hop`)
                c = C.transfer(self.hw, geo, size * cdiv(d, rows))
            else:
                c = C.transfer(self.hw, geo, cdiv(size, rows) * cdiv(d, cols))
            self.cache[key] = c
        return c

    def _stages(self, p: Placement, kernel: str, sizes: list[int], past: int = 0, head_all: bool = False):
        """The pipeline: a list of stage types (per-chunk Cost lists, shared by stages of equal shape) and the
        sequence of stage-type indices in flow order. Each layer region is one stage (attn then mlp).

        `past`: positions already in the KV cache before the first chunk (0 for a prompt). `head_all`: every chunk
        goes on to the head (a speculative verify needs each position's logits), not only the last one's last token
        (prefill)."""
        pasts = [past]
        for n in sizes[:-1]:
            pasts.append(pasts[-1] + n)
        last = len(sizes) - 1
        sgs = {sg.name: sg for sg in self.w.subgraphs}
        types: dict = {}
        order: list = []

        def add(key, make):
            if key not in types:
                types[key] = make()
            order.append(key)

        zero = Cost()
        for i, r in enumerate(p.regions):
            if i > 0:
                a = p.regions[i - 1]
                same = a.wafer == r.wafer
                geo = abs(a.x - r.x) + abs(a.y - r.y) if same else self._edge_hops(a) + self._edge_hops(r)
                if r.name == "head" and not head_all:  # only the prompt's last token goes on to the head
                    add(("link-head", same, geo), lambda a=a, r=r: [zero] * last + [self._link_cost(a, r, kernel, 1, p.grid_rows, p.grid_cols)])
                else:
                    add(("link", same, geo), lambda a=a, r=r: [self._link_cost(a, r, kernel, n, p.grid_rows, p.grid_cols) for n in sizes])
            members = [sgs[n] for n in r.subgraphs]
            if r.name == "head" and head_all:
                add(("head-all",), lambda r=r, m=members: [self._chunk_cost(m[0], r, kernel, n, past)
                                                           for n, past in zip(sizes, pasts)])
            elif r.name == "head":
                add(("head",), lambda r=r, m=members: [zero] * last + [self.sub(m[0], r, "decode")])
            else:
                shape = tuple(_shape_key(sg) for sg in members)
                add(("region", shape, r.height, r.width, r.wrap_cols > 0),
                    lambda r=r, m=members: [sum((self._chunk_cost(sg, r, kernel, n, past) for sg in m), Cost())
                                            for n, past in zip(sizes, pasts)])
        return types, order

    @staticmethod
    def _flow_shop(times: list[np.ndarray]) -> np.ndarray:
        """F[j, c] = max(F[j-1, c], F[j, c-1]) + t[j, c], one numpy pass per stage: with S the prefix sums of t[j],
        F[j, c] = S[c] + max_{k<=c} (F[j-1, k] - S[k-1])."""
        out = np.empty((len(times), len(times[0])))
        prev = np.zeros(len(times[0]))
        for j, t in enumerate(times):
            csum = np.cumsum(t)
            out[j] = csum + np.maximum.accumulate(prev - (csum - t))
            prev = out[j]
        return out

    @staticmethod
    def _critical_path(types: dict, order: list, f: np.ndarray) -> Cost:
        """The Cost summed along the flow shop's critical path (its total is f[-1, -1])."""
        path = Cost()
        j, c = len(order) - 1, f.shape[1] - 1
        while True:  # walk the critical path back: each cell waited on the later of its two predecessors
            path += types[order[j]][c]
            if j == 0 and c == 0:
                break
            if j == 0 or (c > 0 and f[j, c - 1] >= f[j - 1, c]):
                c -= 1
            else:
                j -= 1
        return path

    def prefill_pipelined(self, p: Placement, kernel: str, chunk: int, breakdown: bool = False):
        """TTFT cycles of the prompt streamed in chunks of `chunk` tokens; with `breakdown`, also the Cost summed
        along the critical path (its total is the TTFT) and each subgraph's busy Cost over the whole prompt."""
        s = self.o.prompt_len
        sizes = [chunk] * (s // chunk) + ([s % chunk] if s % chunk else [])
        types, order = self._stages(p, kernel, sizes)
        totals = {k: np.array([c.total for c in v]) for k, v in types.items()}
        f = self._flow_shop([totals[k] for k in order])
        io = C.host_io(self.hw, (s + 1) * TOKEN_ID_BYTES)  # prompt ids in, first token out
        ttft = io.total + float(f[-1, -1])
        if not breakdown:
            return ttft
        path = Cost(dict(io.cycles)) + self._critical_path(types, order, f)
        pasts = np.cumsum([0] + sizes[:-1]).tolist()
        regions = self.region_of(p)
        per_sg, busy_of = {}, {}  # layers of one shape on equal regions are equally busy: sum their chunks once
        for sg in self.w.subgraphs:
            r = regions[sg.name]
            if sg.kind == "head":
                per_sg[sg.name] = self.sub(sg, r, "decode")
                continue
            key = (_shape_key(sg), r.height, r.width, r.wrap_cols > 0)
            if key not in busy_of:
                busy = Cost()
                for n, past in zip(sizes, pasts):
                    busy += self._chunk_cost(sg, r, kernel, n, past)
                busy_of[key] = busy
            per_sg[sg.name] = busy_of[key]
        return ttft, path, per_sg

    def prefill_auto(self, p: Placement) -> "PrefillPlan":
        """The kernel and chunk size with the lowest TTFT among those whose working tiles fit the PEs."""
        hw, o, s = self.hw, self.o, self.o.prompt_len
        cap = hw.tensor_bytes_per_pe
        groups = layer_region_groups(p, self.w)  # (subgraphs, rows, cols) per distinct layer region
        embed = self.w.by_kind("embed")[0]
        er = next(r for r in p.regions if r.name == "embed")
        e_res, e_buf = sram_parts(embed, er.height, er.width // er.tiles, o.dtype, o.context, er.tiles)
        e_max = (cap - e_res) // e_buf if e_buf else s  # the chunk's looked-up rows: e_buf bytes per token
        limits = {}
        for kernel in ("stream", "meshgemm"):
            limits[kernel] = min([e_max] + [max_prefill_chunk(m, rows, cols, o.dtype, o.context, kernel, cap, s)
                                            for m, rows, cols in groups])
        if o.prefill_chunk is not None:
            fits = {k: v for k, v in limits.items() if v >= o.prefill_chunk}
            if not fits:
                best = max(limits.values())
                raise WaferError(
                    f"a prefill chunk of {o.prefill_chunk} tokens does not fit: its working tiles and the resident "
                    f"weights and KV need more than the {fmt_bytes(cap)} a PE holds for tensors; at most {best} "
                    f"token{'s' if best != 1 else ''} per chunk fit{'s' if best == 1 else ''} on this placement")
            cands = [(k, min(o.prefill_chunk, s)) for k in fits]
        else:
            cands = []
            for k, lim in limits.items():
                qs = {q for q in (2 ** i for i in range(s.bit_length())) if q <= lim} | ({lim} if lim > 0 else set())
                cands += [(k, q) for q in sorted(qs)]
        if not cands:  # pragma: no cover - a one-token stream chunk uses decode's own reserved buffers
            raise WaferError("no prefill chunk fits the PEs' SRAM beside the weights and KV cache")
        kernel, chunk = min(cands, key=lambda kq: (self.prefill_pipelined(p, *kq), kq[1]))
        ttft, path, per_sg = self.prefill_pipelined(p, kernel, chunk, breakdown=True)
        sram = max(prefill_sram_per_pe(m, rows, cols, o.dtype, o.context, kernel, chunk) for m, rows, cols in groups)
        return PrefillPlan(path, per_sg, kernel, chunk, cdiv(s, chunk), limits[kernel], sram, True)

    def prefill_forced(self, p: Placement) -> "PrefillPlan":
        """WaferLLM's methodology at a forced grid; its MeshGEMM tiles for the whole prompt must fit beside the
        resident weights and KV (checked here: the calibration grids leave ample room)."""
        o, cap = self.o, self.hw.tensor_bytes_per_pe
        layers = list({tuple(_shape_key(sg) for sg in layer): layer for layer in _layers(self.w)}.values())
        need = max(prefill_sram_per_pe(layer, p.grid_rows, p.grid_cols, o.dtype, o.context, "meshgemm", o.prompt_len,
                                       attend=o.prompt_len) for layer in layers)
        if need > cap:
            ok = 0
            for layer in layers:  # the longest prompt that fits (working set grows with the prompt)
                lo, hi = 0, o.prompt_len
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    if prefill_sram_per_pe(layer, p.grid_rows, p.grid_cols, o.dtype, o.context, "meshgemm", mid, attend=mid) <= cap:
                        lo = mid
                    else:
                        hi = mid - 1
                ok = lo if ok == 0 else min(ok, lo)
            raise WaferError(
                f"prefill of {o.prompt_len} tokens on the {'forced ' if o.grid else 'per-layer '}{p.grid_rows}x{p.grid_cols} grid needs {fmt_bytes(need)} "
                f"per PE (MeshGEMM tiles beside the resident weights and KV) but a PE holds {fmt_bytes(cap)}: short by "
                f"{fmt_bytes(need - cap)} per PE; use " + (f"--prompt-len {ok} or less, " if ok else "")
                + "a larger --grid, or auto placement (layer-pipelined chunks)")
        total, per_sg = self.per_layer(p, "prefill") if o.method == "per-layer" else self.prefill(p)
        return PrefillPlan(total, per_sg, "meshgemm", o.prompt_len, 1, o.prompt_len, need, False)

    def per_layer(self, p: Placement, phase: str) -> tuple[Cost, dict[str, Cost]]:
        """WaferLLM's method: one steady-state layer (layer 1: layer 0 skips the residual add) on its grid, its time
        x the layer count. Nothing else is charged: the embedding, head, hops and crossings were never timed.
        Decode runs the layer as WaferLLM's decode kernel holds it (workload.waferllm_decode_subgraph: one head of width
        d_model, K/V d_model wide, no grouped-query attention), whatever the model's own heads."""
        regions = self.region_of(p)
        layers = _layers(self.w)
        timed = layers[1] if len(layers) > 1 else layers[0]
        if phase == "decode":
            timed = [waferllm_decode_subgraph(sg) for sg in timed]
        one = sum((self.sub(sg, regions[sg.name], phase) for sg in timed), Cost())
        per_sg = {sg.name: Cost() for sg in self.w.subgraphs}
        for layer in layers:
            for sg, t in zip(layer, timed):
                per_sg[sg.name] = self.sub(t, regions[t.name], phase)
        return one * len(layers), per_sg


@dataclass
class PrefillPlan:
    cost: Cost  # critical path (its total is the TTFT)
    per_sg: dict  # subgraph name -> busy Cost over the whole prompt
    kernel: str  # "stream" | "meshgemm"
    chunk_tokens: int
    chunks: int
    max_chunk_tokens: int  # largest chunk whose working tiles fit the SRAM, for this kernel
    sram_bytes_per_pe: int  # most loaded PE of a layer while it runs a chunk
    pipelined: bool


def _roomy_for_verify(w: Workload, hw: WaferSpec, opts: SimOptions, sim: "_Sim", p: Placement, draft: Workload,
                      drafts: dict | None = None):
    """The target placed as a system planned for speculation would be: the faster speculative loop of (a) the plain
    placement and (b) one with every subgraph's working buffers reserved for the verify's k + 1 tokens, so the verify
    may take them in one chunk -- on no more wafers than the plain placement takes (or --wafers), when that fits.
    The reservation is not always worth it: the verify can also go through the layer pipeline in chunks as small as
    the SRAM allows (speculative.verify_cycles takes the fastest split that fits), and the buffers it reserves take
    SRAM the weights would spread into (a bigger grid, a slower plain decode step).
    Returns (workload, sim, placement, speculative.speculate's result there): the loop is costed once per candidate.
    `drafts`: the draft's placements to reuse (speculative.speculate), one dict per draft and hardware."""
    drafts = {} if drafts is None else drafts

    def loop(s: "_Sim", q: Placement):
        return speculative.speculate(s, q, draft, opts.draft_tokens, opts.acceptance, lambda d: _Sim(d, hw, opts),
                                     drafts)

    plain = loop(sim, p)
    roomy = w.for_verify(opts.draft_tokens + 1)
    rsim = _Sim(roomy, hw, opts)
    try:
        rp = place(roomy, hw, opts.dtype, opts.context, opts.grid, opts.wafers or p.wafers_used, opts.collective,
                   rsim.decode_cycles, opts.placement, strips=opts.method == "placed")
    except WaferError:
        return w, sim, p, plain
    reserved = loop(rsim, rp)
    return (roomy, rsim, rp, reserved) if reserved[0].step_s < plain[0].step_s else (w, sim, p, plain)


def crossings(p: Placement) -> int:
    fwd = sum(1 for a, b in zip(p.regions, p.regions[1:]) if a.wafer != b.wafer)
    return fwd + (1 if p.regions[-1].wafer != p.regions[0].wafer else 0)


def simulate(w: Workload, hw: WaferSpec, opts: SimOptions, draft: Workload | None = None) -> Report:
    """`draft`: a draft model for speculative decoding (runtime/wafer/speculative.py), placed on its own wafers."""
    _check(opts)
    if draft is not None:
        if opts.method == "per-layer":
            raise WaferError("--draft needs --method placed: speculation runs the whole model, not one timed layer")
        speculative.check(opts.draft_tokens, opts.acceptance)
    if opts.users > 1:
        if draft is not None or opts.method == "per-layer":
            raise WaferError("--users models concurrent plain decoding of the placed model (not with --draft or per-layer)")
        w = w.for_users(opts.users)
    sim = _Sim(w, hw, opts)
    p = place(w, hw, opts.dtype, opts.context, opts.grid, opts.wafers, opts.collective, sim.decode_cycles, opts.placement,
              strips=opts.method == "placed")
    spec = None
    if draft is not None:  # room for the verify's k + 1 tokens in one chunk, if that fits and is faster
        w, sim, p, (spec, spec_breakdown) = _roomy_for_verify(w, hw, opts, sim, p, draft)
    per_layer = opts.method == "per-layer"
    dec, dec_sg = sim.per_layer(p, "decode") if per_layer else sim.decode(p)
    relayout = 0.0
    if opts.prefill_grid is not None and opts.prefill_grid != (p.grid_rows, p.grid_cols):
        pp = place(w, hw, opts.dtype, opts.context, opts.prefill_grid, opts.wafers, opts.collective, sim.decode_cycles,
                   opts.placement, strips=False)
        plan = sim.prefill_forced(pp)
        layer_bytes = max(sum(sg.weight_bytes[opts.dtype] + sg.kv_bytes_per_token * opts.prompt_len for sg in layer)
                          for layer in _layers(w))  # the weights and the prompt's K/V move
        relayout = C.relayout(hw, layer_bytes, min(pp.grid_rows, pp.grid_cols, p.grid_rows, p.grid_cols)).total / hw.clock_hz
    else:
        plan = sim.prefill_forced(p) if opts.grid is not None or per_layer else sim.prefill_auto(p)
    pre, pre_sg = plan.cost, plan.per_sg
    clock = hw.clock_hz
    regions = sim.region_of(p)
    sg_reports = []
    for sg in w.subgraphs:
        r = regions[sg.name]
        sram = sram_per_pe(sg, r.height, r.width // r.tiles, opts.dtype, opts.context, r.tiles)
        sg_reports.append(SubgraphReport(
            name=sg.name, kind=sg.kind, region=r.name, pes=r.width * r.height, grid=f"{r.height}x{r.width}",
            sram_bytes_per_pe=sram, sram_use_pct=round(100.0 * sram / hw.sram_bytes_per_pe, 2),
            weight_bytes=sg.weight_bytes[opts.dtype], kv_bytes=sg.kv_bytes(opts.context),
            macs_per_token=sg.macs_per_token + sg.attn_macs_per_token_per_ctx * opts.context,
            seconds=dec_sg[sg.name].total / clock, prefill_seconds=pre_sg[sg.name].total / clock,
            breakdown=dec_sg[sg.name].seconds(hw),
        ))
    region_reports = [
        RegionReport(r.name, r.subgraphs, r.wafer, r.x, r.y, r.width, r.height, r.sram_bytes_per_pe,
                     round(100.0 * r.sram_bytes_per_pe / hw.sram_bytes_per_pe, 2), r.wrap_cols)
        for r in p.regions
    ]
    latency = dec.total / clock
    breakdown = dec.seconds(hw)
    if spec is not None:
        breakdown = spec_breakdown
        latency = spec.step_s / spec.expected_tokens_per_step
    users = concurrent_users(p, w, hw, opts.users, opts.context, dec, dec_sg) if opts.users > 1 else None
    if users is not None:
        latency = 1.0 / users.per_user_tokens_per_s
    prefill_s = pre.total / clock
    weight_bytes = w.weight_bytes(opts.dtype)
    active_params, total_params = w.params()
    systems = [] if per_layer else _per_system(p, w, sg_reports)
    # weights swept per second: once per token plainly; with speculation, the target's once per verify chunk and the
    # draft's once per drafted token, per step
    # (a mixture of experts reads only the chosen experts' weights)
    read = w.active_weight_bytes(opts.dtype)
    swept_per_s = (read / latency if spec is None else
                   (spec.verify_passes * read + spec.draft_tokens * draft.active_weight_bytes(opts.dtype)) / spec.step_s)
    decode_s = (decode_s_for_output(w, hw, opts, p, per_layer) if spec is None and users is None
                else opts.output_len * latency)
    return Report(
        model=w.name, workload_source=w.source, hardware=hw.name, dtype=opts.dtype, collective=opts.collective,
        clock_hz=clock, grid=f"{p.grid_rows}x{p.grid_cols}", grid_forced=opts.grid is not None,
        method=opts.method,
        # per-layer: one layer timed on one grid of one wafer (what WaferLLM measured), whatever placing all would need
        wafers_used=1 if per_layer else p.wafers_used + (spec.draft_wafers if spec else 0),
        pes_used=p.grid_rows * p.grid_cols if per_layer else sum(r.width * r.height for r in p.regions),
        context=opts.context, prompt_len=opts.prompt_len,
        per_token_latency_s=latency, decode_tokens_per_s=1.0 / latency,
        prefill_s=prefill_s, ttft_s=prefill_s, prefill_tokens_per_s=opts.prompt_len / prefill_s,
        breakdown=breakdown, prefill_breakdown=pre.seconds(hw),
        prefill_kernel=plan.kernel, prefill_pipelined=plan.pipelined, prefill_chunk_tokens=plan.chunk_tokens,
        prefill_chunks=plan.chunks, prefill_max_chunk_tokens=plan.max_chunk_tokens,
        prefill_sram_bytes_per_pe=plan.sram_bytes_per_pe,
        wafer_crossings_per_token=0 if per_layer else crossings(p), weight_bytes=weight_bytes,
        kv_bytes=w.kv_bytes(opts.context),
        effective_sram_read_bytes_per_s=swept_per_s,
        subgraphs=sg_reports, regions=region_reports,
        acceptance=opts.acceptance if spec else None, draft_tokens=opts.draft_tokens if spec else 0, speculation=spec,
        active_params=active_params, total_params=total_params, per_system=systems,
        users=users,
        prefill_grid=f"{opts.prefill_grid[0]}x{opts.prefill_grid[1]}" if opts.prefill_grid else "",
        relayout_s=relayout,
        output_len=opts.output_len,
        end_to_end_tokens_per_s=(opts.output_len / (prefill_s + relayout + decode_s) if opts.output_len else 0.0),
    )


def decode_s_for_output(w: Workload, hw: WaferSpec, opts: SimOptions, p: Placement, per_layer: bool) -> float:
    """Seconds to decode `output_len` tokens after the prompt: step i attends over prompt_len + i + 1 positions, and a
    step's cost is affine in its positions up to tile rounding (attention MACs and KV reads per position; all else
    fixed), so the steps sum to output_len steps at their mean, prompt_len + (output_len + 1) / 2 rounded down -- not
    all at the final context. The placement stays the one that holds the final context's KV."""
    if opts.output_len <= 0:
        return 0.0
    sim = _Sim(w, hw, msgspec.structs.replace(opts, context=opts.prompt_len + (opts.output_len + 1) // 2))
    cost = sim.per_layer(p, "decode")[0] if per_layer else sim.decode(p)[0]
    return opts.output_len * cost.total / hw.clock_hz


def _per_system(p: Placement, w: Workload, sg_reports: list[SubgraphReport]) -> list[SystemReport]:
    by_name = {r.name: r for r in sg_reports}
    out = []
    for wafer in range(p.wafers_used):
        regions = [r for r in p.regions if r.wafer == wafer]
        names = [n for r in regions for n in r.subgraphs]
        layers = sorted({int(n.split(".")[1]) for n in names if n.startswith("layers.")})
        out.append(SystemReport(
            wafer=wafer, regions=[r.name for r in regions], layers=[layers[0], layers[-1]] if layers else [],
            pes_used=sum(r.width * r.height for r in regions),
            weight_bytes=sum(by_name[n].weight_bytes for n in names), kv_bytes=sum(by_name[n].kv_bytes for n in names),
            decode_s=sum(by_name[n].seconds for n in names)))
    return out


def simulate_gemv(m: int, n: int, hw: WaferSpec, grid: tuple[int, int] | None, collective: str) -> GemvReport:
    if m <= 0 or n <= 0:
        raise WaferError(f"--gemv MxN needs positive sizes (got {m}x{n})")
    if collective not in C.COLLECTIVES:
        raise WaferError(f"unknown collective '{collective}' (known: {', '.join(C.COLLECTIVES)})")
    score = lambda r, c: C.gemv_benchmark(hw, m, n, r, c, collective).total  # noqa: E731
    r, c = gemv_grid(hw, m, n, grid, score)
    cost = C.gemv_benchmark(hw, m, n, r, c, collective)
    return GemvReport(m, n, hw.name, collective, hw.clock_hz, f"{r}x{c}", r * c, cost.total / hw.clock_hz, cost.seconds(hw))
