"""Plan + simulate: workload x hardware -> placement -> cost -> Report. The one entry point the CLI and LSP call."""

from __future__ import annotations

import msgspec

from . import cost as C
from .cost import Cost, cdiv
from .errors import WaferError
from .hardware import WaferSpec
from .placement import Placement, Region, gemv_grid, place, sram_per_pe
from .report import GemvReport, RegionReport, Report, SubgraphReport
from .workload import ACT_BYTES, DTYPES, TOKEN_ID_BYTES, Subgraph, Workload


class SimOptions(msgspec.Struct, kw_only=True):
    dtype: str = "bf16"
    collective: str = "ktree"
    grid: tuple[int, int] | None = None  # per-layer rows x cols; None = auto
    wafers: int | None = None  # None = as many as the placement needs
    prompt_len: int = 1024
    context: int = 4096  # KV positions held resident (and attended over per decode token)


def _check(opts: SimOptions) -> None:
    if opts.dtype not in DTYPES:
        raise WaferError(f"unknown dtype '{opts.dtype}' (known: {', '.join(DTYPES)})")
    if opts.collective not in C.COLLECTIVES:
        raise WaferError(f"unknown collective '{opts.collective}' (known: {', '.join(C.COLLECTIVES)})")
    if opts.prompt_len <= 0 or opts.context <= 0:
        raise WaferError(f"--prompt-len and --context must be > 0 (got {opts.prompt_len}, {opts.context})")
    if opts.prompt_len > opts.context:
        raise WaferError(f"--prompt-len {opts.prompt_len} exceeds --context {opts.context}: the prompt's KV must fit the cache")
    if opts.wafers is not None and opts.wafers <= 0:
        raise WaferError(f"--wafers must be > 0 (got {opts.wafers})")


def _shape_key(sg: Subgraph) -> tuple:
    return (sg.kind, tuple((m.name.rsplit("/", 1)[-1], m.k, m.n) for m in sg.matmuls), sg.n_heads, sg.n_kv_heads,
            sg.head_dim, sg.layer == 0, sg.gather_cols, tuple(sorted(sg.ops.items())))


class _Sim:
    """Cost evaluation with a cache: layers of one model share shapes, so a 126-layer plan costs a few evaluations."""

    def __init__(self, w: Workload, hw: WaferSpec, opts: SimOptions):
        self.w, self.hw, self.o = w, hw, opts
        self.cache: dict = {}

    def sub(self, sg: Subgraph, region: Region, phase: str) -> Cost:
        key = (phase, _shape_key(sg), region.height, region.width)
        c = self.cache.get(key)
        if c is None:
            o = self.o
            if phase == "decode":
                c = C.decode_subgraph(self.hw, sg, region.height, region.width, o.dtype, o.collective, o.context)
            else:
                c = C.prefill_subgraph(self.hw, sg, region.height, region.width, o.dtype, o.collective, o.prompt_len)
            self.cache[key] = c
        return c

    def _edge_hops(self, r: Region) -> int:
        centre = r.x + r.width // 2
        return min(centre, self.hw.mesh_width_pes - centre)

    def hop(self, a: Region, b: Region, tokens: int, grid_rows: int, grid_cols: int, ids: bool = False) -> Cost:
        key = ("hop", a.wafer == b.wafer, abs(a.x - b.x) + abs(a.y - b.y), self._edge_hops(a) + self._edge_hops(b), tokens, ids)
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
                c = C.wafer_crossing(self.hw, nbytes, self._edge_hops(a) + self._edge_hops(b))
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


def crossings(p: Placement) -> int:
    fwd = sum(1 for a, b in zip(p.regions, p.regions[1:]) if a.wafer != b.wafer)
    return fwd + (1 if p.regions[-1].wafer != p.regions[0].wafer else 0)


def simulate(w: Workload, hw: WaferSpec, opts: SimOptions) -> Report:
    _check(opts)
    sim = _Sim(w, hw, opts)
    p = place(w, hw, opts.dtype, opts.context, opts.grid, opts.wafers, opts.collective, sim.decode_cycles)
    dec, dec_sg = sim.decode(p)
    pre, pre_sg = sim.prefill(p)
    clock = hw.clock_hz
    regions = sim.region_of(p)
    sg_reports = []
    for sg in w.subgraphs:
        r = regions[sg.name]
        sram = sram_per_pe(sg, r.height, r.width // r.tiles, opts.dtype, opts.context, r.tiles)
        sg_reports.append(SubgraphReport(
            name=sg.name, kind=sg.kind, region=r.name, pes=r.width * r.height, grid=f"{r.height}x{r.width}",
            sram_bytes_per_pe=sram, sram_use_pct=round(100.0 * sram / hw.sram_bytes_per_pe, 2),
            weight_bytes=sg.weight_bytes[opts.dtype], kv_bytes=sg.kv_bytes_per_token * opts.context,
            macs_per_token=sg.macs_per_token + sg.attn_macs_per_token_per_ctx * opts.context,
            seconds=dec_sg[sg.name].total / clock, prefill_seconds=pre_sg[sg.name].total / clock,
            breakdown=dec_sg[sg.name].seconds(hw),
        ))
    region_reports = [
        RegionReport(r.name, r.subgraphs, r.wafer, r.x, r.y, r.width, r.height, r.sram_bytes_per_pe,
                     round(100.0 * r.sram_bytes_per_pe / hw.sram_bytes_per_pe, 2))
        for r in p.regions
    ]
    latency = dec.total / clock
    prefill_s = pre.total / clock
    weight_bytes = w.weight_bytes(opts.dtype)
    return Report(
        model=w.name, workload_source=w.source, hardware=hw.name, dtype=opts.dtype, collective=opts.collective,
        clock_hz=clock, grid=f"{p.grid_rows}x{p.grid_cols}", grid_forced=opts.grid is not None,
        wafers_used=p.wafers_used, pes_used=sum(r.width * r.height for r in p.regions),
        context=opts.context, prompt_len=opts.prompt_len,
        per_token_latency_s=latency, decode_tokens_per_s=1.0 / latency,
        prefill_s=prefill_s, ttft_s=prefill_s, prefill_tokens_per_s=opts.prompt_len / prefill_s,
        breakdown=dec.seconds(hw), prefill_breakdown=pre.seconds(hw),
        wafer_crossings_per_token=crossings(p), weight_bytes=weight_bytes,
        kv_bytes=sum(sg.kv_bytes_per_token for sg in w.subgraphs) * opts.context,
        effective_sram_read_bytes_per_s=weight_bytes / latency,
        subgraphs=sg_reports, regions=region_reports,
    )


def simulate_gemv(m: int, n: int, hw: WaferSpec, grid: tuple[int, int] | None, collective: str) -> GemvReport:
    if m <= 0 or n <= 0:
        raise WaferError(f"--gemv MxN needs positive sizes (got {m}x{n})")
    if collective not in C.COLLECTIVES:
        raise WaferError(f"unknown collective '{collective}' (known: {', '.join(C.COLLECTIVES)})")
    score = lambda r, c: C.gemv_benchmark(hw, m, n, r, c, collective).total  # noqa: E731
    r, c = gemv_grid(hw, m, n, grid, score)
    cost = C.gemv_benchmark(hw, m, n, r, c, collective)
    return GemvReport(m, n, hw.name, collective, hw.clock_hz, f"{r}x{c}", r * c, cost.total / hw.clock_hz, cost.seconds(hw))
