"""Line-completion quality: exact match of the rest of the line and edit similarity, on cursor positions taken from
Python standard-library files, for our completion service and for plain llama.cpp completion with the same model.

    python bench/quality.py [--model smollm2-135m] [--positions 300] [--seed 0] [--no-anchor] [--tabs 10]

Each position: the cursor sits at a random point of a non-blank line; the rest of that line is the target and is
removed from the document (as when typing at the end of a line), the following lines stay. Ours = the service the
server runs (runtime.complete: window, back-off + token healing, `<repo_name>`/`<file_sep>` header when the vocab
has them, FIM for FIM models, post-processing), greedy, line mode, <= 64 new tokens. Anchors = llama.cpp
(llama-cpp-python) on the GGUF the bundle came from, greedy, first line kept:
- plain: the last 1,024 prefix tokens;
- fim (FIM models): the prompt llama.cpp's /infill builds from llama.vscode's request -- `<|repo_name|>myproject\\n
  <|file_sep|>filename\\n<|fim_prefix|>` + the last 1,024 tokens of the lines above the cursor line +
  `<|fim_suffix|>` + the first 256 suffix tokens + `<|fim_middle|>` + the cursor line's text before the cursor
  (llama.vscode's `prompt` field, which the server puts after FIM_MID; "" when that text is only indentation, and
  then up to that many leading spaces are removed from the answer, as llama.vscode's completion.ts does).
--tabs N: N other files are open beside each (standard-library modules this set never samples from:
bench/crossfile.py's neighbour_tabs), and ours gets runtime.crossfile's snippets of them within --context-tokens, as
the server does with `context` on -- unrelated context must not cost the single-file set anything. Prints the CPU and
one summary line.
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
ANCHOR_SUFFIX_TOKENS = 256


def positions(n: int, seed: int, cursor: str = "any") -> list[tuple[str, str, str, str]]:
    """(module, prefix, suffix, target) with the target removed from the document. cursor="any": a random column
    (often inside a word, where the prompt ends mid-token); "word": only where a word starts (after a space or
    punctuation), the cursor of someone who has just typed a separator."""
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
        if cursor == "word":
            starts = [c for c in range(max(indent, 1), len(line) - 2)
                      if (line[c].isalnum() or line[c] == "_") and not (line[c - 1].isalnum() or line[c - 1] == "_")]
            if not starts:
                continue
            col = rng.choice(starts)
        target = line[col:].rstrip()
        if not target.strip():
            continue
        before = "".join(lines[:k]) + line[:col]
        after = "\n" + "".join(lines[k + 1 :])
        out.append((mod, before, after, target))
    return out


def edit_similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def run_ours(model: str, pos, threads: int, cold_prompt_tokens: int = 0, tabs: int = 0,
             context_tokens: int = 0) -> tuple[list[str], float]:
    from bench.crossfile import neighbour_tabs
    from runtime.complete import CompletionRequest, CompletionService
    from runtime.crossfile import ContextCollector

    svc = CompletionService.load(model, threads=threads)
    others = ContextCollector()
    for path, text in neighbour_tabs("textwrap", tabs)[1].items() if tabs else ():
        others.update(path, path, text)

    def context(mod: str, prefix: str, suffix: str) -> list:
        if not (tabs and context_tokens):
            return []
        path = mod.replace(".", "/") + ".py"
        others.update(path, path, prefix + suffix)
        others.refresh()
        got = others.snippets(path, prefix, context_tokens, svc.count_tokens)
        others.close(path)  # the next position may be another module: this one is no tab of it
        return got

    outs = []
    t0 = time.perf_counter()
    for i, (mod, prefix, suffix, _) in enumerate(pos):  # each position a file of its own: no state from the last
        req = CompletionRequest(prefix=prefix, suffix=suffix, doc_key=f"{mod}#{i}", path=mod.replace(".", "/") + ".py",
                                repo_name="cpython", mode="line", max_new_tokens=MAX_NEW_TOKENS, max_prompt_tokens=1024,
                                cold_prompt_tokens=cold_prompt_tokens, context=context(mod, prefix, suffix))
        outs.append(svc.complete(req).text)
    return outs, time.perf_counter() - t0


def anchor_fim_ids(llm, meta, prefix: str, suffix: str) -> list[int]:
    """llama.cpp server's format_infill on llama.vscode's request (see the module docstring)."""
    def tok(text: str) -> list[int]:
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) if text else []

    cut = prefix.rfind("\n") + 1
    line = prefix[cut:]
    prompt = "" if line.strip(" \t") == "" else line  # llama.vscode sends an indentation-only line as "" (see below)
    head = [meta.repo_name_id] + tok("myproject\n") + [meta.file_sep_id] + tok("filename\n")
    return (head + [meta.fim_prefix_id] + tok(prefix[:cut])[-ANCHOR_PROMPT_TOKENS:] + [meta.fim_suffix_id]
            + tok(suffix)[:ANCHOR_SUFFIX_TOKENS] + [meta.fim_middle_id] + tok(prompt))


def anchor_fim_text(prefix: str, text: str) -> str:
    """llama.vscode's reading of the answer: first line; when the cursor line held only indentation it sent `prompt`
    "" and removes up to that many leading spaces/tabs from the answer (completion.ts removeLeadingSpaces)."""
    line = prefix[prefix.rfind("\n") + 1 :]
    first = text.split("\n")[0]
    if line.strip(" \t") == "":
        n = len(first) - len(first.lstrip(" \t"))
        first = first[min(n, len(line)) :]
    return first


def run_anchor(gguf: str, pos, threads: int, meta=None) -> tuple[list[str], float]:
    """meta given (a FIM model's bundle meta): the FIM anchor; else plain prefix completion."""
    from llama_cpp import Llama

    llm = Llama(model_path=gguf, n_ctx=4096, n_threads=threads, n_batch=512, verbose=False)
    outs = []
    t0 = time.perf_counter()
    for _, prefix, suffix, _ in pos:
        if meta is not None:
            ids = anchor_fim_ids(llm, meta, prefix, suffix)
        else:
            ids = llm.tokenize(prefix.encode("utf-8"), add_bos=False, special=False)[-ANCHOR_PROMPT_TOKENS:]
        r = llm.create_completion(ids, max_tokens=MAX_NEW_TOKENS, temperature=0.0, stop=["\n"])
        text = r["choices"][0]["text"]
        outs.append(anchor_fim_text(prefix, text) if meta is not None else text.split("\n")[0])
    return outs, time.perf_counter() - t0


def score(outs: list[str], pos) -> tuple[float, float, float]:
    """(exact as shown, edit similarity, exact up to surrounding whitespace). The third forgives an answer that
    repeats the space already typed before the cursor (llama.cpp's FIM without token healing does: prompt ending
    "unlike " -> " fnmatch"), so a win is not just whitespace."""
    exact = sum(o.rstrip() == t for o, (_, _, _, t) in zip(outs, pos)) / len(pos)
    sim = sum(edit_similarity(o.rstrip(), t) for o, (_, _, _, t) in zip(outs, pos)) / len(pos)
    loose = sum(o.strip() == t.strip() for o, (_, _, _, t) in zip(outs, pos)) / len(pos)
    return exact, sim, loose


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--gguf", help="GGUF for the anchor (default: the one the bundle came from)")
    ap.add_argument("--positions", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cursor", choices=["any", "word"], default="any", help="any column, or only where a word starts")
    ap.add_argument("--cold-prompt-tokens", type=int, default=0,
                    help="as the server's coldPromptTokens: > 0 measures the short window a file just opened gets first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tabs", type=int, default=0, help="other files open beside each position's (ours only)")
    ap.add_argument("--context-tokens", type=int, default=512, help="their context budget, as the server's contextTokens")
    ap.add_argument("--anchor-threads", type=int, help="llama.cpp's threads (default --threads); 1 on a busy machine, "
                    "where its spinning thread pool collapses: greedy answers do not depend on it")
    ap.add_argument("--anchor", choices=["auto", "plain", "fim", "none"], default="auto",
                    help="auto: fim for FIM models, else plain")
    args = ap.parse_args()

    from bench.machine import cpu_line
    from runtime import models
    from runtime.bundle import read_meta

    print(cpu_line())
    pos = positions(args.positions, args.seed, args.cursor)
    ours, ours_s = run_ours(args.model, pos, args.threads, args.cold_prompt_tokens, args.tabs, args.context_tokens)
    e, s, el = score(ours, pos)
    tabs = f", {args.tabs} other tabs, context {args.context_tokens} tok" if args.tabs else ""
    line = (f"quality {args.model} ({len(pos)} stdlib positions, cursor {args.cursor}, seed {args.seed}, greedy, line{tabs}): "
            f"ours{f' (cold window {args.cold_prompt_tokens})' if args.cold_prompt_tokens else ''} exact {e:.1%} (up to whitespace {el:.1%}) edit-sim {s:.3f} ({ours_s:.0f} s)")
    print(line, flush=True)  # ours first: the anchor may take long
    meta = read_meta(models.resolve_model(args.model))
    kind = ("fim" if meta.has_fim else "plain") if args.anchor == "auto" else args.anchor
    if kind != "none":
        gguf = args.gguf or str(models.gguf_path(args.model))
        anc, anc_s = run_anchor(gguf, pos, args.anchor_threads or args.threads, meta if kind == "fim" else None)
        ae, as_, ael = score(anc, pos)
        ratio = e / ae if ae else float("inf")
        loose = el / ael if ael else float("inf")
        line += (f" | llama.cpp {kind} exact {ae:.1%} (up to whitespace {ael:.1%}) edit-sim {as_:.3f} ({anc_s:.0f} s)"
                 f" | exact ratio {ratio:.2f}x (up to whitespace {loose:.2f}x)")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
