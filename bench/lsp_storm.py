"""Typing storm: type standard-library code into the server over stdio with no debounce for a fixed time (a didChange
and an inlineCompletion per key, the previous request cancelled), and sample the server's resident memory.

    python bench/lsp_storm.py [--model smollm2-135m] [--seconds 300] [--key-ms 30]

Prints the RSS after warm-up, its maximum and its last value, and the slope of a least-squares line through the
samples (MB per minute): flat means no leak under a typing storm. Not a test: nothing here asserts a number.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # the server too

from bench.machine import cpu_line  # noqa: E402

from lsp_server.cli_serve import StdioClient, server_command  # noqa: E402
from lsp_server.positions import index_to_position  # noqa: E402


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--key-ms", type=float, default=30.0)
    ap.add_argument("--sample-s", type=float, default=5.0)
    args = ap.parse_args()
    print(cpu_line(), flush=True)

    source = inspect.getsource(textwrap)
    client = StdioClient(server_command() + ["--log-level", "warning"])
    uri = "file:///bench/storm.py"
    try:
        client.request("initialize", {"processId": os.getpid(), "capabilities": {"textDocument": {"inlineCompletion": {}}},
                                      "initializationOptions": {"waferline": {"model": args.model, "logLevel": "warning"}}})
        client.notify("initialized", {})
        doc, version = "", 1
        client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": version, "text": doc}})
        while (st := client.request("waferline/status", None)[0]["result"])["state"] == "loading":
            time.sleep(0.1)
        if st["state"] != "ready":
            raise SystemExit(f"server not ready: {st['message']}")
        pid = client.proc.pid
        samples: list[tuple[float, float]] = []
        sent = []  # every request, to account for each answer at the end
        t_start = time.perf_counter()
        next_sample = t_start
        k = 0
        while (now := time.perf_counter()) - t_start < args.seconds:
            ch = source[k % len(source)]
            k += 1
            if len(doc) > 20_000:  # a long session: start a fresh document so the prompt window keeps moving
                version += 1
                doc = ""
                client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": ""}]})
            line, col = index_to_position(doc, len(doc))
            version += 1
            client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version}, "contentChanges": [
                {"range": {"start": {"line": line, "character": col}, "end": {"line": line, "character": col}}, "text": ch}]})
            doc += ch
            if sent and not sent[-1].done():
                client.cancel(sent[-1])
            line, col = index_to_position(doc, len(doc))
            sent.append(client.send_request("textDocument/inlineCompletion", {
                "textDocument": {"uri": uri}, "position": {"line": line, "character": col}, "context": {"triggerKind": 1}}))
            if now >= next_sample:
                samples.append((now - t_start, rss_mb(pid)))
                next_sample += args.sample_s
            time.sleep(args.key_ms / 1e3)
        st = client.request("waferline/status", None)[0]["result"]
        samples.append((time.perf_counter() - t_start, rss_mb(pid)))
        answers = [p.wait(120) for p in sent]  # every request is answered (a result or RequestCancelled)
    finally:
        client.close()
    cancelled = sum(p.cancelled for p in sent)
    errors = sum("error" in a for a in answers)
    shown = sum(bool((a.get("result") or {}).get("items")) for a in answers)
    t, r = np.array(samples).T
    warm = r[min(2, len(r) - 1)]
    slope = float(np.polyfit(t[2:] / 60.0, r[2:], 1)[0]) if len(r) > 4 else float("nan")
    print(
        f"lsp_storm: {args.seconds:.0f} s, {len(sent)} keystrokes+requests ({args.key_ms:.0f} ms apart), server RSS after warm-up "
        f"{warm:.0f} MB, max {r.max():.0f} MB, end {r[-1]:.0f} MB, slope {slope:+.2f} MB/min over {len(r)} samples; "
        f"server state {st['state']}, {st.get('completions', '?')} completions"
    )
    print(f"requests: {len(sent)} sent, all answered: {shown} with a suggestion, {len(sent) - shown - errors} empty, "
          f"{errors} errors (RequestCancelled); {cancelled} cancelled by the next key")
    print("samples (s, MB): " + ", ".join(f"{a:.0f}:{b:.0f}" for a, b in samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
