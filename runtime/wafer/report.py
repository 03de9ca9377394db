"""Reports: msgspec Structs (the JSON of `--json`, the LSP's waferline/simulate) and a text table."""

from __future__ import annotations

import msgspec

from .cost import COMPONENTS


class SubgraphReport(msgspec.Struct):
    name: str
    kind: str
    region: str
    pes: int  # PEs of the rectangle the subgraph runs on (a layer's attn and mlp share one)
    grid: str  # rows x cols of its GEMV grid
    sram_bytes_per_pe: int  # this subgraph's share on the most loaded PE
    sram_use_pct: float  # of the PE's whole SRAM
    weight_bytes: int
    kv_bytes: int
    macs_per_token: int
    seconds: float  # decode, per token
    prefill_seconds: float  # busy time over the whole prompt (pipelined stages overlap: these do not add up to TTFT)
    breakdown: dict[str, float]  # decode seconds per component


class RegionReport(msgspec.Struct):
    name: str
    subgraphs: list[str]
    wafer: int
    x: int
    y: int
    width: int
    height: int
    sram_bytes_per_pe: int
    sram_use_pct: float
    wrap_cols: int = 0  # a strip wrapped round its band's end: columns continued at the same edge of the next band


class SystemReport(msgspec.Struct):
    """One wafer (one CS system) of a placed model: what it holds and the decode time spent on it per token."""

    wafer: int
    regions: list[str]  # in flow order
    layers: list[int]  # [first, last] layer index held (partly, when a layer's attn and mlp are split), [] if none
    pes_used: int
    weight_bytes: int
    kv_bytes: int
    decode_s: float  # its subgraphs' decode seconds per token (hops and crossings between regions excluded)


class Speculation(msgspec.Struct, kw_only=True):
    """What a speculative run adds to the report: its inputs, the draft's placement and one step's parts."""

    draft_model: str
    draft_tokens: int
    acceptance: float
    draft_wafers: int
    draft_grid: str
    draft_token_s: float  # one draft token
    verify_s: float  # the target's verify of k + 1 tokens (its critical path through the layer pipeline)
    verify_passes: int  # chunks the k + 1 tokens go through the layer regions in, pipelined (1: all at once)
    transfer_s: float  # draft ids to the target and the next token back, per step
    step_s: float
    expected_tokens_per_step: float
    plain_decode_tokens_per_s: float  # the target alone, no speculation
    speedup: float


class Users(msgspec.Struct):
    """Concurrent users (--users): per-user speed against total throughput, and where each stops growing."""

    users: int
    per_user_tokens_per_s: float
    throughput_tokens_per_s: float
    single_user_tokens_per_s: float
    pipeline_users: int  # users the region pipeline holds before they slow each other (one token's time / the busiest)
    busiest_region: str
    kv_users_max: int  # users whose KV caches this placement's SRAM holds


class Report(msgspec.Struct):
    model: str
    workload_source: str  # "graph" (ONNX partition) | "arch"
    hardware: str
    dtype: str
    collective: str
    clock_hz: float
    grid: str  # per-layer rows x cols
    grid_forced: bool
    wafers_used: int  # per-layer method: 1 (one layer's grid is what is timed)
    pes_used: int
    context: int
    prompt_len: int
    per_token_latency_s: float
    decode_tokens_per_s: float
    prefill_s: float
    ttft_s: float
    prefill_tokens_per_s: float
    breakdown: dict[str, float]  # decode seconds per token by component
    prefill_breakdown: dict[str, float]  # seconds by component along the prefill's critical path (sums to ttft_s)
    # how the prompt is run. Forced grid: WaferLLM's methodology (the whole prompt per layer by MeshGEMM, layers one
    # after another: one chunk, not pipelined). Auto: chunks streamed through the layer pipeline, kernel and chunk
    # chosen for the lowest TTFT among those whose working tiles fit the SRAM.
    prefill_kernel: str  # "stream" (weight-stationary, decode dataflow over the chunk) | "meshgemm"
    prefill_pipelined: bool
    prefill_chunk_tokens: int
    prefill_chunks: int
    prefill_max_chunk_tokens: int  # largest chunk whose working tiles fit beside the weights and KV (this kernel)
    prefill_sram_bytes_per_pe: int  # most loaded layer PE while it runs a chunk: resident + working tiles
    wafer_crossings_per_token: int
    weight_bytes: int
    kv_bytes: int
    # first-principles figure beside the speed (as gpt-fast prints GB/s): weight bytes read per second of decode
    effective_sram_read_bytes_per_s: float
    subgraphs: list[SubgraphReport]
    regions: list[RegionReport]
    # speculative decoding (--draft): decode_tokens_per_s, per_token_latency_s and breakdown are then the
    # speculative loop's (per token, averaged over steps); the target alone is speculation.plain_decode_tokens_per_s
    acceptance: float | None = None
    draft_tokens: int = 0
    speculation: Speculation | None = None
    method: str = "placed"  # "placed" (the whole model as placed) | "per-layer" (one layer x layers, as WaferLLM timed)
    # parameters one token's decode multiplies by (dense: all of them; a mixture of experts: its chosen experts; the
    # embedding counted, as is usual) and all the wafer holds
    active_params: int = 0
    total_params: int = 0
    users: Users | None = None  # --users U > 1: decode_tokens_per_s and per_token_latency_s are then per user
    prefill_grid: str = ""  # --prefill-grid: the grid prefill ran on ("" = the decode grid)
    relayout_s: float = 0.0  # weights moved from the prefill grid's layout to the decode grid's, before decoding
    output_len: int = 0  # --output-len: tokens generated after the prompt (0: not asked)
    end_to_end_tokens_per_s: float = 0.0  # output_len / (prefill + relayout + output_len decode steps), WaferLLM Table 2
    acceptance_source: str = ""  # "stated" (--acceptance A), or how the local runtime measured it (--acceptance measured)
    per_system: list[SystemReport] = []  # the target's wafers (placed method; [] for per-layer: one layer is timed)


class GemvReport(msgspec.Struct):
    m: int
    n: int
    hardware: str
    collective: str
    clock_hz: float
    grid: str
    pes: int
    seconds: float
    breakdown: dict[str, float]


class GemmReport(msgspec.Struct):
    m: int
    k: int
    n: int
    hardware: str
    clock_hz: float
    grid: str
    pes: int
    seconds: float
    flops_per_s: float  # 2 M K N / seconds
    breakdown: dict[str, float]


class AllreduceReport(msgspec.Struct):
    pes: int  # along one line
    elems: int  # 16-bit values reduced
    hardware: str
    collective: str
    clock_hz: float
    seconds: float
    seconds_by_collective: dict[str, float]
    breakdown: dict[str, float]


def _us(s: float) -> str:
    return f"{s * 1e6:9.2f}"


def format_table(r: Report, max_layers: int = 2) -> str:
    """Per-subgraph table (first `max_layers` layers, then the rest summed) and the totals."""
    cols = [c for c in COMPONENTS if any(sg.breakdown.get(c) for sg in r.subgraphs)]
    head = f"{'subgraph':<16}{'PEs':>9}{'SRAM%':>7}" + "".join(f"{c[:11]:>12}" for c in cols) + f"{'us/token':>11}"
    lines = [
        f"{r.model} on {r.wafers_used} x {r.hardware} ({r.dtype}, {r.collective}, grid {r.grid}"
        f"{' forced' if r.grid_forced else ' auto'}, {r.clock_hz / 1e9:.2f} GHz, context {r.context})"
        + (": per-layer method, one layer timed x the layer count (no crossings, no embedding, no head)"
           if r.method == "per-layer" else ""),
        "decode µs per token by component" + (" (the target alone, one token):" if r.speculation else ":"),
        head,
        "-" * len(head),
    ]

    def row(name: str, pes: int, pct: float, bd: dict, total: float) -> str:
        return f"{name:<16}{pes:>9}{pct:>7.1f}" + "".join(f"{bd.get(c, 0.0) * 1e6:>12.2f}" for c in cols) + f"{total * 1e6:>11.2f}"

    rest: dict[str, float] = {}
    rest_total, rest_n = 0.0, 0
    tail = []
    for sg in r.subgraphs:
        layer = int(sg.name.split(".")[1]) if sg.name.startswith("layers.") else -1
        if layer >= max_layers:
            for k, v in sg.breakdown.items():
                rest[k] = rest.get(k, 0.0) + v
            rest_total += sg.seconds
            rest_n += 1
        elif sg.kind == "head":
            tail.append(row(sg.name, sg.pes, sg.sram_use_pct, sg.breakdown, sg.seconds))
        else:
            lines.append(row(sg.name, sg.pes, sg.sram_use_pct, sg.breakdown, sg.seconds))
    if rest_n:
        lines.append(row(f"+{rest_n} more", 0, 0.0, rest, rest_total))
    lines += tail
    lines.append("-" * len(head))
    route = {k: r.breakdown.get(k, 0.0) for k in ("region_hops", "wafer_crossing", "host_io") if r.breakdown.get(k)}
    if route:
        lines.append("between regions: " + ", ".join(f"{k} {v * 1e6:.2f} µs" for k, v in route.items())
                     + f" ({r.wafer_crossings_per_token} wafer crossings per token)")
    s = r.speculation
    if s:
        lines += [
            f"speculative: draft {s.draft_model} ({s.draft_wafers} wafer{'s' if s.draft_wafers != 1 else ''}, grid "
            f"{s.draft_grid}) proposes {s.draft_tokens}, acceptance {s.acceptance:.2f} -> {s.expected_tokens_per_step:.2f} "
            f"tokens per step" + (f" (acceptance {r.acceptance_source})" if r.acceptance_source.startswith("measured") else ""),
            f"  step {s.step_s * 1e6:.1f} µs = {s.draft_tokens} x {s.draft_token_s * 1e6:.1f} µs draft + "
            f"{s.transfer_s * 1e6:.1f} µs ids across + {s.verify_s * 1e6:.1f} µs verify of {s.draft_tokens + 1} tokens"
            f" ({s.verify_passes} chunk{'s' if s.verify_passes != 1 else ''} through the layer pipeline); target alone "
            f"{s.plain_decode_tokens_per_s:,.1f} tok/s, speed-up {s.speedup:.2f}x",
        ]
    lines += [
        f"per-token latency {r.per_token_latency_s * 1e6:.1f} µs  ->  decode {r.decode_tokens_per_s:,.1f} tok/s",
        f"prefill {r.prompt_len} tokens: TTFT {r.ttft_s * 1e3:.2f} ms  ->  prefill {r.prefill_tokens_per_s:,.0f} tok/s"
        + (f" on {r.prefill_grid}, then {r.relayout_s * 1e6:,.1f} µs to lay the weights out for the decode grid"
           if r.prefill_grid else ""),
        (f"  layer-pipelined: {r.prefill_chunks} chunk{'s' if r.prefill_chunks != 1 else ''} of {r.prefill_chunk_tokens} "
         f"token{'s' if r.prefill_chunk_tokens != 1 else ''} ({r.prefill_kernel} kernel; SRAM allows <= "
         f"{r.prefill_max_chunk_tokens} per chunk, {r.prefill_sram_bytes_per_pe / 1024:.1f} KiB per PE)"
         if r.prefill_pipelined else
         f"  whole prompt per layer, layers in sequence ({r.prefill_kernel}; WaferLLM's per-layer methodology; "
         f"{r.prefill_sram_bytes_per_pe / 1024:.1f} KiB per PE)"),
        *([f"end to end: {r.output_len} tokens after the {r.prompt_len}-token prompt -> {r.end_to_end_tokens_per_s:,.1f} "
           "tok/s (output tokens over prefill + decode time)"] if r.output_len else []),
        f"weights {r.weight_bytes / 1e9:.2f} GB + KV {r.kv_bytes / 1e9:.3f} GB on {r.pes_used:,} PEs; "
        f"effective weight reads {r.effective_sram_read_bytes_per_s / 1e12:.1f} TB/s",
    ]
    if r.total_params > r.active_params:
        lines.append(f"mixture of experts: {r.active_params / 1e9:.1f}B of {r.total_params / 1e9:.1f}B parameters active "
                     "per token; every expert sliced over its layer's whole region, so per-PE work follows the active ones")
    if len(r.per_system) > 1:
        lines.append("per system: " + "; ".join(
            f"#{p.wafer} layers {p.layers[0]}-{p.layers[1] if p.layers else ''} {p.weight_bytes / 1e9:.1f} GB "
            f"{p.decode_s * 1e6:.0f} µs" if p.layers else f"#{p.wafer} {p.weight_bytes / 1e9:.1f} GB {p.decode_s * 1e6:.0f} µs"
            for p in r.per_system))
    u = r.users
    if u:
        lines.append(f"{u.users} users: {u.per_user_tokens_per_s:,.1f} tok/s each, {u.throughput_tokens_per_s:,.0f} tok/s in "
                     f"all (one user alone {u.single_user_tokens_per_s:,.1f}); the pipeline holds {u.pipeline_users} users "
                     f"before they slow each other (busiest region {u.busiest_region}); SRAM holds KV for "
                     f"{u.kv_users_max} users at {r.context:,} tokens on this placement")
    total = sum(r.breakdown.values()) or 1.0
    top = sorted(r.breakdown.items(), key=lambda kv: -kv[1])[:4]
    lines.append("decode time goes to: " + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in top))
    return "\n".join(lines)


def format_gemv(r: GemvReport) -> str:
    parts = ", ".join(f"{k} {v * 1e9:.0f} ns" for k, v in sorted(r.breakdown.items(), key=lambda kv: -kv[1]))
    return (f"GEMV [1,{r.m}] x [{r.m},{r.n}] on {r.hardware}, grid {r.grid} ({r.collective}, {r.clock_hz / 1e9:.2f} GHz): "
            f"{r.seconds * 1e3:.5f} ms\n  {parts}")


def format_gemm(r: GemmReport) -> str:
    parts = ", ".join(f"{k} {v * 1e6:.2f} µs" for k, v in sorted(r.breakdown.items(), key=lambda kv: -kv[1]))
    return (f"GEMM [{r.m},{r.k}] x [{r.k},{r.n}] on {r.hardware}, grid {r.grid} (MeshGEMM, {r.clock_hz / 1e9:.2f} GHz): "
            f"{r.seconds * 1e3:.4f} ms, {r.flops_per_s / 1e12:.1f} TFLOP/s\n  {parts}")


def format_allreduce(r: AllreduceReport) -> str:
    others = ", ".join(f"{a} {s * 1e6:.2f} µs" for a, s in r.seconds_by_collective.items())
    parts = ", ".join(f"{k} {v * 1e9:.0f} ns" for k, v in sorted(r.breakdown.items(), key=lambda kv: -kv[1]))
    return (f"allreduce of {r.elems} values over {r.pes} PEs on {r.hardware} ({r.collective}, {r.clock_hz / 1e9:.2f} GHz): "
            f"{r.seconds * 1e6:.3f} µs\n  {parts}\n  all algorithms: {others}")
