"""`waferline explore`: the project's question -- which model sizes reach a per-user decode speed on N wafers, with and
without speculation, at which context -- answered by sweeping the simulator, one placed simulation per point.

    waferline explore [--archs A,B,...] [--dtypes bf16,int8] [--wafers 1,4] [--contexts 8192,131072]
                      [--acceptance 0.7|none] [--draft-tokens K] [--target 1000] [--hardware wse3|cs3|...] [--collective ktree|pipeline|ring] [--json] [--plot OUT.png]

Every point is `waferline simulate --arch A --dtype D --context C --wafers N` (auto placement, fewest wafers), and with
speculation the same plus `--draft` (the smallest preset with the target's vocabulary, on its own wafer: the target
then gets N - 1) and the one stated `--acceptance` for all. A point that does not fit says why; a knee per series is
the largest model (by active parameters) that still reaches the target.
"""

from __future__ import annotations

import sys

import msgspec

from .errors import WaferError
from .hardware import load_hardware
from .sim import SimOptions, simulate
from .workload import _arch_table, load_arch, workload_for_arch, workload_from_arch

DEFAULT_ARCHS = ("llama3.2-1b", "llama3-8b", "qwen3-32b", "llama3.1-70b", "gpt-oss-120b", "llama4-scout",
                 "qwen3-235b-a22b", "llama4-maverick", "llama3.1-405b")
REPORT_ARCHS = ("llama3.2-1b", "llama3-8b", "qwen3-32b", "llama3.1-70b", "gpt-oss-120b", "llama4-scout")  # editor chart
DEFAULT_ACCEPTANCE = 0.7  # one stated rate for every point (issue 11: "the same rate for all")


class ExplorePoint(msgspec.Struct):
    arch: str
    active_params: int
    total_params: int
    dtype: str
    context: int
    wafers_limit: int
    acceptance: float | None  # None: no speculation
    draft: str | None
    decode_tokens_per_s: float | None  # None: the point does not run (does not fit, or no draft)
    wafers_used: int
    bottleneck: str  # the largest share of decode time, or why the point does not run
    meets_target: bool
    draft_tokens: int = 0  # with speculation: the k used (the best of 1..8 unless --draft-tokens)


class Knee(msgspec.Struct):
    """Per series (dtype, context, wafers, speculation): the largest model that reaches the target."""

    dtype: str
    context: int
    wafers_limit: int
    acceptance: float | None
    arch: str | None  # None: no model of the sweep reaches it
    active_params: int
    decode_tokens_per_s: float


class ExploreReport(msgspec.Struct):
    hardware: str
    target_tokens_per_s: float
    draft_tokens: int
    points: list[ExplorePoint]
    knees: list[Knee]


def draft_for(arch: str) -> str | None:
    """The smallest dense preset with `arch`'s vocabulary and under a quarter of its active size (None if none)."""
    target = load_arch(arch)
    cands = []
    for name in _arch_table():
        spec = load_arch(name)
        if spec.vocab_size == target.vocab_size and not spec.n_experts and name != arch:
            cands.append((workload_from_arch(spec).active_weight_bytes("bf16"), name))
    limit = workload_from_arch(target).active_weight_bytes("bf16") / 4
    fitting = sorted(c for c in cands if c[0] <= limit)
    return fitting[0][1] if fitting else None


def _point(arch: str, w, hw, dtype: str, context: int, wafers: int, acceptance: float | None, draft: str | None,
           draft_tokens: int, target: float, collective: str = "ktree") -> ExplorePoint:
    active, total = w.params()
    base = dict(arch=arch, active_params=active, total_params=total, dtype=dtype, context=context, wafers_limit=wafers,
                acceptance=acceptance, draft=draft)
    if acceptance is not None and draft is None:
        return ExplorePoint(**base, decode_tokens_per_s=None, wafers_used=0,
                            bottleneck="no preset draft with this vocabulary", meets_target=False)
    if acceptance is not None and wafers < 2:
        return ExplorePoint(**base, decode_tokens_per_s=None, wafers_used=0,
                            bottleneck="the draft takes a wafer of its own", meets_target=False)
    opts = SimOptions(dtype=dtype, context=context, prompt_len=min(1024, context), collective=collective,
                      wafers=wafers - (1 if acceptance is not None else 0))
    try:
        if acceptance is None:
            r = simulate(w, hw, opts)
            speed, used, breakdown, k = r.decode_tokens_per_s, r.wafers_used, r.breakdown, 0
        else:
            speed, used, breakdown, k = _speculative(w, hw, opts, draft, acceptance, draft_tokens)
    except WaferError as exc:
        return ExplorePoint(**base, decode_tokens_per_s=None, wafers_used=0, bottleneck=_why(str(exc)), meets_target=False)
    if used > wafers:
        return ExplorePoint(**base, decode_tokens_per_s=None, wafers_used=used,
                            bottleneck=f"needs {used} wafers with its draft", meets_target=False)
    top = max(breakdown.items(), key=lambda kv: kv[1])[0] if breakdown else ""
    share = 100 * breakdown.get(top, 0) / (sum(breakdown.values()) or 1)
    return ExplorePoint(**base, decode_tokens_per_s=speed, wafers_used=used, draft_tokens=k,
                        bottleneck=f"{top} {share:.0f}%", meets_target=speed >= target)


def _speculative(w, hw, opts: SimOptions, draft: str, acceptance: float, draft_tokens: int):
    """(tok/s, wafers, breakdown, k) of the speculative loop: the target placed once, then k = `draft_tokens`, or
    (0) the best k of 1..8 -- each draft token costs a draft step and the verify grows with k, so k is worth choosing."""
    from .placement import place
    from .sim import _roomy_for_verify, _Sim

    sim = _Sim(w, hw, opts)
    p = place(w, hw, opts.dtype, opts.context, None, opts.wafers, opts.collective, sim.decode_cycles, opts.placement)
    dw = workload_for_arch(load_arch(draft))
    drafts: dict = {}  # the draft placed once for every k
    best = None
    for k in ([draft_tokens] if draft_tokens else range(1, 9)):
        ok = msgspec.structs.replace(opts, draft_tokens=k, acceptance=acceptance)
        _, _, kp, (spec, breakdown) = _roomy_for_verify(w, hw, ok, sim, p, dw, drafts)  # as simulate places it
        speed = spec.expected_tokens_per_step / spec.step_s
        if best is None or speed > best[0]:
            best = (speed, kp.wafers_used + spec.draft_wafers, breakdown, k)
    return best


def _why(message: str) -> str:
    """The simulator's refusal, shortened to its reason (the table has one line per point)."""
    if "needs" in message and "SRAM" in message:
        return "does not fit: " + message.split("needs", 1)[1].split(";")[0].strip()
    if message.startswith("one layer of"):
        return "does not fit: one layer outgrows a wafer's largest region"
    return message.split(";")[0][:70]


def explore(archs=DEFAULT_ARCHS, dtypes=("bf16",), wafers=(1, 4), contexts=(8192, 131072),
            acceptance: float | None = DEFAULT_ACCEPTANCE, draft_tokens: int = 0, target: float = 1000.0,
            hardware: str = "wse3", progress: bool = True, collective: str = "ktree") -> ExploreReport:
    """The sweep: every arch x dtype x context x wafer count, without speculation and (acceptance given) with it."""
    from tqdm import tqdm

    if target <= 0:
        raise WaferError(f"--target must be > 0 tok/s (got {target})")
    if acceptance is not None and not 0.0 <= acceptance < 1.0:
        raise WaferError(f"--acceptance must be in [0, 1) (got {acceptance})")
    hw = load_hardware(hardware)
    works = {a: workload_for_arch(load_arch(a)) for a in archs}  # unknown names fail here, before the sweep
    drafts = {a: draft_for(a) for a in archs} if acceptance is not None else {}
    rates = (None,) if acceptance is None else (None, acceptance)
    grid = [(a, d, c, n, r) for d in dtypes for c in contexts for n in wafers for r in rates for a in archs]
    if not 0 <= draft_tokens <= 16:
        raise WaferError(f"--draft-tokens must be 0 (the best of 1..8) to 16 (got {draft_tokens})")
    points = [_point(a, works[a], hw, d, c, n, r, drafts.get(a), draft_tokens, target, collective)
              for a, d, c, n, r in tqdm(grid, desc="explore", unit="point", disable=not progress, file=sys.stderr)]
    knees = []
    for d in dtypes:
        for c in contexts:
            for n in wafers:
                for r in rates:
                    ok = [p for p in points if (p.dtype, p.context, p.wafers_limit, p.acceptance) == (d, c, n, r)
                          and p.meets_target]
                    best = max(ok, key=lambda p: p.active_params, default=None)
                    knees.append(Knee(d, c, n, r, best.arch if best else None, best.active_params if best else 0,
                                      best.decode_tokens_per_s if best else 0.0))
    return ExploreReport(hw.name, target, draft_tokens, points, knees)


def _spec_label(p) -> str:
    return "off" if p.acceptance is None else f"a={p.acceptance:g}" + (f",k={p.draft_tokens}" if p.draft_tokens else "")


def format_explore(r: ExploreReport) -> str:
    lines = [f"{'arch':<18}{'active/total':>16} {'dtype':<5}{'context':>8}{'wafers<=':>9} {'spec':<11}{'tok/s':>9}"
             f"{'used':>6}  {'bottleneck / why not'}"]
    for p in r.points:
        speed = f"{p.decode_tokens_per_s:9,.0f}" if p.decode_tokens_per_s is not None else f"{'-':>9}"
        mark = " *" if p.meets_target else ""
        lines.append(f"{p.arch:<18}{p.active_params / 1e9:7.1f}B/{p.total_params / 1e9:6.1f}B {p.dtype:<5}{p.context:>8}"
                     f"{p.wafers_limit:>9} {_spec_label(p):<11}{speed}{p.wafers_used or '':>6}  {p.bottleneck}{mark}")
    lines.append(f"* reaches {r.target_tokens_per_s:,.0f} tok/s per user on {r.hardware}; the largest that does, per series:")
    for k in r.knees:
        spec = "no speculation" if k.acceptance is None else \
            f"speculation a={k.acceptance:g}, k={r.draft_tokens or 'best of 1..8'}"
        head = f"  {k.dtype}, {k.context:,} context, <= {k.wafers_limit} wafer{'s' if k.wafers_limit != 1 else ''}, {spec}: "
        lines.append(head + (f"{k.arch} ({k.active_params / 1e9:.1f}B active, {k.decode_tokens_per_s:,.0f} tok/s)"
                             if k.arch else "none of the sweep"))
    return "\n".join(lines)
