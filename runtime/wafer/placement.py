"""Mapping / placement: every subgraph gets a rectangle of PEs sized so its weights, KV cache and working buffers stay
resident in SRAM; rectangles are laid out serpentine so consecutive ones are neighbours; a model larger than one wafer
spills over several, with only the hidden state crossing between them.

A layer's attention and MLP blocks share one rectangle (WaferLLM's per-layer P x P grid): the residual stream never
leaves it and both GEMV chains use the whole grid. The embedding table and the LM head take as many layer-sized tiles
as their weights need. Rectangles leave every band's last W mod cols columns idle, so the planner also packs
serpentine strips that wrap a band's end (packing.py), and strips whose attention and MLP are regions of their own,
each as narrow as its bytes allow: that is what puts Llama 3.1 70B at 8K context on 4 WSE-3. The per-layer grid is forced (`--grid RxC`) or chosen: the square grid that minimises the
per-token decode latency among those that fit the wafers allowed.

Prefill needs working tiles beyond what decode reserves (a chunk's activations, MeshGEMM's in-flight weight tile):
`prefill_sram_per_pe` counts them per kernel and chunk, `max_prefill_chunk` bounds the chunk by the PE's SRAM.
"""

from __future__ import annotations

import math
from typing import Callable

import msgspec

from .cost import COLORS_PER_AXIS, cdiv
from .errors import WaferError
from .hardware import WaferSpec
from .packing import pack
from .workload import ACT_BYTES, WEIGHT_BYTES, Subgraph, Workload

MAX_WAFERS = 256  # beyond this the plan is refused (no deployment of that size is published)
PLACEMENTS = ("fewest-wafers", "fastest")


class Region(msgspec.Struct):
    name: str  # embed | layers.{i} | head
    subgraphs: list[str]
    wafer: int
    x: int  # PE column of the top-left corner on its wafer
    y: int  # PE row
    width: int  # PEs along x (grid columns)
    height: int  # PEs along y (grid rows)
    tiles: int  # layer-sized tiles merged into this region
    sram_bytes_per_pe: int  # most loaded PE: weights + KV + buffers
    wrap_cols: int = 0  # strips: columns continued at the same edge of the next band (0: a rectangle)


class Placement(msgspec.Struct):
    grid_rows: int
    grid_cols: int
    tiles_x: int  # tiles per wafer row
    tiles_y: int
    wafers_used: int
    regions: list[Region]


def fmt_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


# ------------------------------------------------------------------------------------------------ residency
def sram_parts(sg: Subgraph, rows: int, cols: int, dtype: str, context: int, tiles: int = 1) -> tuple[int, int]:
    """(resident bytes, working-buffer bytes) on the most loaded PE of a rows x cols grid (tiles: merged layer tiles
    along x, for embed/head). Resident: weights, gammas/biases, KV cache at `context`. Buffers: one decode token's
    inputs, partial sums and scores, every matmul's reserved separately (conservative: they are never all live)."""
    wb = WEIGHT_BYTES[dtype]
    if sg.kind == "embed":
        per = cdiv(sg.gather_rows, rows) * cdiv(sg.gather_cols, cols * tiles)
        return int(math.ceil(per * wb)), cdiv(sg.gather_cols, cols * tiles) * ACT_BYTES
    weights = 0.0
    buffers = 0
    for m in sg.matmuls:
        # projections alternate their K axis: rows for qkv, gate_up, lm_head; columns for o_proj and down_proj
        k_axis, n_axis = (cols * tiles, rows) if ("o_proj" in m.name or "down" in m.name) else (rows, cols * tiles)
        # a MoE stack: the PE holds its slice of every expert, and partial sums for the chosen ones
        weights += cdiv(m.k, k_axis) * cdiv(m.n, n_axis) * wb * max(1, m.experts)
        buffers += 2 * cdiv(m.n, n_axis) * max(1, m.active) + cdiv(m.k, k_axis)  # partial sums (double buffered) + input slice
    vectors = sg.vector_params  # gammas and biases: a slice on each PE, bounded by their total
    vec_pe = min(vectors, cdiv(vectors, min(rows, cols))) * ACT_BYTES
    kv = 0
    if sg.kind == "attn":
        kvc, cc = cdiv(sg.n_kv_heads * sg.head_dim, cols), cdiv(context, rows)
        kv = kv_bytes_per_pe(sg, rows, cols, context) * sg.kv_users
        buffers += (sg.n_heads // sg.n_kv_heads) * max(1, kvc // sg.head_dim) * cc  # scores
    return int(math.ceil(weights)) + vec_pe + kv, buffers * ACT_BYTES * sg.work_tokens


def kv_bytes_per_pe(sg: Subgraph, rows: int, cols: int, context: int) -> int:
    """One user's K and V on the most loaded PE of an attention grid: kv heads x head_dim along x, context along y."""
    return 2 * cdiv(sg.n_kv_heads * sg.head_dim, cols) * cdiv(context, rows) * ACT_BYTES


def sram_per_pe(sg: Subgraph, rows: int, cols: int, dtype: str, context: int, tiles: int = 1) -> int:
    """Bytes on the most loaded PE of a rows x cols grid (tiles: merged layer tiles along x, for embed/head)."""
    return sum(sram_parts(sg, rows, cols, dtype, context, tiles))


def layer_sram_per_pe(layer: list[Subgraph], rows: int, cols: int, dtype: str, context: int) -> int:
    return sum(sram_per_pe(sg, rows, cols, dtype, context) for sg in layer)


# ------------------------------------------------------------------------------------------------ prefill working set
# A prefill chunk of T tokens needs working tiles beyond the resident weights and KV. They live in the buffer space the
# placement reserved for decode (reused: one step of the layer runs at a time) plus whatever SRAM is left free; a
# chunk whose live set exceeds that does not fit. Counted per step, the largest step decides:
#   stream (weight-stationary, decode dataflow)  the chunk's residual-stream slice (T x d/rows, kept across the layer)
#       + one projection's input slice and double-buffered partial sums (T x (Kt + 2 Nt)) + the attention scores of
#       the chunk (T x group x Cc, over the whole resident context) -- the same per-token terms as decode's buffers
#   meshgemm (Cannon-style, WaferLLM)  the residual slice (Mt x d/cols) + one GEMM's receive buffer for the next
#       B tile (Kt x Nt: for a projection this is a second copy of a weight tile), the current and next A tiles
#       (2 Mt x Kt) and the C tile (Mt x Nt); Q K^T's C tile is the chunk's scores (Mt x context/cols)


def _stream_live_elems_per_token(layer: list[Subgraph], rows: int, cols: int, context: int) -> int:
    d = layer[0].matmuls[0].k
    step = 0
    scores = 0
    for sg in layer:
        for m in sg.matmuls:
            k_axis, n_axis = (cols, rows) if ("o_proj" in m.name or "down" in m.name) else (rows, cols)
            step = max(step, cdiv(m.k, k_axis) + 2 * cdiv(m.n, n_axis) * max(1, m.active))
        if sg.kind == "attn":
            kvc = cdiv(sg.n_kv_heads * sg.head_dim, cols)
            scores = (sg.n_heads // sg.n_kv_heads) * max(1, kvc // sg.head_dim) * cdiv(context, rows)
    return cdiv(d, rows) + step + scores


def _meshgemm_live_bytes(layer: list[Subgraph], rows: int, cols: int, dtype: str, tokens: int, context: int) -> int:
    steps, mt = max(rows, cols), cdiv(tokens, rows)
    wb = WEIGHT_BYTES[dtype]
    d = layer[0].matmuls[0].k
    gemms = []  # (K, N, bytes per B element)
    for sg in layer:
        if sg.kind == "attn":
            hq = sg.n_heads * sg.head_dim
            gemms += [(d, sum(m.n for m in sg.matmuls if "o_proj" not in m.name), wb), (hq, context, ACT_BYTES),
                      (context, hq, ACT_BYTES)]
            gemms += [(m.k, m.n, wb) for m in sg.matmuls if "o_proj" in m.name]
        elif sg.kind == "mlp":  # a MoE layer's router and experts: one GEMM (one expert) at a time
            parts = sg.mlp_parts()
            if parts.gate_up:
                gemms += [(d, sum(m.n for m in parts.gate_up), wb)]
            gemms += [(m.k, m.n, wb) for m in parts.down]
            gemms += [(m.k, m.n, wb) for m in (parts.router, parts.experts_gate_up, parts.experts_down) if m is not None]
    step = max(cdiv(k, steps) * cdiv(n, cols) * b + (2 * mt * cdiv(k, steps) + mt * cdiv(n, cols)) * ACT_BYTES
               for k, n, b in gemms)
    return int(math.ceil(step)) + mt * cdiv(d, cols) * ACT_BYTES


def prefill_sram_per_pe(layer: list[Subgraph], rows: int, cols: int, dtype: str, context: int, kernel: str,
                        tokens: int, attend: int | None = None) -> int:
    """Bytes on the most loaded PE while a layer runs a prefill chunk of `tokens` with `kernel` ("stream" |
    "meshgemm"): resident bytes + max(reserved decode buffers, the chunk's live working set). `attend`: keys the
    chunk's queries attend over (default: the whole resident context)."""
    resident = buffers = 0
    for sg in layer:
        r, b = sram_parts(sg, rows, cols, dtype, context)
        resident, buffers = resident + r, buffers + b
    attend = context if attend is None else attend
    if kernel == "stream":
        live = tokens * _stream_live_elems_per_token(layer, rows, cols, attend) * ACT_BYTES
    else:
        live = _meshgemm_live_bytes(layer, rows, cols, dtype, tokens, attend)
    return resident + max(buffers, live)


def max_prefill_chunk(layer: list[Subgraph], rows: int, cols: int, dtype: str, context: int, kernel: str,
                      cap: int, limit: int) -> int:
    """Largest chunk (<= limit tokens) whose working set fits `cap` bytes per PE; 0 if not even one token fits.
    The working set grows with the chunk, so a binary search suffices."""
    fits = lambda t: prefill_sram_per_pe(layer, rows, cols, dtype, context, kernel, t) <= cap  # noqa: E731
    if not fits(1):
        return 0
    lo, hi = 1, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


MAX_EMBED_TILES = 64  # tiles of the layer grid the embedding or the LM head may take (one row of a wafer's tiles)


def _tiles_for(sg: Subgraph, rows: int, cols: int, dtype: str, context: int, cap: int) -> int | None:
    """Fewest rows x cols tiles that hold `sg` (the embedding or head), or None: then this grid cannot place it, and
    auto placement tries the next grid (a small model's layers fit grids far smaller than its vocabulary table)."""
    for k in range(1, MAX_EMBED_TILES + 1):
        if sram_per_pe(sg, rows, cols, dtype, context, k) <= cap:
            return k
    return None


def _layers(w: Workload) -> list[list[Subgraph]]:
    layers: dict[int, list[Subgraph]] = {}
    for sg in w.subgraphs:
        if sg.layer >= 0:
            layers.setdefault(sg.layer, []).append(sg)
    return [layers[i] for i in sorted(layers)]


def _shapes(layers: list[list[Subgraph]]) -> list[list[Subgraph]]:
    """One layer of each distinct shape (most models: one; Llama 4 Maverick alternates dense and MoE layers)."""
    seen: dict[tuple, list[Subgraph]] = {}
    for layer in layers:
        seen.setdefault(tuple((sg.kind, sg.weight_params) for sg in layer), layer)
    return list(seen.values())


def total_sram_need(w: Workload, dtype: str, context: int) -> int:
    """Bytes the model needs resident, without padding: weights + KV cache at `context`."""
    return w.weight_bytes(dtype) + w.kv_bytes(context)


def _check_grid(hw: WaferSpec, rows: int, cols: int) -> None:
    """A forced grid must be positive and fit the PE mesh."""
    if rows <= 0 or cols <= 0:
        raise WaferError(f"grid {rows}x{cols}: both sides must be > 0")
    if not _grid_fits_mesh(hw, rows, cols):
        raise WaferError(f"grid {rows}x{cols} does not fit the {hw.mesh_height_pes}x{hw.mesh_width_pes} PE mesh of {hw.name}")


def _grid_fits_mesh(hw: WaferSpec, rows: int, cols: int) -> bool:
    return rows <= hw.mesh_height_pes and cols <= hw.mesh_width_pes


# ------------------------------------------------------------------------------------------------ plan
def _plan(w: Workload, hw: WaferSpec, rows: int, cols: int, dtype: str, context: int,
          wrap: bool = False, split: bool = False) -> Placement | None:
    """Serpentine placement for a rows x cols layer grid, as rectangles or wrapping strips (packing.py); None if a
    layer does not fit its tile. Strips size the embedding and head to the fewest columns that hold them; `split`
    (strips only) gives attention and MLP regions of their own, each as narrow as its bytes allow, so each reserves
    only its own working buffers (the residual stream hops between them once per layer)."""
    cap = hw.tensor_bytes_per_pe
    layers = _layers(w)
    embed, head = w.by_kind("embed")[0], w.by_kind("head")[0]
    units = []  # (name, subgraphs, width in columns, tiles, sram per PE)
    if wrap:
        for sg in (embed,):
            c = _min_cols([sg], rows, hw, dtype, context)
            if c is None:
                return None
            units.append(("embed", [sg.name], c, 1, sram_per_pe(sg, rows, c, dtype, context)))
    else:
        if layer_sram_per_pe(layers[-1], rows, cols, dtype, context) > cap:  # cheap reject before the tiles search
            return None
        ke = _tiles_for(embed, rows, cols, dtype, context, cap)
        if ke is None:
            return None
        units.append(("embed", [embed.name], cols * ke, ke, sram_per_pe(embed, rows, cols, dtype, context, ke)))
    if split:  # one width per distinct subgraph shape (a dense MLP beside a MoE one is far narrower)
        widths, sram = {}, {}
        for sg in (sg for layer in _shapes(layers) for sg in layer):
            key = (sg.kind, sg.weight_params)
            widths[key] = _min_cols([sg], rows, hw, dtype, context)
            if widths[key] is None:
                return None
            sram[key] = sram_per_pe(sg, rows, widths[key], dtype, context)
        for i, layer in enumerate(layers):
            for sg in layer:
                key = (sg.kind, sg.weight_params)
                units.append((f"layers.{i}.{sg.kind}", [sg.name], widths[key], 1, sram[key]))
    else:
        need = [layer_sram_per_pe(layer, rows, cols, dtype, context) for layer in layers]
        if max(need) > cap:
            return None
        for i, layer in enumerate(layers):
            units.append((f"layers.{i}", [sg.name for sg in layer], cols, 1, need[i]))
    if wrap:
        c = _min_cols([head], rows, hw, dtype, context)
        if c is None:
            return None
        units.append(("head", [head.name], c, 1, sram_per_pe(head, rows, c, dtype, context)))
    else:
        kh = _tiles_for(head, rows, cols, dtype, context, cap)
        if kh is None:
            return None
        units.append(("head", [head.name], cols * kh, kh, sram_per_pe(head, rows, cols, dtype, context, kh)))
    spots = pack([u[2] for u in units], hw.mesh_width_pes, hw.mesh_height_pes, rows, cols, wrap)
    if spots is None:  # a region wider than a band
        return None
    regions = [Region(name, sgs, wafer, x, y, width, rows, k, sram, wrap_cols)
               for (name, sgs, width, k, sram), (wafer, x, y, wrap_cols) in zip(units, spots)]
    layer_cols = sum(u[2] for u in units if u[0].startswith("layers.0")) if split else cols
    tx, ty = hw.mesh_width_pes // layer_cols, hw.mesh_height_pes // rows
    return Placement(rows, layer_cols, tx, ty, regions[-1].wafer + 1, regions)


def _min_cols(sgs: list[Subgraph], rows: int, hw: WaferSpec, dtype: str, context: int) -> int | None:
    """Fewest columns (at `rows`) whose PEs hold `sgs` (binary search: the need falls as columns are added)."""
    cap = hw.tensor_bytes_per_pe
    fits = lambda c: sum(sram_per_pe(sg, rows, c, dtype, context) for sg in sgs) <= cap  # noqa: E731
    if not fits(hw.mesh_width_pes):
        return None
    return _fewest(fits, hw.mesh_width_pes)


def _fewest(fits, most: int) -> int:
    """The least n in 1..most with fits(n), for a `fits` that stays true once true (binary search)."""
    lo, hi = 1, most
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def layer_region_groups(p: Placement, w: Workload) -> list[tuple[list[Subgraph], int, int]]:
    """Distinct layer regions as (their subgraphs, rows, cols): one per layer shape, or per attn/mlp when split."""
    by_name = {sg.name: sg for sg in w.subgraphs}
    out = {}
    for r in p.regions:
        if r.name.startswith("layers."):
            members = [by_name[n] for n in r.subgraphs]
            key = (tuple((sg.kind, sg.weight_params, sg.layer == 0) for sg in members), r.height, r.width)
            out.setdefault(key, (members, r.height, r.width))
    return list(out.values())


def shortfall_error(w: Workload, hw: WaferSpec, dtype: str, context: int, wafers: int, detail: str = "",
                    fit: int | None = None) -> WaferError:
    """`fit`: wafers the placement actually needs (rectangles waste some PEs); else the SRAM lower bound. When the
    SRAM of `wafers` suffices in total, callers pass a `fit` above `wafers` (else there is no shortfall to report)."""
    need = total_sram_need(w, dtype, context)
    have = wafers * hw.pes_per_wafer * hw.tensor_bytes_per_pe
    fit = fit or math.ceil(need / (hw.pes_per_wafer * hw.tensor_bytes_per_pe))
    head = f"{w.name} at {dtype} with a {context}-token context needs {fmt_bytes(need)} of SRAM; {wafers} x {hw.name} "
    head += f"hold{'s' if wafers == 1 else ''} {fmt_bytes(have)} for tensors"
    if need > have:
        short = f"short by {fmt_bytes(need - have)}{detail}"
    else:  # enough SRAM in total, but layers are whole rectangles and rectangles leave PEs idle
        per_wafer = hw.pes_per_wafer * hw.tensor_bytes_per_pe
        short = (f"but layers are placed as whole rectangles{detail}: short by {fit - wafers} wafer"
                 f"{'s' if fit - wafers != 1 else ''} ({fmt_bytes((fit - wafers) * per_wafer)})")
    return WaferError(f"{head}{',' if need <= have else ':'} {short}; it fits on {fit} wafer{'s' if fit != 1 else ''} (--wafers {fit}) "
                      "or with a smaller --dtype/--context")


def place(
    w: Workload, hw: WaferSpec, dtype: str, context: int, grid: tuple[int, int] | None, wafers: int | None,
    collective: str, score: Callable[[Placement], float], policy: str = "fewest-wafers", strips: bool = True,
) -> Placement:
    """Place `w`: forced grid (wafers = as many as it needs unless --wafers) or the best grid by `score` among
    `policy`'s plans: "fewest-wafers" those on the fewest wafers that hold the model (or on --wafers), "fastest" all
    that fit --wafers (or MAX_WAFERS): a smaller dtype may then keep the PEs and run faster instead of saving wafers."""
    if policy not in PLACEMENTS:
        raise WaferError(f"unknown placement '{policy}' (known: {', '.join(PLACEMENTS)})")
    if 2 * COLORS_PER_AXIS[collective] > hw.routable_colors:
        raise WaferError(f"collective '{collective}' needs {2 * COLORS_PER_AXIS[collective]} fabric colors; {hw.name} routes {hw.routable_colors}")
    cap = hw.tensor_bytes_per_pe
    layers = _layers(w)
    if grid is not None:
        rows, cols = grid
        _check_grid(hw, rows, cols)
        need = max(layer_sram_per_pe(layer, rows, cols, dtype, context) for layer in layers)
        if need > cap:
            side = _min_square(layers, hw, dtype, context)
            hint = f"a grid of at least {side}x{side} fits" if side else "no grid fits one wafer: lower --dtype or --context"
            raise WaferError(
                f"a layer of {w.name} needs {fmt_bytes(need)} per PE on a {rows}x{cols} grid but a PE holds "
                f"{fmt_bytes(cap)} for tensors: short by {fmt_bytes(need - cap)} per PE "
                f"({fmt_bytes((need - cap) * rows * cols)} over the grid); {hint}"
            )
        p = _plan(w, hw, rows, cols, dtype, context)
        if p is not None and wafers is not None and p.wafers_used > wafers:
            p = _plan(w, hw, rows, cols, dtype, context, wrap=True) or p  # strips waste only a wafer's last band
        if p is None:
            raise WaferError(f"the embedding or LM head of {w.name} does not fit {MAX_EMBED_TILES} tiles of {rows}x{cols} "
                             f"PEs on {hw.name}: use a larger --grid")
        if p.wafers_used > MAX_WAFERS:
            raise WaferError(f"grid {rows}x{cols} needs {p.wafers_used} wafers (more than {MAX_WAFERS})")
        if wafers is not None and p.wafers_used > wafers:
            raise shortfall_error(w, hw, dtype, context, wafers, f" (a {rows}x{cols} grid per layer needs {p.wafers_used} wafers)",
                                  fit=p.wafers_used)
        return p
    side_min = _min_square(layers, hw, dtype, context)
    # (the per-layer method times one whole layer on one rectangle: no strips there)
    cands = _strip_candidates(layers, hw, dtype, context) if strips else []
    if side_min is None and not cands:  # a layer too big for a square may still fit a full-height strip
        raise _layer_misfit(w, layers, hw, dtype, context)
    grids = [(r, c, False, False) for r, c in _auto_candidates(hw, side_min)] if side_min else []
    if strips:
        grids += [(r, c, True, False) for r, c in cands]
        grids += [(r, 0, True, True) for r in sorted({r for r, _ in cands})]  # split: widths sized per subgraph
    plans = [p for p in (_plan(w, hw, r, c, dtype, context, wrap, split) for r, c, wrap, split in grids)
             if p is not None and p.wafers_used <= MAX_WAFERS]
    if not plans:
        if total_sram_need(w, dtype, context) > MAX_WAFERS * hw.pes_per_wafer * cap:
            raise shortfall_error(w, hw, dtype, context, MAX_WAFERS)
        raise WaferError(  # SRAM enough in total: the rectangles are what does not fit (a tile row, MAX_WAFERS)
            f"no placement of {w.name} at {dtype} with a {context}-token context fits {MAX_WAFERS} x {hw.name}: layers, "
            f"the embedding and the LM head are whole rectangles (the embedding and head within one row of tiles) and "
            f"no per-layer grid on the {hw.mesh_height_pes}x{hw.mesh_width_pes} PE mesh places them all; "
            "use a larger mesh, --grid RxC, or a smaller --dtype/--context"
        )
    limit = wafers if wafers is not None else (MAX_WAFERS if policy == "fastest" else min(p.wafers_used for p in plans))
    ok = [p for p in plans if p.wafers_used <= limit]
    if not ok:
        raise shortfall_error(w, hw, dtype, context, limit, fit=min(p.wafers_used for p in plans))
    return min(ok, key=score)


def _layer_misfit(w: Workload, layers: list[list[Subgraph]], hw: WaferSpec, dtype: str, context: int) -> WaferError:
    """No square grid holds a layer. Either the layer outweighs a whole wafer, or (a narrow mesh, padding, buffers)
    it does not fit per PE on the largest square: name the reason that holds, so the shortfall is always positive."""
    cap = hw.tensor_bytes_per_pe
    whole = max(layer_sram_per_pe(layer, 1, 1, dtype, context) for layer in layers)
    wafer = hw.pes_per_wafer * cap
    head = f"one layer of {w.name} at {dtype} with a {context}-token context"
    if whole > wafer:
        return WaferError(
            f"{head} needs about {fmt_bytes(whole)}, more than one {hw.name} wafer holds ({fmt_bytes(wafer)}): short by "
            f"{fmt_bytes(whole - wafer)}; layers are not split across wafers: lower --dtype or --context"
        )
    side = min(hw.mesh_width_pes, hw.mesh_height_pes)
    need = max(layer_sram_per_pe(layer, side, side, dtype, context) for layer in layers)
    return WaferError(
        f"{head} needs {fmt_bytes(need)} per PE on the largest square grid of the {hw.mesh_height_pes}x{hw.mesh_width_pes} "
        f"{hw.name} mesh ({side}x{side}) but a PE holds {fmt_bytes(cap)} for tensors: short by {fmt_bytes(need - cap)} "
        "per PE; try a rectangular --grid RxC, or lower --dtype or --context"
    )


def _auto_candidates(hw: WaferSpec, side_min: int) -> list[tuple[int, int]]:
    """Grids worth scoring: rectangles that tile the mesh exactly (tx x ty tiles per wafer, no PE left idle) and
    squares from the smallest that fits up to the mesh (sampled: ~64 sizes)."""
    side_max = min(hw.mesh_width_pes, hw.mesh_height_pes)
    cands = {(hw.mesh_height_pes // ty, hw.mesh_width_pes // tx) for tx in range(1, 33) for ty in range(1, 33)}
    step = max(1, (side_max - side_min) // 64)
    cands |= {(s, s) for s in range(side_min, side_max + 1, step)}
    return sorted(c for c in cands if c[0] * c[1] >= side_min * side_min // 2)


def _strip_candidates(layers, hw: WaferSpec, dtype: str, context: int) -> list[tuple[int, int]]:
    """Strip grids (packing.py): for each band height H // ty, the narrowest layer that fits (the densest packing)
    and two a little wider (fewer PEs per column, for the scorer to weigh against the fold)."""
    cap = hw.tensor_bytes_per_pe
    out = set()
    shapes = _shapes(layers)
    for ty in range(1, 33):
        rows = hw.mesh_height_pes // ty
        fits = lambda c: max(layer_sram_per_pe(l, rows, c, dtype, context) for l in shapes) <= cap  # noqa: E731,E741
        if rows <= 0 or not fits(hw.mesh_width_pes):
            continue
        lo = _fewest(fits, hw.mesh_width_pes)
        out |= {(rows, min(hw.mesh_width_pes, math.ceil(lo * f))) for f in (1.0, 1.1, 1.25)}
    return sorted(out)


def _min_square(layers, hw: WaferSpec, dtype: str, context: int) -> int | None:
    """Smallest square side whose per-PE need fits (binary search: the need falls as the grid grows)."""
    cap = hw.tensor_bytes_per_pe
    hi = min(hw.mesh_width_pes, hw.mesh_height_pes)
    shapes = _shapes(layers)
    fits = lambda s: max(layer_sram_per_pe(layer, s, s, dtype, context) for layer in shapes) <= cap  # noqa: E731
    if not fits(hi):
        return None
    lo = _fewest(fits, hi)
    # layers of one model share their shapes; confirm on all of them
    while lo <= min(hw.mesh_width_pes, hw.mesh_height_pes) and max(layer_sram_per_pe(l, lo, lo, dtype, context) for l in layers) > cap:
        lo += 1
    return lo if lo <= min(hw.mesh_width_pes, hw.mesh_height_pes) else None


def gemv_grid(hw: WaferSpec, m: int, n: int, grid: tuple[int, int] | None, score: Callable[[int, int], float]) -> tuple[int, int]:
    """Grid for a single [1,M]x[M,N] GEMV: forced, or the best square that holds the matrix at 16 bit."""
    cap = hw.tensor_bytes_per_pe
    need = lambda r, c: (cdiv(m, r) * cdiv(n, c) + 2 * cdiv(n, c) + cdiv(m, r)) * ACT_BYTES  # noqa: E731
    if grid is not None:
        r, c = grid
        _check_grid(hw, r, c)
        if need(r, c) > cap:
            raise WaferError(f"GEMV {m}x{n} needs {fmt_bytes(need(r, c))} per PE on {r}x{c}: short by {fmt_bytes(need(r, c) - cap)} per PE")
        return r, c
    side_max = min(hw.mesh_width_pes, hw.mesh_height_pes)
    sides = [s for s in range(1, side_max + 1) if need(s, s) <= cap]
    if not sides:
        total, wafer = m * n * ACT_BYTES, hw.pes_per_wafer * cap
        if total > wafer:
            raise WaferError(f"GEMV {m}x{n} needs {fmt_bytes(total)}, more than one {hw.name} wafer holds ({fmt_bytes(wafer)})")
        raise WaferError(  # it fits in total, but not per PE on the largest square of a narrow mesh
            f"GEMV {m}x{n} needs {fmt_bytes(need(side_max, side_max))} per PE on the largest square grid "
            f"({side_max}x{side_max}) but a PE holds {fmt_bytes(cap)}: short by {fmt_bytes(need(side_max, side_max) - cap)} "
            "per PE; try a rectangular --grid RxC"
        )
    return min(((s, s) for s in sides), key=lambda g: score(*g))
