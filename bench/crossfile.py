"""Cross-file context: exact match and edit similarity of line completions without and with the other open tabs.

    python bench/crossfile.py [--model smollm2-135m] [--positions 200] [--budgets 0,256,512] [--seed 0] [--dump F]
                              [--rule api|use] [--anchor]

The set, in the manner of CrossCodeEval (Ding et al., 2023), built from pure-Python packages installed here:
- a file F of package P and a name n that F imports from another module M of P (`from .m import n`,
  `from P.m import n`, `as` aliases too), which M defines at top level (def, class or assignment);
- a line of F below that import which uses n (a NAME token: not in a string or comment, not `x.n`, not an import
  line), n's first use on the line; the rest of the line after the cursor is the target: it is removed from F, the
  lines after it stay (the suffix). Where the cursor sits (--rule):
  - api (default): only uses that read M's API -- n followed by `.attr` or by a call with arguments -- the first
    such use of that member (of a call of n) in F, and the cursor right after `n.` or `n(`: what follows is a member
    or the arguments of M's signature, which the file alone does not say. This is CrossCodeEval's selection (imports replaced by empty classes; the lines a checker then flags:
    missing members, wrong arguments);
  - use: every use, the cursor right before n (the name itself is in F's import line, so this measures mostly
    in-file choice: `x: Config`, `raise Error`);
- the open tabs: F, M and --distractors other modules of P (seeded), at workspace-relative paths `P/...`;
- positions are drawn round-robin over the packages (so a big package does not drown the others), shuffled with
  --seed, at most --per-file per file.
Every position is completed by runtime.complete.CompletionService (what the server runs: window, repo header,
back-off + token healing, FIM for FIM models, post-processing; greedy, line mode, <= 64 new tokens, maxPromptTokens
1024) once per budget, alternating: budget 0 is the file alone; any other is runtime.crossfile's snippets within
that many tokens (contextTokens), as the server sends them, on top of the file's window. Reported per budget: exact
match of the rest of the line, edit similarity, mean prompt tokens, time per position, and how often M's definition of
n was a snippet. --anchor: llama.cpp FIM on the same GGUF and the file alone (bench/quality.py's llama.vscode
request: no repo header of ours, no token healing), for the "ours vs llama.cpp" ratio on real package code where
the cursor never follows a space. Prints the CPU first and one summary line last; --dump writes one JSON line per position as it goes
(target, answers, prompt tokens, snippets), to read the answers behind the figures.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import io
import json
import random
import sys
import time
import tokenize
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.quality import MAX_NEW_TOKENS, edit_similarity  # noqa: E402

PACKAGES = ("pygls", "platformdirs", "tqdm", "hypothesis", "_pytest", "click", "jinja2", "starlette", "attr",
            "cattrs", "packaging", "anyio")
MAX_PROMPT_TOKENS = 1024  # the server's default maxPromptTokens


class Position(NamedTuple):
    package: str
    path: str  # F, workspace-relative
    prefix: str
    suffix: str
    target: str
    def_path: str  # M
    def_line: int  # first line of n's definition in M (1-based)
    tabs: dict[str, str]  # the other open tabs: path -> text (M and the distractors)


def package_files(package: str) -> dict[str, str]:
    """`P/...` path -> source of every .py file of an installed package."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None or not spec.origin.endswith("__init__.py"):
        return {}
    root = Path(spec.origin).parent
    return {p.relative_to(root.parent).as_posix(): p.read_text(encoding="utf-8", errors="replace")
            for p in sorted(root.rglob("*.py"))}


def _module(path: str) -> tuple[str, ...]:
    parts = path[: -len(".py")].split("/")
    return tuple(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_defs(tree: ast.Module) -> dict[str, int]:
    """Name -> first line of each top-level def, class or assignment (plain ast: independent of runtime.crossfile)."""
    out: dict[str, int] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.setdefault(node.name, min([d.lineno for d in node.decorator_list] + [node.lineno]))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(t, ast.Name):
                    out.setdefault(t.id, node.lineno)
    return out


def candidates(package: str, files: dict[str, str], rule: str = "use") -> list[tuple[str, int, int, str, int]]:
    """(F, line, column, M, definition line) of every use that the rules of the set admit (`rule`: see the module
    docstring)."""
    trees: dict[str, ast.Module] = {}
    for path, text in files.items():
        try:
            trees[path] = ast.parse(text)
        except (SyntaxError, ValueError):
            pass
    modules = {_module(p): p for p in trees}
    defs = {p: _top_level_defs(t) for p, t in trees.items()}
    out = []
    for path, tree in trees.items():
        imported: dict[str, tuple[str, int, int]] = {}  # local name -> (M, def line, line of the import's end)
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            mod = tuple((node.module or "").split(".")) if node.module else ()
            if node.level:
                here = _module(path) if path.endswith("/__init__.py") else _module(path)[:-1]
                mod = here[: len(here) - (node.level - 1)] + mod
            elif not mod or mod[0] != package:
                continue
            target = modules.get(mod)
            if target is None or target == path:
                continue
            for alias in node.names:
                if alias.name in defs[target]:
                    imported[alias.asname or alias.name] = (target, defs[target][alias.name], node.end_lineno or 0)
        if not imported:
            continue
        lines = files[path].splitlines()
        done: set[int] = set()
        seen: set[tuple[str, str]] = set()  # (n, member) and (n, "(") already used above in F
        try:
            toks = [t for t in tokenize.generate_tokens(io.StringIO(files[path]).readline)
                    if t.type not in (tokenize.NL, tokenize.COMMENT)]
        except (tokenize.TokenError, SyntaxError):
            continue
        for k, tok in enumerate(toks):
            row, col = tok.start
            if (tok.type != tokenize.NAME or tok.string not in imported or row in done
                    or row <= imported[tok.string][2] or (k and toks[k - 1].string == ".")
                    or lines[row - 1].lstrip().startswith(("import ", "from "))):
                continue
            if rule == "api":  # the cursor where the line starts to need M: after `n.` or after `n(` with arguments
                nxt, after = (toks[k + 1], toks[k + 2]) if k + 2 < len(toks) else (None, None)
                if nxt is None or nxt.start[0] != row or nxt.string not in (".", "(") or after.string == ")":
                    continue
                if nxt.string == "." and after.type != tokenize.NAME:
                    continue
                key = (tok.string, after.string if nxt.string == "." else "(")
                if key in seen:  # F already shows this member / a call of n: the file alone says it
                    continue
                seen.add(key)
                col = nxt.end[1]
            done.add(row)
            m, def_line, _ = imported[tok.string]
            out.append((path, row, col, m, def_line))
    return out


def positions(n: int, seed: int, packages: list[str], per_file: int, distractors: int,
              rule: str = "use") -> list[Position]:
    rng = random.Random(seed)
    pools = []
    for package in packages:
        files = package_files(package)
        cands = candidates(package, files, rule)
        rng.shuffle(cands)
        pools.append((package, files, cands))
    out: list[Position] = []
    used: dict[str, int] = {}
    while len(out) < n and any(c for _, _, c in pools):
        for package, files, cands in pools:
            while cands and len(out) < n:
                path, row, col, m, def_line = cands.pop()
                lines = files[path].splitlines(keepends=True)
                line = lines[row - 1].rstrip("\r\n")
                if used.get(path, 0) >= per_file or not line[col:].strip():  # a call whose arguments start below
                    continue
                used[path] = used.get(path, 0) + 1
                others = sorted(p for p in files if p not in (path, m))
                tabs = {m: files[m], **{p: files[p] for p in rng.sample(others, min(distractors, len(others)))}}
                out.append(Position(package, path, "".join(lines[: row - 1]) + line[:col],
                                    "\n" + "".join(lines[row:]), line[col:].rstrip(), m, def_line, tabs))
                break
    return out


STDLIB_TABS = ("collections", "typing", "pathlib", "ast", "inspect", "tokenize", "logging", "enum", "shutil",
               "tempfile", "subprocess", "random", "threading", "email.message", "http.client", "urllib.parse")


def neighbour_tabs(module: str, n: int) -> tuple[str, dict[str, str]]:
    """For the latency benchmarks (bench/lsp_typing.py, bench/cold.py --tabs): (workspace-relative path of `module`,
    up to `n` other files open beside it, path -> text). A module of a package here: the package's modules it imports
    first (in import order), then the others in path order; any other module: standard-library modules that
    bench/quality.py does not sample from, at `<name>.py`."""
    top = module.split(".")[0]
    files = package_files(top) if "." in module else {}
    spec = importlib.util.find_spec(module)
    origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
    me = next((p for p in files if origin is not None and origin.as_posix().endswith("/" + p)), None)
    if me is None:
        tabs = {}
        for name in STDLIB_TABS[:n]:
            tspec = importlib.util.find_spec(name)
            if tspec is not None and tspec.origin and tspec.origin.endswith(".py"):
                tabs[name.replace(".", "/") + ".py"] = Path(tspec.origin).read_text(encoding="utf-8", errors="replace")
        return module.replace(".", "/") + ".py", tabs
    used = [m for f, _, _, m, _ in sorted(candidates(top, files)) if f == me]  # by the line of their first use
    order = dict.fromkeys(used + sorted(p for p in files if p != me))
    return me, {p: files[p] for p in list(order)[:n]}


def context_options(context: str | None, tokens: int | None) -> dict:
    """The server settings of --context on|off and --context-tokens N (none given: the server's defaults)."""
    return {k: v for k, v in (("context", None if context is None else context == "on"), ("contextTokens", tokens))
            if v is not None}


def run(model: str, pos: list[Position], budgets: list[int], threads: int,
        dump: io.TextIOBase | None = None) -> dict[int, dict[str, float]]:
    from runtime.complete import CompletionRequest, CompletionService
    from runtime.crossfile import ContextCollector

    svc = CompletionService.load(model, threads=threads, kv_slots=len(budgets))
    stats = {b: {"exact": 0.0, "sim": 0.0, "prompt": 0.0, "hit": 0.0, "s": 0.0} for b in budgets}
    for k, p in enumerate(pos):
        tabs = ContextCollector()
        for path, text in p.tabs.items():
            tabs.update(path, path, text)
        tabs.update(p.path, p.path, p.prefix + p.suffix)
        tabs.refresh()
        runs: dict[int, dict] = {}
        for b in budgets:  # alternating: every budget at every position
            t0 = time.perf_counter()
            ctx = tabs.snippets(p.path, p.prefix, b, svc.count_tokens) if b else []
            req = CompletionRequest(prefix=p.prefix, suffix=p.suffix, doc_key=str(b), path=p.path,
                                    repo_name=p.package, mode="line", max_new_tokens=MAX_NEW_TOKENS,
                                    max_prompt_tokens=MAX_PROMPT_TOKENS, context=ctx)
            svc.cache.clear()  # the result cache does not key on the context
            res = svc.complete(req)
            s = stats[b]
            s["s"] += time.perf_counter() - t0
            s["exact"] += res.text.rstrip() == p.target
            s["sim"] += edit_similarity(res.text.rstrip(), p.target)
            s["prompt"] += res.prompt_tokens
            hit = any(c.path == p.def_path and c.kind == "definition" and c.start_line <= p.def_line <= c.end_line
                      for c in res.context)
            s["hit"] += hit
            if dump is not None:
                runs[b] = {"text": res.text.rstrip(), "exact": res.text.rstrip() == p.target,
                           "sim": round(edit_similarity(res.text.rstrip(), p.target), 4), "prompt": res.prompt_tokens,
                           "hit": hit, "snippets": [[c.path, c.start_line, c.end_line, c.kind] for c in res.context]}
        if dump is not None:
            dump.write(json.dumps({"i": k, "path": p.path, "def": [p.def_path, p.def_line], "target": p.target,
                                   "line": p.prefix[p.prefix.rfind("\n") + 1 :], "runs": runs}) + "\n")
            dump.flush()
    return {b: {k: v / max(len(pos), 1) for k, v in s.items()} for b, s in stats.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--positions", type=int, default=200)
    ap.add_argument("--budgets", default="0,256,512", help="contextTokens values; 0 = the file alone")
    ap.add_argument("--packages", default=",".join(PACKAGES))
    ap.add_argument("--per-file", type=int, default=2)
    ap.add_argument("--distractors", type=int, default=2, help="open tabs besides F and M")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rule", choices=["use", "api"], default="api",
                    help="use: before any use of n; api: after `n.` or `n(` with arguments (see the docstring)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--anchor", action="store_true",
                    help="also llama.cpp FIM on the same GGUF, file alone (bench/quality.py's llama.vscode request)")
    ap.add_argument("--dump", help="write each position's target, answers and snippets here (JSON lines)")
    args = ap.parse_args()

    from bench.machine import cpu_line

    print(cpu_line())
    packages = [p for p in args.packages.split(",") if importlib.util.find_spec(p) is not None]
    pos = positions(args.positions, args.seed, packages, args.per_file, args.distractors, args.rule)
    budgets = [int(b) for b in args.budgets.split(",")]
    print(f"{len(pos)} positions from {', '.join(sorted({p.package for p in pos}))}")
    with open(args.dump, "w", encoding="utf-8") if args.dump else contextlib.nullcontext() as f:
        stats = run(args.model, pos, budgets, args.threads, f)
    parts = []
    for b, s in stats.items():
        what = "file alone" if b == 0 else f"context {b} tok"
        hit = "" if b == 0 else f", definition in context {s['hit']:.0%}"
        print(f"  {what:>16}: exact {s['exact']:.1%} edit-sim {s['sim']:.3f} prompt {s['prompt']:.0f} tok "
              f"{s['s'] * 1e3:.0f} ms/position{hit}")
        parts.append(f"{what} exact {s['exact']:.1%} es {s['sim']:.3f} prompt {s['prompt']:.0f}")
    if args.anchor:
        from bench.quality import run_anchor, score
        from runtime import models
        from runtime.bundle import read_meta

        meta = read_meta(models.resolve_model(args.model))
        quads = [(p.package, p.prefix, p.suffix, p.target) for p in pos]
        outs, anc_s = run_anchor(str(models.gguf_path(args.model)), quads, args.threads, meta if meta.has_fim else None)
        e, es, _ = score(outs, quads)
        alone = stats.get(0, {}).get("exact", 0.0)
        kind = "FIM" if meta.has_fim else "plain"
        print(f"  llama.cpp {kind}, file alone: exact {e:.1%} edit-sim {es:.3f} ({anc_s / len(pos) * 1e3:.0f} ms/position)"
              + (f"; ours file alone / llama.cpp: {alone / e:.2f}x" if e and 0 in stats else ""))
        parts.append(f"llama.cpp {kind} file alone exact {e:.1%} es {es:.3f}")
    print(f"crossfile {args.model} ({len(pos)} positions, rule {args.rule}, seed {args.seed}, {args.distractors} distractor tabs, "
          f"greedy, line, maxPromptTokens {MAX_PROMPT_TOKENS}, {args.threads} threads): " + " | ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
