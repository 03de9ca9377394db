"""Cold-file latency: the first suggestion in a file the editor has just opened, through the language server over
stdio, as VS Code asks it (didOpen, then textDocument/inlineCompletion at the cursor), timed from the client's side.

    python bench/cold.py [--model qwen2.5-coder-0.5b] [--files 12] [--waits 0,2] [--seed 0] [--tabs 10]
                         [--context on|off] [--context-tokens N]

Each sample opens a new document (a new URI, so no cache of ours holds it): the text of a standard-library module
with the rest of one line removed at a random cursor (bench/quality.py's positions), sends the codeAction request
VS Code sends where the cursor lands (--no-cursor: none), waits W seconds (0 = the request follows at once; 2 = the
file has been open 2 s, time the server may use for background prefill), then asks for the line completion. Every request counts, however slow; none is cancelled. --tabs N keeps N other
files open all along (standard-library modules the samples never come from: bench/crossfile.py's neighbour_tabs),
the server's cross-file context on or off as --context says (its default if not given). Prints the CPU, then one
line per wait: p50/p95/max latency, and exact match of the suggestions. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # the server too

from bench.crossfile import context_options, neighbour_tabs  # noqa: E402
from bench.machine import cpu_line  # noqa: E402
from bench.quality import positions  # noqa: E402
from lsp_server.cli_serve import StdioClient, server_command, wait_ready  # noqa: E402
from lsp_server.positions import index_to_position  # noqa: E402


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, 100 * q))


def run(model: str, n: int, waits: list[float], seed: int, cursor_first: bool, verbose: bool = False,
        tabs: int = 0, options: dict | None = None) -> list[str]:
    client = StdioClient(server_command() + ["--log-level", "warning"], stderr=subprocess.DEVNULL)
    lines = []
    try:
        client.request("initialize", {"processId": os.getpid(), "capabilities": {"textDocument": {"inlineCompletion": {}}},
                                      "initializationOptions": {"waferline": {"model": model, **(options or {})}}})
        client.notify("initialized", {})
        wait_ready(client, 600)
        for path, text in neighbour_tabs("textwrap", tabs)[1].items() if tabs else ():
            client.notify("textDocument/didOpen", {"textDocument": {"uri": f"file:///bench/tabs/{path}",
                                                                    "languageId": "python", "version": 1, "text": text}})
        pos = positions(n * len(waits), seed)
        for k, wait_s in enumerate(waits):
            times, exact = [], 0
            for i, (mod, prefix, suffix, target) in enumerate(pos[k * n : (k + 1) * n]):
                uri = f"file:///bench/cold/{k}-{i}/{mod.replace('.', '/')}.py"
                text = prefix + suffix
                client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                                                        "text": text}})
                line, char = index_to_position(text, len(prefix))
                if cursor_first:  # as VS Code does when the cursor lands: it asks for code actions there
                    client.request("textDocument/codeAction", {
                        "textDocument": {"uri": uri}, "range": {"start": {"line": line, "character": char},
                                                                "end": {"line": line, "character": char}},
                        "context": {"diagnostics": [], "triggerKind": 2}}, timeout=600)
                time.sleep(wait_s)
                mark = client.seen()
                msg, ms = client.request("textDocument/inlineCompletion", {
                    "textDocument": {"uri": uri}, "position": {"line": line, "character": char},
                    "context": {"triggerKind": 2}}, timeout=600)
                items = (msg.get("result") or {}).get("items", []) if isinstance(msg.get("result"), dict) else (msg.get("result") or [])
                got = items[0]["insertText"] if items else ""
                got = got if isinstance(got, str) else got.get("value", "")
                exact += got.rstrip() == target
                times.append(ms)
                if verbose:
                    metrics = client.notifications_of("waferline/metrics", since=mark)
                    print(f"  {ms:7.0f} ms  {mod:14s} {metrics[-1] if metrics else 'no metrics'}", flush=True)
                client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
            how = "cursor placed (codeAction)" if cursor_first else ""
            if tabs:
                how += (", " if how else "") + f"{tabs} other tabs open" + "".join(
                    f", {k} {v}" for k, v in (options or {}).items())
            how += ", " if how else ""
            lines.append(f"cold {model}: open, {how}{wait_s:g} s before the request, {len(times)} files: p50 {pct(times, .5):.0f} ms "
                         f"p95 {pct(times, .95):.0f} ms max {max(times):.0f} ms mean {statistics.fmean(times):.0f} ms, "
                         f"exact {exact}/{len(times)}")
            print(lines[-1], flush=True)
    finally:
        client.close()
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--files", type=int, default=12)
    ap.add_argument("--waits", default="0,2", help="seconds between didOpen and the request, comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", action="store_true", help="one line per request with the server's metrics")
    ap.add_argument("--no-cursor", action="store_true",
                    help="skip the codeAction request VS Code sends where the cursor lands (the server learns no cursor)")
    ap.add_argument("--tabs", type=int, default=0, help="other files kept open all along")
    ap.add_argument("--context", choices=["on", "off"], help="the server's cross-file context (default: its default)")
    ap.add_argument("--context-tokens", type=int, help="the server's contextTokens (default: its default)")
    ap.add_argument("--cold-prompt-tokens", type=int, help="the server's coldPromptTokens (0: always the full window)")
    args = ap.parse_args()
    options = context_options(args.context, args.context_tokens)
    if args.cold_prompt_tokens is not None:
        options["coldPromptTokens"] = args.cold_prompt_tokens
    print(cpu_line())
    run(args.model, args.files, [float(w) for w in args.waits.split(",")], args.seed, not args.no_cursor, args.verbose,
        args.tabs, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
