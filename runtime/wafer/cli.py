"""`waferline simulate`: plan + simulate a model (or one GEMV) on a wafer-scale engine.

    waferline simulate (--arch NAME | --arch-file F | --model NAME_OR_BUNDLE_DIR) [--hardware wse2|wse3|FILE.toml]
                       [--wafers N] [--grid RxC|auto] [--collective ktree|pipeline|ring] [--clock-hz F]
                       [--dtype bf16|fp8|int8|int4] [--prompt-len P] [--context C] [--prefill-chunk T]
                       [--method placed|per-layer] [--placement fewest-wafers|fastest] [--output-len N]
                       [--json] [--plot OUT.png]
    waferline simulate --gemv MxN [--hardware ...] [--grid RxC|auto] [--collective ...] [--json]
    waferline simulate --gemm MxKxN [--hardware ...] [--grid RxC|auto] [--json]
    waferline simulate --allreduce N [--elems E] [--hardware ...] [--collective ...] [--json]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import msgspec

from .errors import WaferError

DEFAULT_HARDWARE = "wse3"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "simulate", help="simulate the model on a wafer-scale engine (Cerebras WSE-2/WSE-3)",
        description="Partition the decoder into tile subgraphs, place them on a wafer-scale mesh and predict "
                    "decode/prefill speed from hop, relay and SRAM physics.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--arch", metavar="NAME", help="architecture preset (e.g. llama3-8b, llama3.1-405b)")
    src.add_argument("--arch-file", metavar="F", help="JSON/TOML with ArchSpec fields")
    src.add_argument("--model", metavar="NAME_OR_BUNDLE_DIR", help="a model bundle directory or model name")
    src.add_argument("--gemv", metavar="MxN", help="a single [1,M] x [M,N] GEMV (WaferLLM MeshGEMV micro-benchmark)")
    src.add_argument("--gemm", metavar="MxKxN", help="a single [M,K] x [K,N] GEMM (WaferLLM MeshGEMM micro-benchmark)")
    src.add_argument("--allreduce", type=int, metavar="N", help="one allreduce along a line of N PEs (with --elems)")
    p.add_argument("--hardware", default=DEFAULT_HARDWARE, metavar="wse2|wse3|FILE.toml", help="default: %(default)s")
    p.add_argument("--wafers", type=int, metavar="N", help="wafers available (default: as many as the placement needs)")
    p.add_argument("--grid", default="auto", metavar="RxC|auto", help="per-layer PE grid (default: auto)")
    p.add_argument("--prefill-grid", metavar="RxC", help="forced grids: time prefill on a grid of its own (WaferLLM "
                   "used different grids for prefill and decode) and the weights' move to the decode grid's layout")
    p.add_argument("--collective", default="ktree", choices=("ktree", "pipeline", "ring"), help="allreduce algorithm")
    p.add_argument("--clock-hz", type=float, metavar="F", help="override the preset clock")
    p.add_argument("--dtype", default="bf16", choices=("bf16", "fp8", "int8", "int4"), help="weight precision on the wafer")
    p.add_argument("--prompt-len", type=int, default=1024, metavar="P", help="prompt tokens for TTFT (default: %(default)s)")
    p.add_argument("--context", type=int, default=4096, metavar="C", help="KV positions resident (default: %(default)s)")
    p.add_argument("--output-len", type=int, metavar="N", help="tokens generated after the prompt: reports the end-to-end "
                   "speed (N over prefill + decode time, as WaferLLM's Table 2; default: not reported)")
    p.add_argument("--prefill-chunk", type=int, metavar="T",
                   help="auto placement: tokens per layer-pipelined prefill chunk (default: the TTFT-optimal one that fits SRAM)")
    p.add_argument("--draft", metavar="ARCH", help="speculative decoding: the draft model's architecture preset "
                   "(same vocabulary as the target), placed on its own wafer")
    p.add_argument("--draft-tokens", type=int, metavar="K", help="draft tokens proposed per verify step (default: 4)")
    p.add_argument("--acceptance", type=acceptance_arg, metavar="A|measured",
                   help="probability that one draft token is accepted (with --draft); measured: the rate the local "
                        "server measured on your code for --model (or the model it served last)")
    p.add_argument("--method", choices=("placed", "per-layer"), help="placed (default): the whole model as placed, "
                   "with hops, wafer crossings, embedding and head; per-layer: one layer on its grid x the layer count, "
                   "as WaferLLM measured (no crossings, no head)")
    p.add_argument("--placement", choices=("fewest-wafers", "fastest"), help="auto grid: fewest-wafers (default) "
                   "takes the fastest plan on the fewest wafers that hold the model; fastest takes the fastest plan "
                   "on up to --wafers")
    p.add_argument("--users", type=int, metavar="U", help="concurrent users decoding, each with its own KV cache "
                   "(default: 1): per-user speed against throughput")
    p.add_argument("--elems", type=int, metavar="E", help="--allreduce: 16-bit values reduced (default: 1)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="write the wafer heat-map and latency bars")
    return p


def add_explore_parser(subparsers) -> argparse.ArgumentParser:
    from .explore import DEFAULT_ACCEPTANCE, DEFAULT_ARCHS

    p = subparsers.add_parser(
        "explore", help="sweep model sizes, precision, wafers, context and speculation: who reaches N tok/s per user",
        description="Simulate every architecture x dtype x context x wafer count, with and without speculative "
                    "decoding, and name per series the largest model that reaches the target speed per user.",
    )
    csv = lambda kind: lambda text: [kind(v) for v in text.split(",") if v]  # noqa: E731
    p.add_argument("--archs", type=csv(str), default=list(DEFAULT_ARCHS), metavar="A,B,..",
                   help="architecture presets (default: %(default)s)")
    p.add_argument("--dtypes", type=csv(str), default=["bf16"], metavar="D,..", help="bf16, fp8, int8, int4 (default: bf16)")
    p.add_argument("--wafers", type=csv(int), default=[1, 4], metavar="N,..", help="wafer counts (default: 1,4)")
    p.add_argument("--contexts", type=csv(int), default=[8192, 131072], metavar="C,..", help="default: 8192,131072")
    p.add_argument("--acceptance", default=str(DEFAULT_ACCEPTANCE), metavar="A|none",
                   help="one draft-token acceptance rate for every speculative point, or none (default: %(default)s)")
    p.add_argument("--draft-tokens", type=int, default=0, metavar="K",
                   help="draft tokens per verify (default 0: the fastest k of 1..8 per point)")
    p.add_argument("--target", type=float, default=1000.0, metavar="TOK_S", help="per-user tok/s (default: 1000)")
    p.add_argument("--hardware", default=DEFAULT_HARDWARE, metavar="wse2|wse3|FILE.toml", help="default: %(default)s")
    p.add_argument("--collective", default="ktree", choices=("ktree", "pipeline", "ring"),
                   help="allreduce algorithm (cs3's constants were fitted with pipeline)")
    p.add_argument("--json", action="store_true", help="print the points as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="write tok/s against active parameters, the knee marked")
    return p


def run_explore(args) -> int:
    from .explore import explore, format_explore
    from .workload import DTYPES

    bad = [d for d in args.dtypes if d not in DTYPES]
    if bad:
        raise WaferError(f"unknown dtype '{bad[0]}' (known: {', '.join(DTYPES)})")
    if min(args.wafers) < 1 or min(args.contexts) < 1:
        raise WaferError("--wafers and --contexts take positive integers")
    try:
        acceptance = None if args.acceptance.lower() == "none" else float(args.acceptance)
    except ValueError:
        raise WaferError(f"--acceptance must be a rate in [0, 1) or none, not '{args.acceptance}'") from None
    if args.plot:
        check_plot_target(args.plot)
    report = explore(args.archs, args.dtypes, args.wafers, args.contexts, acceptance, args.draft_tokens, args.target,
                     args.hardware, progress=not args.json, collective=args.collective)
    print(msgspec.json.encode(report).decode() if args.json else format_explore(report))
    if args.plot:
        from .plot import plot_explore

        print(f"wrote {plot_explore(report, args.plot)}", file=sys.stderr)
    return 0


def acceptance_arg(text: str):
    if text == "measured":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a rate in [0, 1] or 'measured', not '{text}'") from None


def measured_acceptance(model: str | None) -> tuple[float, str]:
    """(rate, where it comes from) from the acceptance tally the local server keeps (runtime/acceptance.py)."""
    from runtime.acceptance import MIN_TESTED, latest_tally, read_tally

    tally = read_tally(Path(model).name) if model else latest_tally()
    who = Path(model).name if model else "any model"
    if tally is None or tally.tested < MIN_TESTED:
        seen = f"only {tally.tested} draft tokens tested so far" if tally else "no drafts recorded yet"
        raise WaferError(f"--acceptance measured: {seen} for {who}; complete code with the local server "
                         f"(`waferline serve` in an editor, or `waferline complete`) until {MIN_TESTED} are, or give a rate")
    source = (f"measured by the local runtime on {tally.model} (prompt lookup): {tally.accepted:,} of {tally.tested:,} "
              f"tested draft tokens accepted over {tally.completions:,} completions, updated {tally.updated}")
    return tally.rate, source


def parse_grid(text: str | None) -> tuple[int, int] | None:
    if text is None or text == "auto":
        return None
    try:
        r, c = text.lower().split("x")
        return int(r), int(c)
    except ValueError:
        raise WaferError(f"--grid must be RxC (e.g. 420x420) or auto, not '{text}'") from None


def parse_gemv(text: str) -> tuple[int, int]:
    try:
        m, n = text.lower().split("x")
        return int(m), int(n)
    except ValueError:
        raise WaferError(f"--gemv must be MxN (e.g. 16384x16384), not '{text}'") from None


def parse_dims(text: str, count: int, flag: str, form: str, example: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != count:
        raise WaferError(f"{flag} must be {form} (e.g. {example}), not '{text}'")
    return dims


def load_workload(arch: str | None = None, arch_file: str | None = None, model: str | None = None):
    """The workload for one of the three sources (all through the ONNX graph partitioner)."""
    from .workload import load_arch, load_arch_file, workload_for_arch, workload_from_graph

    if arch:
        return workload_for_arch(load_arch(arch))
    if arch_file:
        return workload_for_arch(load_arch_file(arch_file))
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(model)
    if not path.is_dir():
        try:
            from runtime.models import resolve_model
        except ImportError:
            raise WaferError(f"'{model}' is not a bundle directory (model names need runtime.models)") from None
        path = resolve_model(model)
    from runtime.bundle import read_meta

    read_meta(path)  # a bundle, its shapes sane; its tokenizer is the engine's business (loading it cost 0.75 s here)
    model_path = path / "model.onnx"
    if not model_path.is_file():
        raise WaferError(f"model bundle {path} is incomplete: model.onnx is missing")
    try:
        graph = onnx.load(str(model_path), load_external_data=False)
    except (OSError, DecodeError) as exc:  # protobuf's DecodeError: the bytes are not a ModelProto
        raise WaferError(f"{model_path} is not a readable ONNX model ({exc}); convert the GGUF again") from None
    try:
        return workload_from_graph(graph, name=path.name)
    except (KeyError, IndexError, TypeError, ValueError) as exc:  # a damaged graph that still parses as protobuf
        raise WaferError(f"{model_path} is damaged: the partitioner cannot read it "
                         f"({type(exc).__name__}: {exc!s:.80}); convert the GGUF again") from None


def run_case(fields: dict):
    """Simulate from flag-named fields (the CLI's and bench/wafer_cases.toml's): Report or GemvReport."""
    from .hardware import load_hardware
    from .sim import SimOptions, simulate, simulate_gemv

    hw = load_hardware(fields.get("hardware", DEFAULT_HARDWARE), fields.get("clock_hz"))
    grid = parse_grid(fields.get("grid"))
    collective = fields.get("collective", "ktree")
    if fields.get("gemv"):
        m, n = parse_gemv(fields["gemv"])
        return simulate_gemv(m, n, hw, grid, collective)
    if fields.get("gemm"):
        from .micro import simulate_gemm
        return simulate_gemm(*parse_dims(fields["gemm"], 3, "--gemm", "MxKxN", "4096x4096x4096"), hw, grid)
    if fields.get("allreduce") is not None:
        from .micro import simulate_allreduce
        return simulate_allreduce(fields["allreduce"], fields.get("elems", 1), hw, collective)
    if fields.get("elems") is not None:
        raise WaferError("--elems applies to --allreduce N")
    w = load_workload(fields.get("arch"), fields.get("arch_file"), fields.get("model"))
    source = ""
    if fields.get("acceptance") == "measured":
        if fields.get("draft") is None:
            raise WaferError("--acceptance and --draft-tokens need --draft ARCH (the draft model)")
        fields = {**fields}
        fields["acceptance"], source = measured_acceptance(fields.get("model"))
    opts = SimOptions(
        dtype=fields.get("dtype", "bf16"), collective=collective, grid=grid, wafers=fields.get("wafers"),
        prompt_len=fields.get("prompt_len", 1024), context=fields.get("context", 4096),
        prefill_chunk=fields.get("prefill_chunk"),
        draft_tokens=fields.get("draft_tokens", 4), acceptance=fields.get("acceptance"),
        method=fields.get("method", "placed"), placement=fields.get("placement", "fewest-wafers"),
        users=fields.get("users", 1), prefill_grid=parse_grid(fields.get("prefill_grid")),
        output_len=fields.get("output_len", 0),
    )
    if fields.get("draft") is None and (fields.get("acceptance") is not None or fields.get("draft_tokens") is not None):
        raise WaferError("--acceptance and --draft-tokens need --draft ARCH (the draft model)")
    draft = load_workload(fields["draft"]) if fields.get("draft") else None
    report = simulate(w, hw, opts, draft)
    report.acceptance_source = source or ("stated" if report.acceptance is not None else "")
    return report


def check_plot_target(out: str) -> None:
    """--plot names a .png file or a directory: the nearest existing ancestor must be a directory we may write."""
    target = Path(out).absolute()
    parent = target.parent if target.suffix.lower() == ".png" else target
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if target.is_dir() and target.suffix.lower() == ".png":
        raise WaferError(f"--plot {out} is a directory")
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise WaferError(f"--plot {out}: cannot write in {parent}")


def run(args) -> int:
    from .report import AllreduceReport, GemmReport, GemvReport, format_allreduce, format_gemm, format_gemv, format_table

    fields = {k: v for k, v in vars(args).items() if v is not None}
    if getattr(args, "plot", None):
        check_plot_target(args.plot)  # before the simulation, not after it
    report = run_case(fields)
    if args.json:
        sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
    elif isinstance(report, GemvReport):
        print(format_gemv(report))
    elif isinstance(report, GemmReport):
        print(format_gemm(report))
    elif isinstance(report, AllreduceReport):
        print(format_allreduce(report))
    else:
        print(format_table(report))
    if getattr(args, "plot", None):
        if isinstance(report, (GemvReport, GemmReport, AllreduceReport)):
            raise WaferError("--plot needs a model (--arch/--arch-file/--model), not a micro-benchmark")
        from .plot import plot_report

        out = plot_report(report, args.plot)
        print(f"wrote {out}", file=sys.stderr)
    return 0
