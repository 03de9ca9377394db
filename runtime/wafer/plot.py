"""One PNG: the wafer heat-map of SRAM residency with the critical path drawn region to region, and the latency
breakdown bars (decode per token, prefill per prompt). matplotlib with the Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .cost import COMPONENTS
from .errors import WaferError
from .report import Report

MAX_WAFERS_DRAWN = 6


def plot_report(report: Report, out: str | Path) -> Path:
    """Write the figure to `out` (a .png path, or a directory: <model>-<hardware>.png inside it); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    out = Path(out)
    try:
        if out.suffix.lower() != ".png":
            out.mkdir(parents=True, exist_ok=True)
            out = out / f"{report.model}-{report.hardware}.png".replace("/", "_")
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WaferError(f"cannot write the plot to {out}: {exc.strerror}") from None

    n_draw = min(report.wafers_used, MAX_WAFERS_DRAWN)
    width = max(r.x + r.width for r in report.regions)
    height = max(r.y + r.height for r in report.regions)
    fig = plt.figure(figsize=(2.2 * n_draw + 4, 8.5))
    grid = fig.add_gridspec(2, n_draw, height_ratios=[3, 1.4])
    cmap = plt.get_cmap("viridis")
    for wi in range(n_draw):
        ax = fig.add_subplot(grid[0, wi])
        ax.set_facecolor("#e8e8e8")
        for r in report.regions:
            if r.wafer != wi:
                continue
            frac = min(1.0, r.sram_use_pct / 100.0)
            ax.add_patch(Rectangle((r.x, r.y), r.width, r.height, facecolor=cmap(frac), edgecolor="white", lw=0.5))
            if r.width * r.height > 0.02 * width * height:
                ax.text(r.x + r.width / 2, r.y + r.height / 2, r.name.replace("layers.", "L"), ha="center",
                        va="center", fontsize=6, color="white")
        path = [(r.x + r.width / 2, r.y + r.height / 2) for r in report.regions if r.wafer == wi]
        if path:
            xs, ys = zip(*path)
            ax.plot(xs, ys, color="#d62728", lw=1.2, marker="o", ms=2)  # critical path: region to region hops
            ax.annotate("in", path[0], color="#d62728", fontsize=7)
            ax.annotate("out", path[-1], color="#d62728", fontsize=7)
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"wafer {wi}", fontsize=8)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 100))
    fig.colorbar(sm, ax=fig.axes[:n_draw], fraction=0.02, pad=0.01, label="SRAM used per PE (%)")
    more = f" (+{report.wafers_used - n_draw} more wafers)" if report.wafers_used > n_draw else ""
    fig.suptitle(
        f"{report.model} on {report.wafers_used} x {report.hardware}{more}: grid {report.grid}, {report.dtype}, "
        f"{report.collective} — {report.decode_tokens_per_s:,.0f} tok/s decode, TTFT {report.ttft_s * 1e3:.1f} ms",
        fontsize=10,
    )

    bars = fig.add_subplot(grid[1, :])
    colors = plt.get_cmap("tab20")(np.linspace(0, 1, len(COMPONENTS)))
    pre = (f"prefill / prompt ({report.prefill_chunks} x {report.prefill_chunk_tokens} tok)" if report.prefill_pipelined
           else "prefill / prompt")
    rows = [("decode / token", report.breakdown, 1e6, "µs"), (pre, report.prefill_breakdown, 1e3, "ms")]
    for yi, (label, bd, scale, unit) in enumerate(rows):
        total = sum(bd.values()) or 1.0
        left = 0.0
        for ci, comp in enumerate(COMPONENTS):
            frac = bd.get(comp, 0.0) / total
            if frac <= 0:
                continue
            bars.barh(yi, frac * 100, left=left, color=colors[ci], label=comp if yi == 0 or comp not in report.breakdown else None)
            if frac > 0.06:
                bars.text(left + frac * 50, yi, f"{comp}\n{bd[comp] * scale:.3g} {unit}", ha="center", va="center", fontsize=6)
            left += frac * 100
        bars.text(101, yi, f"{total * scale:,.2f} {unit}", va="center", fontsize=8)
    bars.set_yticks(range(len(rows)), [r[0] for r in rows])
    bars.set_xlim(0, 115)
    bars.set_xlabel("share of time (%)")
    bars.legend(ncol=6, fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    try:
        fig.savefig(out, dpi=110, bbox_inches="tight")
    except OSError as exc:
        raise WaferError(f"cannot write the plot to {out}: {exc.strerror}") from None
    finally:
        plt.close(fig)
    return out


def plot_explore(report, out: str | Path) -> Path:
    """decode tok/s per user against active parameters, one panel per context, a line per (wafers, speculation):
    the target as a dashed line and each series' knee (the largest model that reaches it) starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    out = Path(out)
    if out.suffix.lower() != ".png":
        out = out / f"explore-{report.hardware}.png"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WaferError(f"cannot write the plot to {out}: {exc.strerror}") from None
    contexts = sorted({p.context for p in report.points})
    dtypes = sorted({p.dtype for p in report.points})
    fig, axes = plt.subplots(1, len(contexts), figsize=(6.5 * len(contexts), 5), squeeze=False, sharey=True)
    for ax, ctx in zip(axes[0], contexts):
        series = sorted({(p.dtype, p.wafers_limit, p.acceptance is not None) for p in report.points if p.context == ctx})
        for dtype, wafers, spec in series:
            pts = sorted((p for p in report.points if (p.context, p.dtype, p.wafers_limit, p.acceptance is not None)
                          == (ctx, dtype, wafers, spec) and p.decode_tokens_per_s), key=lambda p: p.active_params)
            if not pts:
                continue
            label = f"<= {wafers} wafer{'s' if wafers != 1 else ''}{', ' + dtype if len(dtypes) > 1 else ''}" + \
                    (", speculation" if spec else "")
            dense = [p for p in pts if p.active_params == p.total_params]  # a line through the dense models
            line, = ax.plot([p.active_params / 1e9 for p in dense], [p.decode_tokens_per_s for p in dense],
                            "--o" if spec else "-o", label=label, markersize=4)
            moe = [p for p in pts if p.active_params < p.total_params]  # mixtures of experts: markers, by active size
            ax.plot([p.active_params / 1e9 for p in moe], [p.decode_tokens_per_s for p in moe], "^", markersize=6,
                    color=line.get_color(), markerfacecolor="none")
            ok = [p for p in pts if p.meets_target]
            if ok:
                knee = max(ok, key=lambda p: p.active_params)
                ax.plot([knee.active_params / 1e9], [knee.decode_tokens_per_s], "*", markersize=14, color=line.get_color())
                ax.annotate(knee.arch, (knee.active_params / 1e9, knee.decode_tokens_per_s), fontsize=7,
                            xytext=(4, 6), textcoords="offset points")
        ax.axhline(report.target_tokens_per_s, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}B"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("active parameters (triangles: mixture of experts)")
        ax.set_title(f"{report.hardware}, {ctx:,}-token context")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("decode tok/s per user")
    fig.suptitle(f"which models reach {report.target_tokens_per_s:,.0f} tok/s per user (* the largest per series)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
