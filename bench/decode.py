"""Decode benchmark: our ONNX Runtime engine against llama.cpp (llama-cpp-python) on the same GGUF, same prompt ids,
same thread count, alternating runs; plus top-1 agreement of our logits with llama.cpp's over >= 300 code positions.

Speculation is compared with speculation: our prompt-lookup decoding against llama.cpp's own
(llama-cpp-python's LlamaPromptLookupDecoding), greedy, on the same repetitive prompt. Beside each decode rate:
the bytes a decode step reads (weights that are multiplied, not looked up, plus the K/V cache), the GB/s that
implies, and its share of this machine's measured read ceiling (bench/machine.py).

    python bench/decode.py [--model smollm2-135m] [--runs 3] [--prompt-tokens 460] [--new-tokens 128] [--threads 2]

Prints a table and one summary line to paste into a note. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_line, read_bandwidth_gbs  # noqa: E402
from runtime import models  # noqa: E402
from runtime.bundle import load_bundle  # noqa: E402
from runtime.engine import Decoder, GenerateOptions, generate  # noqa: E402


def code_text() -> str:
    """Real Python code every machine has: the standard library's textwrap module."""
    return inspect.getsource(textwrap)


def prompt_ids(tokenizer, n: int, offset: int = 0) -> list[int]:
    return tokenizer.encode(code_text()).ids[offset : offset + n]


class Ours:
    name = "waferline (ORT)"

    def __init__(self, bundle, threads):
        self.bundle = bundle
        self.decoder = Decoder(bundle, threads=threads, max_context=2048)

    def run(self, ids, new_tokens, speculate=False):
        self.decoder.reset()
        r = generate(self.decoder, ids, GenerateOptions(max_new_tokens=new_tokens, speculate=speculate, stop_token_ids=[]))
        return r.prompt_s, r.decode_s, r.token_ids

    def logits(self, ids):
        self.decoder.reset()
        return np.concatenate([self.decoder.verify(ids[i : i + 256]).copy() for i in range(0, len(ids), 256)])


class LlamaCpp:
    name = "llama.cpp"

    def __init__(self, gguf, threads, logits_all=False):
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=threads, n_threads_batch=threads, n_batch=512,
                         logits_all=logits_all, verbose=False)

    def run(self, ids, new_tokens, speculate=False):
        llm = self.llm
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        out = [self._next()]
        t1 = time.perf_counter()
        while len(out) < new_tokens:
            llm.eval([out[-1]])
            out.append(self._next())
        return t1 - t0, time.perf_counter() - t1, out

    def _next(self) -> int:
        """Greedy choice from the last position's logits, read straight from the llama.cpp context."""
        row = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),))
        return int(np.argmax(row))

    def logits(self, ids):
        self.llm.reset()
        self.llm.eval(ids)
        return np.array(self.llm.scores[: len(ids)])


class LlamaCppLookup:
    """llama.cpp with its own prompt-lookup speculation, as llama-cpp-python users turn it on (greedy)."""

    name = "llama.cpp + prompt lookup"

    def __init__(self, gguf, threads):
        from llama_cpp import Llama
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        self.llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=threads, n_threads_batch=threads, n_batch=512,
                         # logits_all=True by hand: with a draft model llama-cpp-python 0.3.36 computes every row's
                         # logits but sizes its score buffer for one batch unless told (ValueError past 512 tokens)
                         logits_all=True, draft_model=LlamaPromptLookupDecoding(), verbose=False)

    def run(self, ids, new_tokens):
        out, t1 = [], None
        t0 = time.perf_counter()
        for tok in self.llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
            if t1 is None:
                t1 = time.perf_counter()  # the first token comes with the prompt's evaluation
            out.append(tok)
            if len(out) >= new_tokens:
                break
        return t1 - t0, time.perf_counter() - t1, out


def onnx_bytes_per_token(bundle, context: int) -> float:
    """Bytes one decode step of our graph reads: every initializer that is multiplied (a table read only through
    Gather/GatherBlockQuantized -- embeddings, RoPE rows, the exact head rows -- costs a few rows and is left out)
    plus the float32 K/V."""
    import onnx

    graph = onnx.load(str(bundle.path / "model.onnx"), load_external_data=False).graph
    consumers: dict[str, list] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node.op_type, i))
    total = 0
    for t in graph.initializer:
        uses = consumers.get(t.name, [])
        if uses and all(op in ("Gather", "GatherBlockQuantized") and i != 1 for op, i in uses):  # input 1: the indices
            continue
        size = next((int(kv.value) for kv in t.external_data if kv.key == "length"), len(t.raw_data))
        total += size
    m = bundle.meta
    return total + m.n_layers * 2 * m.n_kv_heads * m.head_dim * context * 4


def gguf_bytes_per_token(gguf, meta, context: int) -> float:
    """Bytes one llama.cpp decode step reads: every tensor but the token-embedding table (looked up by row; read
    whole only when it doubles as the output head), plus llama.cpp's default F16 K/V."""
    from gguf import GGUFReader

    tensors = {t.name: int(t.n_bytes) for t in GGUFReader(str(gguf)).tensors}
    total = sum(tensors.values())
    if "output.weight" in tensors:
        total -= tensors["token_embd.weight"]
    return total + meta.n_layers * 2 * meta.n_kv_heads * meta.head_dim * context * 2


def peak_rss_mb(which: str, model: str, threads: int) -> float:
    """Peak RSS (MB) of a fresh process that loads one engine and decodes 64 tokens, by /usr/bin/time -v.

    Measured from outside: Linux keeps ru_maxrss across exec, so a child of this (large) process cannot report its own.
    """
    code = (
        "import sys; sys.path.insert(0, %r); import bench.decode as b; b._rss_child(%r, %r, %d)"
        % (str(Path(__file__).resolve().parents[1]), which, model, threads)
    )
    proc = subprocess.run(["/usr/bin/time", "-f", "maxrss_kb=%M", sys.executable, "-c", code], capture_output=True, text=True, check=True)
    kb = [line for line in proc.stderr.splitlines() if line.startswith("maxrss_kb=")][-1]
    return int(kb.split("=")[1]) / 1024.0


def _rss_child(which: str, model: str, threads: int) -> None:
    bundle = load_bundle(models.resolve_model(model))
    ids = prompt_ids(bundle.tokenizer, 460)
    engine = Ours(bundle, threads) if which == "ours" else LlamaCpp(models.gguf_path(model), threads)
    engine.run(ids, 64)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=models.DEFAULT_MODEL)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--prompt-tokens", type=int, default=460)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--agreement-tokens", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    print(cpu_line(), flush=True)
    ceiling = read_bandwidth_gbs(args.threads)

    bundle = load_bundle(models.pull(args.model, progress=False))
    gguf = models.gguf_path(args.model)
    ids = prompt_ids(bundle.tokenizer, args.prompt_tokens)
    ours, ref, ref_lookup = Ours(bundle, args.threads), LlamaCpp(gguf, args.threads), LlamaCppLookup(gguf, args.threads)
    # repetitive code for speculation: a prompt that already contains the text it will continue with
    spec_ids = prompt_ids(bundle.tokenizer, args.prompt_tokens, offset=200)
    spec_ids = spec_ids + spec_ids[: args.prompt_tokens // 2]
    for engine in (ours, ref, ref_lookup):  # warm-up
        engine.run(ids[:64], 8)
    rows = {k: [] for k in ("ours", "llama", "ours_spec", "llama_spec")}
    for _ in range(args.runs):  # A B A B: both see the same machine state
        rows["ours"].append(ours.run(ids, args.new_tokens))
        rows["llama"].append(ref.run(ids, args.new_tokens))
        rows["ours_spec"].append(ours.run(spec_ids, args.new_tokens, speculate=True))
        rows["llama_spec"].append(ref_lookup.run(spec_ids, args.new_tokens))

    def rates(key, n_prompt):
        prompt = statistics.median(n_prompt / p for p, _, _ in rows[key])
        decode = statistics.median((len(t) - 1) / d for _, d, t in rows[key])
        return prompt, decode

    o_p, o_d = rates("ours", len(ids))
    l_p, l_d = rates("llama", len(ids))
    _, os_d = rates("ours_spec", len(spec_ids))
    _, ls_d = rates("llama_spec", len(spec_ids))
    same_plain = rows["ours"][0][2] == rows["llama"][0][2]

    # fidelity: top-1 agreement over code positions (one batched pass each, logits for every position)
    del ref, ref_lookup
    ref_all = LlamaCpp(gguf, args.threads, logits_all=True)
    agree_ids = prompt_ids(bundle.tokenizer, args.agreement_tokens, offset=1000)
    top_ours = np.argmax(ours.logits(agree_ids), -1)
    top_ref = np.argmax(ref_all.logits(agree_ids), -1)
    agreement = float(np.mean(top_ours == top_ref))
    del ref_all, ours
    rss_ours = peak_rss_mb("ours", args.model, args.threads)
    rss_ref = peak_rss_mb("llama", args.model, args.threads)

    bundle_mb = sum(f.stat().st_size for f in bundle.path.glob("model.onnx*")) / 1e6
    gguf_mb = gguf.stat().st_size / 1e6
    mid_context = len(ids) + args.new_tokens // 2
    ours_bpt = onnx_bytes_per_token(bundle, mid_context)
    llama_bpt = gguf_bytes_per_token(gguf, bundle.meta, mid_context)

    def traffic(rate, bpt):
        gbs = rate * bpt / 1e9
        return f"{bpt / 1e6:6.0f} MB/tok {gbs:5.1f} GB/s {gbs / ceiling:4.0%}"

    report = {
        "model": bundle.meta.source_file, "threads": args.threads, "prompt_tokens": len(ids), "new_tokens": args.new_tokens,
        "runs": args.runs, "greedy": True,
        "ours_prompt_tok_s": o_p, "llama_prompt_tok_s": l_p, "prompt_ratio": o_p / l_p,
        "ours_decode_tok_s": o_d, "llama_decode_tok_s": l_d, "decode_ratio": o_d / l_d,
        "ours_spec_decode_tok_s": os_d, "llama_lookup_decode_tok_s": ls_d, "spec_ratio": os_d / ls_d,
        "top1_agreement": agreement, "agreement_positions": len(agree_ids),
        "ours_peak_rss_mb": rss_ours, "llama_peak_rss_mb": rss_ref,
        "ours_bytes_per_token_mb": ours_bpt / 1e6, "llama_bytes_per_token_mb": llama_bpt / 1e6,
        "read_ceiling_gb_s": ceiling, "bundle_mb": bundle_mb, "gguf_mb": gguf_mb, "machine": cpu_line(),
        "same_greedy_tokens_as_llama": same_plain,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    print(f"{'':28s}{'ours':>12s}{'llama.cpp':>12s}{'ratio':>8s}")
    print(f"{'prompt tok/s':28s}{o_p:12.1f}{l_p:12.1f}{o_p / l_p:8.2f}")
    print(f"{'decode tok/s (no spec)':28s}{o_d:12.1f}{l_d:12.1f}{o_d / l_d:8.2f}")
    print(f"{'decode tok/s (prompt lookup)':28s}{os_d:12.1f}{ls_d:12.1f}{os_d / ls_d:8.2f}")
    print(f"{'peak RSS MB':28s}{rss_ours:12.0f}{rss_ref:12.0f}")
    print(f"{'on disk MB':28s}{bundle_mb:12.0f}{gguf_mb:12.0f}")
    print(f"read per decode step (no spec), against a measured read ceiling of {ceiling:.1f} GB/s ({args.threads} threads):")
    print(f"  ours      {traffic(o_d, ours_bpt)}")
    print(f"  llama.cpp {traffic(l_d, llama_bpt)}")
    print(f"top-1 agreement with llama.cpp over {len(agree_ids)} code positions: {agreement:.1%}")
    print(
        f"SUMMARY decode {o_d:.1f} vs {l_d:.1f} tok/s ({o_d / l_d:.2f}x), prompt {o_p:.0f} vs {l_p:.0f} tok/s ({o_p / l_p:.2f}x), "
        f"prompt lookup {os_d:.1f} vs {ls_d:.1f} tok/s ({os_d / ls_d:.2f}x), top-1 {agreement:.1%}, RSS {rss_ours:.0f}/{rss_ref:.0f} MB, "
        f"{bundle.meta.source_file}, {len(ids)}-token prompt, {args.new_tokens} greedy tokens, {args.threads} threads, median of {args.runs}; "
        f"{ours_bpt / 1e6:.0f} vs {llama_bpt / 1e6:.0f} MB/token, {o_d * ours_bpt / 1e9 / ceiling:.0%} vs "
        f"{l_d * llama_bpt / 1e9 / ceiling:.0%} of {ceiling:.1f} GB/s; {cpu_line()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
