"""Line-completion quality: exact match of the rest of the line and edit similarity, on cursor positions taken from
Python standard-library files, for our completion service and for plain llama.cpp completion with the same model.

    python bench/quality.py [--model smollm2-135m] [--positions 300] [--seed 0] [--no-anchor]

Each position: the cursor sits at a random point of a non-blank line; the rest of that line is the target and is
removed from the document (as when typing at the end of a line), the following lines stay. Ours = the service the
server runs (runtime.completion: window, back-off + token healing, `<repo_name>`/`<file_sep>` header when the vocab
has them, post-processing), greedy, line mode, <= 64 new tokens. Anchor = llama.cpp (llama-cpp-python) on the GGUF
the bundle came from: the last 1,024 prefix tokens, greedy, stop at newline. Prints one summary line.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODULES = ["textwrap", "json.decoder", "json.encoder", "csv", "shlex", "fractions", "calendar", "heapq", "bisect",
           "string", "difflib", "configparser", "argparse", "dataclasses", "functools", "pprint", "statistics", "glob"]
MAX_NEW_TOKENS = 64
ANCHOR_PROMPT_TOKENS = 1024


def positions(n: int, seed: int) -> list[tuple[str, str, str, str]]:
    """(module, prefix, suffix, target) with the target removed from the document."""
    rng = random.Random(seed)
    out = []
    texts = {m: inspect.getsource(importlib.import_module(m)) for m in MODULES}
    while len(out) < n:
        mod = rng.choice(MODULES)
        text = texts[mod]
        lines = text.splitlines(keepends=True)
        k = rng.randrange(10, len(lines))
        line = lines[k].rstrip("\n")
        body = line.strip()
        if len(body) < 8 or body.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        col = rng.randrange(indent, len(line) - 2)
        target = line[col:].rstrip()
        if not target.strip():
            continue
        before = "".join(lines[:k]) + line[:col]
        after = "\n" + "".join(lines[k + 1 :])
        out.append((mod, before, after, target))
    return out


def edit_similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def run_ours(model: str, pos, threads: int) -> tuple[list[str], float]:
    from runtime.completion import CompletionRequest, CompletionService

    svc = CompletionService.load(model, threads=threads)
    outs = []
    t0 = time.perf_counter()
    for mod, prefix, suffix, _ in pos:
        req = CompletionRequest(prefix=prefix, suffix=suffix, doc_key=mod, path=mod.replace(".", "/") + ".py",
                                repo_name="cpython", mode="line", max_new_tokens=MAX_NEW_TOKENS, max_prompt_tokens=1024)
        outs.append(svc.complete(req).text)
    return outs, time.perf_counter() - t0


def run_anchor(gguf: str, pos, threads: int) -> tuple[list[str], float]:
    from llama_cpp import Llama

    llm = Llama(model_path=gguf, n_ctx=2048, n_threads=threads, n_batch=512, verbose=False)
    outs = []
    t0 = time.perf_counter()
    for _, prefix, _, _ in pos:
        ids = llm.tokenize(prefix.encode("utf-8"), add_bos=False, special=False)[-ANCHOR_PROMPT_TOKENS:]
        r = llm.create_completion(ids, max_tokens=MAX_NEW_TOKENS, temperature=0.0, stop=["\n"])
        outs.append(r["choices"][0]["text"])
    return outs, time.perf_counter() - t0


def score(outs: list[str], pos) -> tuple[float, float]:
    exact = sum(o.rstrip() == t for o, (_, _, _, t) in zip(outs, pos)) / len(pos)
    sim = sum(edit_similarity(o.rstrip(), t) for o, (_, _, _, t) in zip(outs, pos)) / len(pos)
    return exact, sim


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--gguf", help="GGUF for the anchor (default: the one the bundle came from)")
    ap.add_argument("--positions", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-anchor", action="store_true")
    args = ap.parse_args()

    from runtime import models

    pos = positions(args.positions, args.seed)
    ours, ours_s = run_ours(args.model, pos, args.threads)
    e, s = score(ours, pos)
    line = f"quality ({len(pos)} stdlib positions, greedy, line): ours exact {e:.1%} edit-sim {s:.3f} ({ours_s:.0f} s)"
    if not args.no_anchor:
        gguf = args.gguf or str(models.gguf_path(args.model))
        anc, anc_s = run_anchor(gguf, pos, args.threads)
        ae, as_ = score(anc, pos)
        ratio = e / ae if ae else float("inf")
        line += f" | llama.cpp plain exact {ae:.1%} edit-sim {as_:.3f} ({anc_s:.0f} s) | exact ratio {ratio:.2f}x"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
