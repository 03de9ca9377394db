"""Typing benchmark: type a real Python file into the language server character by character over stdio, as VS
Code does (didChange per key, inlineCompletion after a debounce, $/cancelRequest for the one still pending), and
report p50/p95 client-side latency of answered requests, prompt tokens reused, and cancellations. Beside it, the same
completion requests answered by llama.cpp's server (llama-cpp-python[server], prompt cache on) as the anchor; if its
server extras are missing, by llama_cpp.Llama in process with a RAM prompt cache (said so in the output).

    python bench/lsp_typing.py [--model smollm2-135m] [--file textwrap] [--chars 300] [--rounds 2] [--key-ms 90]

Same model file (the GGUF the bundle was converted from), greedy, single line (stop at newline), <= 64 new tokens,
2 threads each, rounds alternate ours / anchor. Prints one summary line. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import queue
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lsp_server.cli_serve import StdioClient, server_command  # noqa: E402
from lsp_server.positions import index_to_position  # noqa: E402

MAX_NEW_TOKENS = 64
PROMPT_CHARS = 4096  # anchor prompt: the text before the cursor, cut to ~1,024 tokens of code


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def source_text(module: str) -> str:
    return inspect.getsource(importlib.import_module(module))


def typing_session(model: str, text: str, start: int, chars: int, key_ms: float, debounce_ms: float) -> dict:
    """Open text[:start] + text[end:], then type text[start:end] one char at a time (end at a line end, so the
    cursor always has a newline after it, as when writing new code)."""
    end = text.find("\n", start + chars)
    end = len(text) if end == -1 else end
    chars = end - start
    client = StdioClient(server_command() + ["--log-level", "warning"])
    uri = "file:///bench/typing.py"
    try:
        client.request("initialize", {"processId": os.getpid(), "capabilities": {"textDocument": {"inlineCompletion": {}}},
                                      "initializationOptions": {"waferline": {"model": model, "maxNewTokens": MAX_NEW_TOKENS}}})
        client.notify("initialized", {})
        doc = text[:start] + text[end:]
        client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": doc}})
        while True:
            st, _ = client.request("waferline/status", None)
            if st["result"]["state"] != "loading":
                break
            time.sleep(0.1)
        if st["result"]["state"] != "ready":
            raise SystemExit(f"server not ready: {st['result']['message']}")
        # warm-up request (not counted)
        line, col = index_to_position(doc, start)
        client.request("textDocument/inlineCompletion", {"textDocument": {"uri": uri}, "position": {"line": line, "character": col}, "context": {"triggerKind": 1}})
        latencies: list[float] = []
        cancelled = 0
        prefixes: list[str] = []
        pending: list[tuple[int, float, queue.Queue, str]] = []
        cur = doc
        version = 1
        next_id = 10_000
        for k in range(chars):
            i = start + k
            ch = text[i]
            line, col = index_to_position(cur, i)
            version += 1
            cur = cur[:i] + ch + cur[i:]
            client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version}, "contentChanges": [
                {"range": {"start": {"line": line, "character": col}, "end": {"line": line, "character": col}}, "text": ch}]})
            time.sleep(debounce_ms / 1e3)
            for mid, _, _, _ in pending:  # VS Code cancels the suggestion request the new keystroke made stale
                client.notify("$/cancelRequest", {"id": mid})
            line, col = index_to_position(cur, i + 1)
            next_id += 1
            q: queue.Queue = queue.Queue()
            client._pending[next_id] = q
            client._send({"jsonrpc": "2.0", "id": next_id, "method": "textDocument/inlineCompletion", "params": {
                "textDocument": {"uri": uri}, "position": {"line": line, "character": col}, "context": {"triggerKind": 1}}})
            pending.append((next_id, time.perf_counter(), q, cur[: i + 1]))
            deadline = time.perf_counter() + max(key_ms - debounce_ms, 1) / 1e3
            still = []
            for mid, t0, pq, prefix in pending:
                try:
                    msg = pq.get(timeout=max(0.0, deadline - time.perf_counter()))
                except queue.Empty:
                    still.append((mid, t0, pq, prefix))
                    continue
                if "error" in msg:
                    cancelled += 1
                else:
                    latencies.append((time.perf_counter() - t0) * 1e3)
                    prefixes.append(prefix)
            pending = still
            time.sleep(max(0.0, deadline - time.perf_counter()))
        for mid, t0, pq, prefix in pending:
            msg = pq.get(timeout=60)
            if "error" in msg:
                cancelled += 1
            else:
                latencies.append((time.perf_counter() - t0) * 1e3)
                prefixes.append(prefix)
        metrics = []
        while True:
            try:
                n = client.notifications.get_nowait()
            except queue.Empty:
                break
            if n.get("method") == "waferline/metrics":
                metrics.append(n["params"])
        ran = [m for m in metrics if not m.get("cached")]
        reused = sum(m["reused_tokens"] for m in ran[1:])
        prompt = sum(m["prompt_tokens"] for m in ran[1:])
        return {"latencies": latencies, "cancelled": cancelled, "reuse": reused / prompt if prompt else float("nan"),
                "model_runs": len(ran), "cached": len(metrics) - len(ran), "prefixes": prefixes}
    finally:
        client.close()


class Anchor:
    """llama.cpp answering the same completion requests, prompt cache on."""

    def __init__(self, gguf: str, threads: int):
        self.kind = None
        self.proc = None
        try:
            importlib.import_module("llama_cpp.server.app")
            self._start_server(gguf, threads)
        except ImportError:
            from llama_cpp import Llama, LlamaRAMCache

            self.llm = Llama(model_path=gguf, n_ctx=2048, n_threads=threads, n_batch=512, verbose=False)
            self.llm.set_cache(LlamaRAMCache())
            self.kind = "llama_cpp.Llama in process + LlamaRAMCache (llama-cpp-python[server] extras missing)"

    def _start_server(self, gguf: str, threads: int) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--n_threads", str(threads),
                                      "--n_ctx", "2048", "--cache", "true", "--port", str(self.port), "--host", "127.0.0.1"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v1/models", timeout=1)
                break
            except Exception:  # noqa: BLE001
                time.sleep(0.1)
        self.kind = "llama.cpp server (llama-cpp-python[server], --cache true)"

    def complete(self, prompt: str) -> float:
        t0 = time.perf_counter()
        if self.proc is not None:
            body = json.dumps({"prompt": prompt, "max_tokens": MAX_NEW_TOKENS, "temperature": 0.0, "stop": ["\n"]}).encode()
            req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/completions", body, {"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=120).read()
        else:
            self.llm.create_completion(prompt, max_tokens=MAX_NEW_TOKENS, temperature=0.0, stop=["\n"])
        return (time.perf_counter() - t0) * 1e3

    def close(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--gguf", help="GGUF for the anchor (default: the one the bundle came from)")
    ap.add_argument("--file", default="textwrap", help="standard-library module to type")
    ap.add_argument("--start-line", type=int, default=120)
    ap.add_argument("--chars", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--key-ms", type=float, default=90.0, help="time between keystrokes")
    ap.add_argument("--debounce-ms", type=float, default=40.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-anchor", action="store_true")
    args = ap.parse_args()

    from runtime import models

    bundle = str(models.resolve_model(args.model))
    gguf = args.gguf or (str(models.gguf_path(args.model)) if not Path(args.model).exists() else None)
    text = source_text(args.file)
    start = sum(len(ln) for ln in text.splitlines(keepends=True)[: args.start_line])
    anchor = None if args.no_anchor or not gguf else Anchor(gguf, args.threads)
    ours_lat, anchor_lat, reuse, cancelled, runs, cached = [], [], [], 0, 0, 0
    try:
        for r in range(args.rounds):  # alternate ours / anchor
            s = typing_session(bundle, text, start, args.chars, args.key_ms, args.debounce_ms)
            ours_lat += s["latencies"]
            reuse.append(s["reuse"])
            cancelled += s["cancelled"]
            runs += s["model_runs"]
            cached += s["cached"]
            if anchor is not None:
                if r == 0:
                    anchor.complete(s["prefixes"][0][-PROMPT_CHARS:])  # warm-up
                for p in s["prefixes"]:
                    anchor_lat.append(anchor.complete(p[-PROMPT_CHARS:]))
    finally:
        if anchor is not None:
            anchor.close()
    p50, p95 = pct(ours_lat, 0.5), pct(ours_lat, 0.95)
    print(f"model {args.model} | typed {args.chars} chars of {args.file}.py x{args.rounds} | key {args.key_ms:.0f} ms, debounce {args.debounce_ms:.0f} ms | threads {args.threads}")
    print(f"ours: {len(ours_lat)} answered, {cancelled} cancelled, {runs} model runs, {cached} from cache, reuse {statistics.mean(reuse):.1%}")
    line = f"lsp_typing: ours p50 {p50:.0f} ms p95 {p95:.0f} ms, prompt reuse {statistics.mean(reuse):.0%}, cancelled {cancelled}"
    if anchor_lat:
        a50, a95 = pct(anchor_lat, 0.5), pct(anchor_lat, 0.95)
        print(f"anchor: {anchor.kind}")
        line += f" | llama.cpp p50 {a50:.0f} ms p95 {a95:.0f} ms | p50 speed-up {a50 / p50:.2f}x"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
