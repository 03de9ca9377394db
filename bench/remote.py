"""Remote backends measured: line completions and a typing replay through our language server, against our local
decoder and against a real llama.cpp server, with that server driven directly as the anchor.

    python bench/remote.py [--model qwen2.5-coder-0.5b] [--parts positions,typing] [--positions 30] [--cursor word]
                           [--max-prompt-tokens 512] [--suffix] [--file textwrap --start-line 251 --chars 400]
                           [--rounds 1] [--threads 2] [--server-log server.log] [--json out.json]

The server: llama-cpp-python's `python -m llama_cpp.server` (tests/llama_server.RealServer) on the GGUF the bundle
was converted from, --n_threads/--n_threads_batch = --threads, on 127.0.0.1. llama.cpp's own `llama-server` is not
available here, and llama-cpp-python's server has no `/infill`; its `/v1/completions` takes `suffix` but puts token
id 0 where the FIM tokens belong (runtime/remote/backend.py), so the FIM dialect it really supports is `openai-raw`:
`/v1/completions` with the raw prompt our template writes (`--suffix` measures the `suffix` dialect's exact match too,
sent straight to the server, to show what it does). Every client reaches the server through a counting TCP proxy
of its own (one Python thread per direction, the same for every client): bytes sent per request and per keystroke,
when each connection opened and closed, and whether the server had finished it ([DONE]) when the client closed it.

Engines, all through our language server over stdio (bench/lsp_typing.LspEditor: VS Code's traffic):
  local   backend local: the ONNX decoder in the server process (the llama.cpp server idles meanwhile);
  remote  backend openai-raw at the proxy in front of the llama.cpp server.
Anchors, the same server, in the same script, alternating with `remote`:
  direct        every request our server sent, replayed from the bytes it sent, one at a time, straight to the
                server (through its own proxy): the server's own time to answer the same request. The requests our
                server cancelled or closed early are replayed untimed with max_tokens 1, so the server's prompt
                cache holds what it held for ours when each timed request comes; a timed one is read until its text
                has a newline, as our server reads it in line mode, then closed.
  llama.vscode  bench/lsp_typing's llama.vscode discipline on the same keys (one request at a time, its LRU of
                suggestions, stale requests left to run to their end), its FIM layout as text to /v1/completions
                (llama-cpp-python has no /infill), non-streamed, stop at a newline; the server keeps the longest
                common prompt prefix of its one KV sequence (cache_prompt).

Parts:
  positions  bench/quality.py's held-out-style positions (stdlib files, the rest of the line removed), one document
             each: remote, then the direct replay of remote's request, alternating; then local in a pass of its own
             (see run_positions). Before each remote and direct request a one-token request with an unrelated
             prompt empties the server's prompt cache, so both are cold and do the same work. Exact match of the
             rest of the line (quality.score).
  typing     bench/lsp_typing's key schedule (its pause requests timed to their answer; none dropped, storm
             requests counted apart) per round: local, remote, direct, llama.vscode. Each session first asks once
             where the cursor lands and waits (not counted; printed as the cold figure), so the typing figures are
             warm ones; before remote's replay and before llama.vscode the server's prompt cache is emptied.

Prompt cache hit rate = the server's own `Llama.generate: N prefix-match hit` tokens over all prompt tokens sent
(each request's prompt tokenized with the GGUF's vocabulary) in that session's stretch of the server log (a request
whose whole prompt was cached is counted as no hit: a lower bound). Stale requests: every connection a client
closed before the server's [DONE] must be matched by the server's own `disconnected` line (its generation loop
stopped); the run-on is the time from the close to that line, as a log follower stamps it (5 ms polls). Prints the
machine line first and one SUMMARY line last. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.lsp_typing import (  # noqa: E402  (it also puts ROOT on the server's PYTHONPATH)
    ANSWER_TIMEOUT_S,
    HttpLlama,
    LlamaVscodeEditor,
    LspEditor,
    Rhythm,
    Run,
    TypingDoc,
    keystrokes,
    session,
    source_text,
    summary,
    typing_span,
)
from bench.machine import cpu_line  # noqa: E402
from bench.quality import MAX_NEW_TOKENS, positions, score  # noqa: E402
from runtime.complete.remote import split_heal  # noqa: E402
from lsp_server.positions import index_to_position  # noqa: E402
from tests.llama_server import RealServer, free_port  # noqa: E402

FIM_TEMPLATE = "qwen2.5-coder"
LOG_POLL_S = 0.005
SETTLE_S = 1.0  # after a session: late `disconnected` lines still belong to it
PREFIX_HIT = re.compile(r"Llama\.generate: (\d+) prefix-match hit, remaining (\d+) prompt tokens")
GONE = re.compile(r"Disconnected from client .*port=(\d+)")  # the server's own line, naming the client's port


# ------------------------------------------------------------------------------------------------ the wire


@dataclass
class Conn:
    tag: str
    opened: float
    up: bytearray = field(default_factory=bytearray)  # the request as sent
    down_bytes: int = 0
    down_tail: bytes = b""
    client_closed: float | None = None
    server_closed: float | None = None
    server_port: int = 0  # our end of the connection to the server: the port its log names

    @property
    def request_line(self) -> str:
        return self.up.split(b"\r\n", 1)[0].decode("latin-1")

    @property
    def is_completion(self) -> bool:
        """A whole completion request (a client cancelled between headers and body sends no body: not one)."""
        head, _, body = bytes(self.up).partition(b"\r\n\r\n")
        size = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        return (self.request_line.startswith("POST ") and "/completions" in self.request_line
                and size is not None and len(body) >= int(size.group(1)) > 0)

    @property
    def body(self) -> dict:
        return json.loads(bytes(self.up).split(b"\r\n\r\n", 1)[1])

    @property
    def finished(self) -> bool:
        """The server had sent its end of the stream ([DONE]) or a whole JSON answer."""
        return b"[DONE]" in self.down_tail or (self.server_closed is not None and (self.client_closed is None or
                                                                                   self.server_closed <= self.client_closed))

    @property
    def closed_early(self) -> bool:
        return self.client_closed is not None and not self.finished


class Proxy:
    """127.0.0.1 TCP proxy to the server for one client (`tag`); every connection recorded in `conns`."""

    def __init__(self, tag: str, upstream: int, conns: list[Conn], lock: threading.Lock):
        self.tag, self.upstream, self.conns, self.lock = tag, upstream, conns, lock
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            conn = Conn(self.tag, time.perf_counter())
            server = socket.create_connection(("127.0.0.1", self.upstream))
            conn.server_port = server.getsockname()[1]
            with self.lock:
                self.conns.append(conn)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump, args=(client, server, conn, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, conn, False), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, conn: Conn, upward: bool) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            if upward:
                conn.up += data
            else:
                conn.down_bytes += len(data)
                conn.down_tail = (conn.down_tail + data)[-64:]
            try:
                dst.sendall(data)
            except OSError:
                break
        now = time.perf_counter()
        if upward:
            conn.client_closed = conn.client_closed or now
        else:
            conn.server_closed = conn.server_closed or now
        for s in (src, dst):  # one side gone: the other is closed too, as a direct connection would be
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.sock.close()


class LogFollower:
    """The server's log, line by line, each stamped when it appeared (perf_counter)."""

    def __init__(self, path: Path):
        self.path, self.lines, self._stop = path, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pos, partial = 0, b""
        while not self._stop.is_set():
            with open(self.path, "rb") as fh:
                fh.seek(pos)
                data = fh.read()
            pos += len(data)
            now = time.perf_counter()
            *done, partial = (partial + data).split(b"\n")
            self.lines.extend((now, ln.decode("utf-8", "replace")) for ln in done)
            time.sleep(LOG_POLL_S)

    def between(self, t0: float, t1: float) -> list[tuple[float, str]]:
        return [(t, ln) for t, ln in list(self.lines) if t0 <= t < t1]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# ------------------------------------------------------------------------------------------------ clients


def post(port: int, body: dict, *, until_newline: bool) -> tuple[float, str]:
    """POST /v1/completions to `port`; (ms until the answer is whole, text). until_newline: read the stream until
    its text has a newline (as our server does in line mode) or it ends, then close."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=ANSWER_TIMEOUT_S)
    payload = json.dumps(body).encode()
    t0 = time.perf_counter()
    try:
        conn.request("POST", "/v1/completions", payload, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if not body.get("stream"):
            answer = json.loads(resp.read())
            return (time.perf_counter() - t0) * 1e3, answer["choices"][0]["text"]
        text, buf = "", b""
        while True:
            chunk = resp.read1(65536)
            if not chunk:
                break
            buf += chunk
            *events, buf = buf.split(b"\n")
            for ev in events:
                data = ev.strip()[5:].strip() if ev.startswith(b"data:") else b""
                if not data or data == b"[DONE]":
                    continue
                text += "".join(c.get("text") or "" for c in json.loads(data).get("choices") or [])
            if (until_newline and "\n" in text) or b"[DONE]" in chunk:
                break
        return (time.perf_counter() - t0) * 1e3, text
    finally:
        conn.close()


def flush(port: int) -> None:
    """One token for an unrelated prompt: the server's one KV sequence then shares nothing with the next prompt."""
    post(port, {"prompt": "\n\n", "max_tokens": 1, "temperature": 0.0}, until_newline=False)


class SharedHttpLlama(HttpLlama):
    """lsp_typing's llama.vscode backend (text prompt, /v1/completions, stop at a newline) on our running server."""

    def __init__(self, vocab, port: int):  # noqa: super().__init__ would start a server of its own
        self.vocab, self.port = vocab, port
        self.kind = "llama-cpp-python server (shared), common-prefix KV reuse"
        self.sent = self.retokenized_differently = 0

    def close(self) -> None:
        pass


class RecordingEditor(LspEditor):
    """LspEditor that keeps each request's Pending (absolute send/answer stamps, to find the server request), and
    warms up: where the cursor lands, after the code action VS Code sends, one completion request is made and
    waited for (not counted; its time is the cold figure) -- the typing figures are warm ones."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.handles, self.cold_ms = [], float("nan")

    def place_cursor(self) -> None:
        super().place_cursor()
        line, char = index_to_position(self.doc.text, self.doc.cursor)
        p = self.client.send_request("textDocument/inlineCompletion", {
            "textDocument": {"uri": self.uri}, "position": {"line": line, "character": char}, "context": {"triggerKind": 1}})
        p.wait(ANSWER_TIMEOUT_S)
        self.cold_ms = p.ms

    def ask(self):
        h = super().ask()
        self.handles.append(h.p)
        return h


class WarmVscodeEditor(LlamaVscodeEditor):
    """llama.vscode with the same warm-up: one request for the cursor before the first key (not put in its LRU)."""

    cold_ms = float("nan")

    def place_cursor(self) -> None:
        t0 = time.perf_counter()
        self.backend.complete(self.prompt_ids(self.doc.text[: self.doc.cursor], self.doc.text[self.doc.cursor :]))
        self.cold_ms = (time.perf_counter() - t0) * 1e3


def remote_options(url: str, timeout_ms: int) -> dict:
    return {"backend": "openai-raw", "endpoint": url, "fimTemplate": FIM_TEMPLATE, "remoteTimeoutMs": timeout_ms}


# ------------------------------------------------------------------------------------------------ measures


def pct(values, q) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


class Bench:
    def __init__(self, args, bundle: str, gguf: str, vocab, server: RealServer, follower: LogFollower):
        self.args, self.bundle, self.gguf, self.vocab = args, bundle, gguf, vocab
        self.server, self.follower = server, follower
        self.conns: list[Conn] = []
        lock = threading.Lock()
        self.proxies = {t: Proxy(t, server.port, self.conns, lock) for t in ("ours", "direct", "anchor")}
        self.stderr = open(args.server_log + ".lsp", "a") if args.server_log else subprocess.DEVNULL

    def completions(self, tag: str, t0: float, t1: float) -> list[Conn]:
        return [c for c in list(self.conns) if c.tag == tag and t0 <= c.opened < t1 and c.is_completion]

    def prompt_tokens(self, body: dict) -> int:
        return len(self.vocab.tokenize(body["prompt"].encode("utf-8"), add_bos=True, special=True))

    def server_side(self, tag: str, t0: float, t1: float) -> dict:
        """What the server's log and the proxy say of one session: cache hits, stale requests, bytes."""
        time.sleep(SETTLE_S)
        conns = self.completions(tag, t0, t1)
        lines = self.follower.between(t0, time.perf_counter())
        hits = [(int(m.group(1)), int(m.group(2))) for _, ln in lines if (m := PREFIX_HIT.search(ln))]
        reused, evaluated = sum(h for h, _ in hits), sum(r for _, r in hits)
        gone: dict[int, list[float]] = {}
        for t, ln in lines:
            if m := GONE.search(ln):
                gone.setdefault(int(m.group(1)), []).append(t)
        early = [c for c in conns if c.closed_early]
        run_on = []  # close -> the server's line for that connection: how long it went on with a stale request
        for c in early:
            after = [t for t in gone.get(c.server_port, []) if t >= c.client_closed]
            if after:
                run_on.append((after[0] - c.client_closed) * 1e3)
        return {"requests": len(conns), "bytes_up": sum(len(c.up) for c in conns),
                "bytes_down": sum(c.down_bytes for c in conns), "started": len(hits),
                "reused_tokens": reused, "evaluated_tokens": evaluated,
                "whole_prompt_cached": sum("full prompt already cached" in ln for _, ln in lines),
                "cache_hit": reused / (reused + evaluated) if hits else float("nan"),
                "closed_early": len(early), "stopped": len(run_on), "never_started": len(early) - len(run_on),
                "run_on_ms": run_on, "run_on_p50_ms": pct(run_on, 50), "run_on_p95_ms": pct(run_on, 95),
                "run_on_max_ms": max(run_on) if run_on else float("nan")}

    # -- positions ------------------------------------------------------------------------------------------------

    def editor(self, options: dict | None, extra: dict) -> LspEditor:
        return LspEditor(self.bundle, TypingDoc("", 0), self.args.threads, self.stderr, options={**(options or {}), **extra})

    def ask_position(self, ed: LspEditor, i: int, prefix: str, suffix: str) -> tuple[str, float, object]:
        uri = f"file:///bench/positions/p{i}.py"
        text = prefix + suffix
        ed.client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                                                   "text": text}})
        line, char = index_to_position(text, len(prefix))
        p = ed.client.send_request("textDocument/inlineCompletion", {
            "textDocument": {"uri": uri}, "position": {"line": line, "character": char}, "context": {"triggerKind": 1}})
        msg = p.wait(ANSWER_TIMEOUT_S)
        ed.client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
        items = ((msg.get("result") or {}).get("items")) or []
        out = items[0]["insertText"] if items else ""
        return (out if isinstance(out, str) else out.get("value", "")), p.ms, p

    def run_positions(self) -> dict:
        """Two passes: remote and its direct replay alternating (no local server alive: after an answer its ONNX
        Runtime threads keep the cores busy for a while, which slows the llama.cpp server's next seconds many times
        over), then local alone (the llama.cpp server idle)."""
        a = self.args
        pos = positions(a.positions, a.seed, a.cursor)
        extra = {"maxPromptTokens": a.max_prompt_tokens, "coldPromptTokens": 0, "prefillOnOpen": False}
        out = {k: {"text": [], "ms": []} for k in ("local", "remote", "direct", "suffix")}
        bytes_up, tokens = [], []
        t_start = time.perf_counter()
        remote = self.editor(remote_options(self.proxies["ours"].url, a.remote_timeout_ms), extra)
        try:
            for i, (mod, prefix, suffix, _) in enumerate(pos):
                flush(self.server.port)
                t0 = time.perf_counter()
                text, ms, p = self.ask_position(remote, i, prefix, suffix)
                out["remote"]["text"].append(text.split("\n")[0])
                out["remote"]["ms"].append(ms)
                sent = self.completions("ours", t0, p.received)
                if not sent:
                    raise SystemExit(f"position {i}: our server sent no request to the remote server")
                body = sent[-1].body
                bytes_up.append(len(sent[-1].up))
                tokens.append(self.prompt_tokens(body))
                flush(self.server.port)
                ms, text = post(self.proxies["direct"].port, body, until_newline=True)
                held = split_heal(prefix)[1]  # read as our server reads it: the held-back text spelled, then cut
                text = text[len(held):] if text.startswith(held) else ""
                out["direct"]["text"].append(text.split("\n")[0])
                out["direct"]["ms"].append(ms)
                if a.suffix:
                    flush(self.server.port)
                    window = prefix[max(0, prefix.find("\n", len(prefix) - 4 * a.max_prompt_tokens) + 1):]
                    sbody = {"prompt": window, "suffix": suffix[:1024], "max_tokens": MAX_NEW_TOKENS,
                             "temperature": 0.0, "stream": True}
                    ms, text = post(self.proxies["direct"].port, sbody, until_newline=True)
                    out["suffix"]["text"].append(text.split("\n")[0])
                    out["suffix"]["ms"].append(ms)
                print(f"  position {i + 1}/{len(pos)} {mod}: remote {out['remote']['ms'][-1]:.0f} ms, direct "
                      f"{out['direct']['ms'][-1]:.0f} ms", flush=True)
        finally:
            remote.close()
        local = self.editor(None, extra)
        try:
            for i, (mod, prefix, suffix, _) in enumerate(pos):
                text, ms, _ = self.ask_position(local, i, prefix, suffix)
                out["local"]["text"].append(text.split("\n")[0])
                out["local"]["ms"].append(ms)
        finally:
            local.close()
        res = {"n": len(pos), "seconds": time.perf_counter() - t_start, "bytes_up_mean": float(np.mean(bytes_up)),
               "prompt_tokens_mean": float(np.mean(tokens))}
        for k, v in out.items():
            if v["ms"]:
                e, s, _ = score(v["text"], pos)
                res[k] = {"exact": e, "edit_sim": s, "p50": pct(v["ms"], 50), "p95": pct(v["ms"], 95)}
        return res

    # -- typing ---------------------------------------------------------------------------------------------------

    def typing_session(self, engine: str, make) -> tuple[Run, float, float]:
        text, start, end = self.typing
        t0 = time.perf_counter()
        run = session(engine, make, text, start, end, self.rhythm)
        return run, t0, time.perf_counter()

    def direct_replay(self, conns: list[Conn], timed: set[int]) -> list[float]:
        """Replay `conns` in order straight to the server; those in `timed` streamed and timed, the rest untimed
        with max_tokens 1 (they leave the server's prompt cache as ours left it)."""
        port, out = self.proxies["direct"].port, []
        for i, c in enumerate(conns):
            body = c.body
            if i in timed:
                out.append(post(port, body, until_newline=True)[0])
            else:
                body = {k: v for k, v in body.items() if k != "stream_options"}
                post(port, {**body, "stream": False, "max_tokens": 1}, until_newline=False)
        return out

    def run_typing(self, meta) -> dict:
        a = self.args
        label, text = source_text(a.file)
        start, end = typing_span(text, a.start_line, a.chars)
        self.typing, self.rhythm = (text, start, end), Rhythm()
        keys = keystrokes(text[start:end], start)
        print(f"typing: {end - start} chars of {label} from line {a.start_line}, {len(keys)} keys", flush=True)
        recorded: list[RecordingEditor] = []

        def make_local(doc):
            ed = RecordingEditor(self.bundle, doc, a.threads, self.stderr)
            recorded.append(ed)
            return ed, "waferline server, local decoder"

        def make_remote(doc):
            ed = RecordingEditor(self.bundle, doc, a.threads, self.stderr,
                                 options=remote_options(self.proxies["ours"].url, a.remote_timeout_ms))
            recorded.append(ed)
            return ed, f"waferline server, openai-raw ({FIM_TEMPLATE}) via the proxy"

        anchor = SharedHttpLlama(self.vocab, self.proxies["anchor"].port)

        def make_anchor(doc):
            ed = WarmVscodeEditor(anchor, meta, doc)
            recorded.append(ed)
            return ed, f"llama.vscode discipline, its FIM layout as text, {anchor.kind}"
        runs: dict[str, list] = {k: [] for k in ("local", "remote", "direct", "llama.vscode")}
        for r in range(a.rounds):
            run, t0, t1 = self.typing_session("local", make_local)
            runs["local"].append((summary(run), None, run))
            print(f"  round {r + 1} local: cold first request {recorded[-1].cold_ms:.0f} ms | {describe(summary(run))}",
                  flush=True)

            run, t0, t1 = self.typing_session("remote", make_remote)
            side = self.server_side("ours", t0, t1)
            conns = self.completions("ours", t0, t1)
            if not conns:  # a misconfigured session would otherwise be timed as if it were remote
                raise SystemExit("remote: our server sent no request to the llama.cpp server: the session did not "
                                 "run the remote backend (check the options given to the editor)")
            ed = recorded[-1]
            matched, ours_ms = {}, []  # pause requests that reached the server: conn index -> our latency
            for p, ask in zip(ed.handles, run.asks):
                if not ask.pause:
                    continue
                mine = [i for i, c in enumerate(conns) if p.sent <= c.opened <= p.received]
                if mine:
                    c = conns[mine[-1]]  # ours = LSP request -> our server opens the connection -> ... -> answer
                    matched[mine[-1]] = (p.ms, (c.opened - p.sent) * 1e3,
                                         ((c.client_closed or p.received) - c.opened) * 1e3)
            runs["remote"].append((summary(run), side, run))
            print(f"  round {r + 1} remote: cold first request {ed.cold_ms:.0f} ms | {describe(summary(run))} | "
                  f"{describe_side(side, len(keys))}", flush=True)

            flush(self.server.port)  # the replay starts where ours started: nothing of this document cached
            t0 = time.perf_counter()
            direct_ms = self.direct_replay(conns, set(matched))
            dside = self.server_side("direct", t0, time.perf_counter())
            pairs = [(*matched[i], d) for i, d in zip(sorted(matched), direct_ms)]  # (ours, before, http, direct)
            runs["direct"].append(({"pairs": pairs}, dside, None))
            ratios = [o / d for o, _, _, d in pairs]
            print(f"  round {r + 1} direct: {len(pairs)} of remote's pause requests reached the server: ours p50 "
                  f"{pct([p[0] for p in pairs], 50):.0f} ms (before its connection opened p50 "
                  f"{pct([p[1] for p in pairs], 50):.0f} ms, connection open p50 {pct([p[2] for p in pairs], 50):.0f} "
                  f"ms), the same requests direct p50 {pct([p[3] for p in pairs], 50):.0f} ms; per-request ratio p50 "
                  f"{pct(ratios, 50):.2f}x | server cache hit {dside['cache_hit']:.0%} over {dside['started']} "
                  f"generations", flush=True)

            flush(self.server.port)
            run, t0, t1 = self.typing_session("llama.vscode", make_anchor)
            side = self.server_side("anchor", t0, t1)
            runs["llama.vscode"].append((summary(run), side, run))
            print(f"  round {r + 1} llama.vscode: cold first request {recorded[-1].cold_ms:.0f} ms | "
                  f"{describe(summary(run))} | {describe_side(side, len(keys))}", flush=True)
        return {"keys": len(keys), "runs": runs}


def describe(s: dict) -> str:
    cancelled = s["storm"] - s["storm_outcomes"].get("answered", 0)
    return (f"pause requests {s['n']}: p50 {s['p50']:.0f} ms, p95 {s['p95']:.0f} ms, max {s['max']:.0f} ms "
            f"({s['pause_cached']} from cache, {s['pause_empty']} empty, {s['pause_errors']} errors); "
            f"storm {s['storm']} ({cancelled} not shown)")


def describe_side(side: dict, keys: int) -> str:
    whole = f", +{side['whole_prompt_cached']} whole prompts cached" if side["whole_prompt_cached"] else ""
    return (f"{side['requests']} server requests, {side['bytes_up'] / keys:.0f} B sent per key | server cache hit "
            f"{side['cache_hit']:.0%} ({side['reused_tokens']} prompt tokens reused, {side['evaluated_tokens']} "
            f"evaluated over the {side['started']} generations it started{whole}) | closed before the server's end "
            f"{side['closed_early']}: {side['stopped']} stopped by the server (its 'Disconnected' line) after p50 "
            f"{side['run_on_p50_ms']:.0f} / p95 {side['run_on_p95_ms']:.0f} / max {side['run_on_max_ms']:.0f} ms, "
            f"{side['never_started']} never started (no line: cancelled in its queue)")


def merged(runs: list) -> dict:
    """Pause latencies of every round of one engine, pooled."""
    lat = [a.latency_ms for _, _, run in runs for a in run.asks if a.pause]
    return {"n": len(lat), "p50": pct(lat, 50), "p95": pct(lat, 95)}


def pooled_side(runs: list) -> dict:
    sides = [s for _, s, _ in runs]
    keys = ("requests", "bytes_up", "started", "reused_tokens", "evaluated_tokens", "closed_early", "stopped",
            "never_started")
    out = {k: sum(s[k] for s in sides) for k in keys}
    total = out["reused_tokens"] + out["evaluated_tokens"]
    out["cache_hit"] = out["reused_tokens"] / total if total else float("nan")
    run_on = [x for s in sides for x in s["run_on_ms"]]
    out.update(run_on_p50_ms=pct(run_on, 50), run_on_max_ms=max(run_on) if run_on else float("nan"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b", help="a FIM model (the raw prompt needs its template)")
    ap.add_argument("--parts", default="positions,typing")
    ap.add_argument("--positions", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cursor", choices=["any", "word"], default="word",
                    help="word (default): where a word starts, so no position is a mid-word skip")
    ap.add_argument("--max-prompt-tokens", type=int, default=512, help="positions: the maxPromptTokens setting")
    ap.add_argument("--suffix", action="store_true", help="positions: also the `suffix` dialect, straight to the server")
    ap.add_argument("--file", default="textwrap")
    ap.add_argument("--start-line", type=int, default=251)
    ap.add_argument("--chars", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--remote-timeout-ms", type=int, default=120000,
                    help="our server's remoteTimeoutMs (default 10000 in the settings: a cold prompt on a busy CPU "
                         "server is silent longer, and the request would end empty instead of being measured)")
    ap.add_argument("--server-log", help="keep the llama.cpp server's log here (and our servers' stderr in .lsp)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()

    import tempfile

    from llama_cpp import Llama

    from runtime import models
    from runtime.bundle import read_meta

    machine = cpu_line()
    print(machine, flush=True)
    print(f"load average at the start: {os.getloadavg()[0]:.1f} (other work on the cores slows llama.cpp most)", flush=True)
    bundle = str(models.resolve_model(args.model))
    meta = read_meta(bundle)
    if not meta.has_fim:
        raise SystemExit(f"{args.model} has no FIM tokens: the raw FIM prompt needs a FIM model (qwen2.5-coder-0.5b)")
    gguf = str(models.gguf_path(args.model))
    tmp = Path(tempfile.mkdtemp(prefix="waferline-remote-bench-"))
    log = Path(args.server_log) if args.server_log else tmp / "server.log"
    log.write_text("")
    server = RealServer(Path(gguf), log, free_port(), threads=args.threads)
    if why := server.start():
        raise SystemExit(why)
    follower = LogFollower(log)
    vocab = Llama(model_path=gguf, vocab_only=True, verbose=False)
    print(f"remote {args.model}: llama-cpp-python server on {Path(gguf).name}, --n_threads {args.threads}; our "
          f"servers --threads {args.threads}, remoteTimeoutMs {args.remote_timeout_ms}; greedy, line mode, <= {MAX_NEW_TOKENS} new tokens", flush=True)
    bench = Bench(args, bundle, gguf, vocab, server, follower)
    results: dict = {"machine": machine, "model": args.model}
    summary_bits = []
    try:
        if "positions" in args.parts:
            pr = bench.run_positions()
            results["positions"] = pr
            line = (f"positions ({pr['n']}, cursor {args.cursor}, maxPromptTokens {args.max_prompt_tokens}, each cold): "
                    + ", ".join(f"{k} exact {v['exact']:.1%} edit-sim {v['edit_sim']:.3f} p50 {v['p50']:.0f} ms p95 "
                                f"{v['p95']:.0f} ms" for k, v in pr.items() if isinstance(v, dict))
                    + f" | remote sent {pr['bytes_up_mean']:.0f} B per request ({pr['prompt_tokens_mean']:.0f} prompt "
                      f"tokens) | {pr['seconds']:.0f} s")
            print(line, flush=True)
            summary_bits.append(
                f"positions n={pr['n']} exact local {pr['local']['exact']:.1%} remote {pr['remote']['exact']:.1%}"
                + (f" suffix {pr['suffix']['exact']:.1%}" if "suffix" in pr else "")
                + f", p50 local/remote/direct {pr['local']['p50']:.0f}/{pr['remote']['p50']:.0f}/"
                  f"{pr['direct']['p50']:.0f} ms (remote/direct {pr['remote']['p50'] / pr['direct']['p50']:.2f}x)")
        if "typing" in args.parts:
            tr = bench.run_typing(meta)
            runs, keys = tr["runs"], tr["keys"]
            pairs = [p for s, _, _ in runs["direct"] for p in s["pairs"]]
            ours_m, direct_m = pct([p[0] for p in pairs], 50), pct([p[3] for p in pairs], 50)
            rem, anc, loc = merged(runs["remote"]), merged(runs["llama.vscode"]), merged(runs["local"])
            rs, ds, as_ = pooled_side(runs["remote"]), pooled_side(runs["direct"]), pooled_side(runs["llama.vscode"])
            ratio = ours_m / direct_m
            results["typing"] = {"keys": keys, "local": loc, "remote": rem, "llama.vscode": anc, "pairs": pairs,
                                 "remote_side": rs, "direct_side": ds, "anchor_side": as_}
            summary_bits.append(
                f"typing pause p50/p95 local {loc['p50']:.0f}/{loc['p95']:.0f}, remote {rem['p50']:.0f}/{rem['p95']:.0f}, "
                f"llama.vscode {anc['p50']:.0f}/{anc['p95']:.0f} ms (n={rem['n']}); same requests remote/direct p50 "
                f"{ours_m:.0f}/{direct_m:.0f} ms = {ratio:.2f}x (target <= 1.2x: {'met' if ratio <= 1.2 else 'NOT met'}, "
                f"n={len(pairs)}); cache hit remote {rs['cache_hit']:.0%} direct {ds['cache_hit']:.0%} llama.vscode "
                f"{as_['cache_hit']:.0%}; bytes/key remote {rs['bytes_up'] / (keys * args.rounds):.0f} llama.vscode "
                f"{as_['bytes_up'] / (keys * args.rounds):.0f}; stale: {rs['closed_early']} closed early, {rs['stopped']} "
                f"stopped by the server after p50/max {rs['run_on_p50_ms']:.0f}/{rs['run_on_max_ms']:.0f} ms, "
                f"{rs['never_started']} never started")
    finally:
        follower.stop()
        for p in bench.proxies.values():
            p.close()
        server.stop()
    print(f"load average at the end: {os.getloadavg()[0]:.1f}", flush=True)
    if args.json:
        Path(args.json).write_bytes(msgspec.json.encode(results, enc_hook=lambda o: msgspec.to_builtins(o)))
    print(f"SUMMARY remote {args.model} [{machine.removeprefix('machine: ')}]: " + " | ".join(summary_bits), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
