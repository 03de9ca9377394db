"""Typing benchmark: what a person waits for. A real file's lines are typed into the editor at a human rhythm -- a key
every ~60 ms inside words, a pause of a few hundred ms where a word starts and ~1 s after Enter, the places where a
suggestion is read -- and every inline-completion request made at a pause is timed to its answer, however long it
takes: the typist waits for it (the pause lasts its nominal length or until the answer, whichever is later), so no
request is ever dropped. Requests made between pauses (the storm) are cancelled by the next key as the editor does;
they are counted apart (answered in time / cancelled) and never enter the latencies.

    python bench/lsp_typing.py [--model smollm2-135m,qwen2.5-coder-0.5b] [--file textwrap] [--start-line 251]
                               [--chars 400] [--rounds 1] [--engines ours,anchor] [--anchor-via inprocess|server] [--json out.json]
                               [--tabs 10] [--context on|off] [--context-tokens N] [--kv-slots N]

ours: the language server over stdio, driven as VS Code drives it: didOpen, the codeAction VS Code sends where the
cursor lands, then per key a didChange, $/cancelRequest for the request still pending, and inlineCompletion after
VS Code's 50 ms debounce. Latency = request written -> answer read (the harness stamps both). --tabs N opens N other
files first, in the workspace folder file:///bench/ with the typed one (bench/crossfile.py's neighbour_tabs: for a
module of a package, the package modules it imports, then its others; else standard-library modules), so the server's
cross-file context (`context`, `contextTokens`: --context, --context-tokens; the server's defaults if not given)
draws on them. The anchor gets no tabs.

anchor: llama.cpp on the GGUF the bundle was converted from, driven as llama.vscode drives llama.cpp's server from
the same key schedule: its provider waits while a request is in flight (polling every 150 ms, returning nothing if
VS Code cancels it meanwhile), answers from its LRU result cache when the typed text continues a cached suggestion,
else sends the request and lets it run to the end even when cancelled (llama.vscode does not abort it). Prompt:
bench/quality.py's llama.vscode /infill layout for FIM models; for others the same without FIM tokens (the last
1,024 tokens of the lines above, then the cursor line: like llama.vscode's input_prefix it changes only at a new
line, where quality.py's plain window of the last 1,024 tokens would slide at every key and defeat the prompt
cache). Greedy, one line, <= 64 new tokens, prompt cache on: the longest common prefix of the KV is kept, as
llama.cpp's server does with cache_prompt (--ram-cache adds llama-cpp-python's LlamaRAMCache, whose save_state
copies the logits on every request: 70-230 ms here, a cost llama.cpp's server does not have). Left out:
llama.vscode's speculative request for the suggestion after the one shown, and its extra-context chunks (both add
server work). --anchor-via inprocess (default) runs llama_cpp.Llama in a thread of this process with the exact
prompt ids; server runs llama-cpp-python's HTTP server (no /infill, and it takes text, which re-tokenizes slightly
differently: the count of prompts that did is printed). llama.cpp's own server is not available here.

Same --threads (2) for both; each round runs ours, then the anchor. Run it on a quiet machine: with other work on
the cores, llama.cpp's spinning thread pool collapses (Qwen2.5-Coder 0.5B here: 1.1 tok/s with 2 threads, 11.5 with
1) far more than our runtime, and the comparison with it. Prints the machine line first, then one line per model and
engine, then a summary line per model; --json keeps every request. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import inspect
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # the server too

from bench.crossfile import context_options, neighbour_tabs  # noqa: E402
from bench.machine import cpu_line  # noqa: E402
from bench.quality import ANCHOR_PROMPT_TOKENS, MAX_NEW_TOKENS, anchor_fim_ids  # noqa: E402
from lsp_server.cli_serve import Pending, StdioClient, server_command, wait_ready  # noqa: E402
from lsp_server.positions import index_to_position  # noqa: E402

METRICS = "waferline/metrics"
ANSWER_TIMEOUT_S = 600.0  # hang guard only: a pause waits for its answer however long it takes
LLAMA_VSCODE_POLL_S = 0.150  # llama.vscode's DELAY_BEFORE_COMPL_REQUEST: its wait-while-in-flight loop
LLAMA_VSCODE_CACHE_KEYS = 250  # llama.vscode's max_cache_keys (LRU of suggestions)


# ------------------------------------------------------------------------------------------------ the typing


@dataclass(frozen=True)
class Rhythm:
    key_ms: float = 60.0  # between keys inside a word
    word_ms: float = 300.0  # after the key before a word starts
    line_ms: float = 1000.0  # after Enter (and at the end)
    debounce_ms: float = 50.0  # VS Code's inline-completion debounce
    lead_ms: float = 1000.0  # cursor placed, before the first key

    def gap_ms(self, pause: str) -> float:
        return {"": self.key_ms, "word": self.word_ms, "line": self.line_ms}[pause]


class Key(msgspec.Struct, frozen=True):
    at: int  # document index where `text` is inserted (the cursor ends after it)
    text: str  # one character, or Enter with the next line's indentation (the editor's auto-indent)
    pause: str  # "" (storm), "word" (the next key starts a word) or "line" (after Enter, and the last key)


def is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def keystrokes(span: str, at: int) -> list[Key]:
    """The keys that type `span` at document index `at`, each marked with the pause that follows it."""
    keys, i = [], 0
    while i < len(span):
        if span[i] == "\n":
            j = i + 1
            while j < len(span) and span[j] in " \t":
                j += 1
            text, pause = span[i:j], "line"
        else:
            j = i + 1
            text = span[i]
            nxt = span[j] if j < len(span) else ""
            pause = "word" if not is_word(text) and is_word(nxt) else ""
        keys.append(Key(at + i, text, pause))
        i = j
    if keys:
        keys[-1] = Key(keys[-1].at, keys[-1].text, "line")  # the typist stops at the end of the last line
    return keys


class Ask(msgspec.Struct):
    """One completion request as the typist saw it."""

    key: int  # index of the key that made it
    pause: str  # "" for a storm request
    t_ms: float  # when it was asked, from the first key
    latency_ms: float  # asked -> answered (every request is answered in the end; storm ones may be discarded)
    outcome: str  # answered | cancelled (ours) | cancelled-waiting | cancelled-before-request | cancelled-ran-on | error
    cached: bool  # answered from a result cache (ours: the server's; anchor: llama.vscode's LRU)
    text: str  # the suggestion ("" = none); for an error, its message
    metrics: dict = {}  # ours: the server's waferline/metrics of this request (prompt tokens, reused, CPU ms, ...)


class Run(msgspec.Struct):
    engine: str
    model: str
    detail: str
    keys: int
    typing_s: float
    asks: list[Ask]


def drive(editor, keys: list[Key], rhythm: Rhythm) -> tuple[list[tuple[int, object]], float, float]:
    """Type `keys` into `editor` on the schedule; returns ([(key index, handle)], t0, seconds typing). A handle
    still pending at the next key is cancelled; a pause waits for its own handle's answer."""
    asked: list[tuple[int, object]] = []
    prev = None
    t0 = time.perf_counter()
    t = t0
    for i, k in enumerate(keys):
        time.sleep(max(0.0, t - time.perf_counter()))
        editor.type(k)
        if prev is not None and not prev.done():
            prev.cancel()  # the text changed under it: VS Code cancels the request
        gap = rhythm.gap_ms(k.pause)
        prev = None
        nxt = t + gap / 1e3
        if k.pause or rhythm.debounce_ms < gap:  # else the next key comes before the debounce ends: no request
            time.sleep(rhythm.debounce_ms / 1e3)
            prev = editor.ask()
            asked.append((i, prev))
            if k.pause:
                prev.wait(ANSWER_TIMEOUT_S)  # the person reads the suggestion: the pause lasts until it is there
                nxt = max(nxt, time.perf_counter())
        t = nxt
    typing_s = time.perf_counter() - t0
    for _, h in asked:
        h.wait(ANSWER_TIMEOUT_S)  # every request answered, cancelled ones included: none is left out
    return asked, t0, typing_s


class TypingDoc:
    """The editor's copy of the document and its cursor."""

    def __init__(self, text: str, cursor: int):
        self.text = text
        self.cursor = cursor

    def insert(self, k: Key) -> tuple[int, int]:
        """Apply the key; the LSP position where it was inserted (before the edit)."""
        pos = index_to_position(self.text, k.at)
        self.text = self.text[: k.at] + k.text + self.text[k.at :]
        self.cursor = k.at + len(k.text)
        return pos


# ------------------------------------------------------------------------------------------------ ours


class LspAsk:
    def __init__(self, client: StdioClient, pending: Pending, mark: int):
        self.client, self.p, self.mark = client, pending, mark

    def done(self) -> bool:
        return self.p.done()

    def wait(self, timeout: float) -> None:
        self.p.wait(timeout)

    def cancel(self) -> None:
        self.client.cancel(self.p)

    def record(self, key: int, pause: str, t0: float) -> Ask:
        result = (self.p.message or {}).get("result")
        items = (result.get("items") or []) if isinstance(result, dict) else []
        text = items[0]["insertText"] if items else ""
        text = text if isinstance(text, str) else text.get("value", "")
        # the server publishes a request's metrics just before its answer; another request's between the two can
        # only be one stopped by a newer one (stop_reason "cancelled")
        mine = [m for m in self.client.notifications_of(METRICS, since=self.mark, until=self.p.seen)
                if m.get("stop_reason") != "cancelled"]
        cached = bool(mine and mine[-1].get("cached"))
        outcome = "cancelled" if self.p.cancelled else "error" if "error" in (self.p.message or {}) else "answered"
        if outcome == "error":
            text = str(self.p.message["error"].get("message"))
        return Ask(key, pause, (self.p.sent - t0) * 1e3, self.p.ms, outcome, cached, text, mine[-1] if mine else {})


class LspEditor:
    """VS Code in front of our server: the LSP traffic of a typing session."""

    def __init__(self, model: str, doc: TypingDoc, threads: int, stderr, *, path: str = "typing.py",
                 tabs: dict[str, str] | None = None, options: dict | None = None):
        self.doc = doc
        self.uri = f"file:///bench/{path}"
        self.client = StdioClient(server_command() + ["--log-level", "warning"], stderr=stderr)
        self.version = 1
        c = self.client
        opts = {"model": model, "maxNewTokens": MAX_NEW_TOKENS, "mode": "line", "threads": threads, **(options or {})}
        c.request("initialize", {"processId": os.getpid(), "rootUri": "file:///bench",
                                 "capabilities": {"textDocument": {"inlineCompletion": {}}},
                                 "initializationOptions": {"waferline": opts}})
        c.notify("initialized", {})
        for tab, text in (tabs or {}).items():  # opened before the typed file, which keeps the focus
            c.notify("textDocument/didOpen", {"textDocument": {"uri": f"file:///bench/{tab}", "languageId": "python",
                                                               "version": 1, "text": text}})
        c.notify("textDocument/didOpen", {"textDocument": {"uri": self.uri, "languageId": "python", "version": 1,
                                                           "text": doc.text}})
        st = wait_ready(c, ANSWER_TIMEOUT_S)
        if st.get("state") != "ready":
            raise SystemExit(f"server not ready: {st.get('state')}: {st.get('message')}")

    def place_cursor(self) -> None:
        """VS Code asks for code actions where the cursor lands (the server prefills there)."""
        line, char = index_to_position(self.doc.text, self.doc.cursor)
        rng = {"start": {"line": line, "character": char}, "end": {"line": line, "character": char}}
        self.client.request("textDocument/codeAction", {"textDocument": {"uri": self.uri}, "range": rng,
                                                        "context": {"diagnostics": [], "triggerKind": 2}})

    def type(self, k: Key) -> None:
        line, char = self.doc.insert(k)
        self.version += 1
        at = {"line": line, "character": char}
        self.client.notify("textDocument/didChange", {"textDocument": {"uri": self.uri, "version": self.version},
                                                      "contentChanges": [{"range": {"start": at, "end": at}, "text": k.text}]})

    def ask(self) -> LspAsk:
        line, char = index_to_position(self.doc.text, self.doc.cursor)
        mark = self.client.seen()
        p = self.client.send_request("textDocument/inlineCompletion", {
            "textDocument": {"uri": self.uri}, "position": {"line": line, "character": char}, "context": {"triggerKind": 1}})
        return LspAsk(self.client, p, mark)

    def close(self) -> None:
        self.status = (self.client.request("waferline/status", None)[0].get("result") or {})
        self.client.close()

    def context_note(self) -> str:
        """What the server prefilled aside while typing (a changed context, a nearly full FIM middle) and swapped in."""
        ctx = getattr(self, "status", {}).get("context") or {}
        return (f", context changed at {ctx['changes']} requests, {ctx['asides']} prefills aside for it, "
                f"{ctx['middle_restarts']} for a nearly full middle, {ctx['swaps']} swaps" if "middle_restarts" in ctx else "")


# ------------------------------------------------------------------------------------------------ the anchor


def reuse_chunks(llm, ids: list[int], min_chunk: int) -> int:
    """llama.cpp server's --cache-reuse on llama_cpp.Llama's KV: past the common prefix, every run of >= min_chunk
    tokens that the new prompt shares with the cached sequence is shifted into place instead of recomputed (a
    window that slid by a line keeps most of its KV). Leaves the KV and llm's token record at the reused prefix,
    which Llama.generate's own longest-prefix match then takes; returns the tokens kept."""
    cache = [int(t) for t in llm._input_ids]
    head = 0
    while head < min(len(cache), len(ids)) and cache[head] == ids[head]:
        head += 1
    head_c = head_p = head
    while min_chunk > 0 and head_c < len(cache) and head_p < len(ids):
        n = 0
        while head_c + n < len(cache) and head_p + n < len(ids) and cache[head_c + n] == ids[head_p + n]:
            n += 1
        if n >= min_chunk:
            llm._ctx.kv_cache_seq_rm(0, head_p, head_c)
            llm._ctx.kv_cache_seq_shift(0, head_c, head_c + n, head_p - head_c)
            cache[head_p : head_p + n] = cache[head_c : head_c + n]
            head_p += n
            head_c += n
        else:
            head_c += 1
    if head_p > head:
        llm._ctx.kv_cache_seq_rm(0, head_p, -1)
        llm.input_ids[:head_p] = cache[:head_p]
        llm.n_tokens = head_p
    return head_p


class InProcessLlama:
    """llama_cpp.Llama in this process (it releases the GIL while it computes), prompt given as token ids."""

    def __init__(self, gguf: str, threads: int, ram_cache: bool, cache_reuse: int):
        from llama_cpp import Llama, LlamaRAMCache

        self.llm = Llama(model_path=gguf, n_ctx=2048, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False)
        if ram_cache:
            self.llm.set_cache(LlamaRAMCache())
        self.vocab = self.llm
        self.cache_reuse = cache_reuse
        self.prompt_tokens = self.reused_tokens = 0
        self.kind = (f"llama_cpp.Llama in process, common-prefix KV reuse, --cache-reuse {cache_reuse}"
                     + (" + LlamaRAMCache" if ram_cache else ""))

    def complete(self, ids: list[int]) -> str:
        self.prompt_tokens += len(ids)
        self.reused_tokens += reuse_chunks(self.llm, ids, self.cache_reuse)
        r = self.llm.create_completion(ids, max_tokens=MAX_NEW_TOKENS, temperature=0.0, stop=["\n"])
        return r["choices"][0]["text"]

    def note(self) -> str:
        return f"; prompt tokens reused {self.reused_tokens / max(1, self.prompt_tokens):.0%}"

    def close(self) -> None:
        self.llm.close()


class HttpLlama:
    """llama-cpp-python's OpenAI-style server (--cache true) in a subprocess; the prompt goes as text."""

    def __init__(self, gguf: str, threads: int, ram_cache: bool, stderr):
        from llama_cpp import Llama

        self.vocab = Llama(model_path=gguf, vocab_only=True, verbose=False)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--n_threads", str(threads),
                                      "--n_threads_batch", str(threads), "--n_ctx", "2048", "--n_batch", "512",
                                      "--cache", str(ram_cache).lower(), "--port", str(self.port), "--host", "127.0.0.1"],
                                     stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v1/models", timeout=1)
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("llama_cpp.server did not start") from None
                time.sleep(0.1)
        self.kind = f"llama-cpp-python server, common-prefix KV reuse{', --cache true' if ram_cache else ''}"
        self.sent = self.retokenized_differently = 0

    def complete(self, ids: list[int]) -> str:
        text = self.vocab.detokenize(ids, special=True).decode("utf-8", "replace")
        self.sent += 1
        self.retokenized_differently += self.vocab.tokenize(text.encode("utf-8"), add_bos=False, special=True) != ids
        body = json.dumps({"prompt": text, "max_tokens": MAX_NEW_TOKENS, "temperature": 0.0, "stop": ["\n"]}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=ANSWER_TIMEOUT_S) as r:
            return json.loads(r.read())["choices"][0]["text"]

    def note(self) -> str:
        return f"; {self.retokenized_differently}/{self.sent} prompts re-tokenized differently from the ids as text"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class VscodeCall:
    """One call of llama.vscode's inline-completion provider, on its own thread (its async function)."""

    def __init__(self, editor: LlamaVscodeEditor, prefix: str, suffix: str):
        self.editor, self.prefix, self.suffix = editor, prefix, suffix
        self.token = threading.Event()  # VS Code's CancellationToken
        self.finished = threading.Event()
        self.asked = time.perf_counter()
        self.answered = float("nan")
        self.outcome, self.cached, self.text = "", False, ""
        threading.Thread(target=self._run, daemon=True).start()

    def done(self) -> bool:
        return self.finished.is_set()

    def wait(self, timeout: float) -> None:
        if not self.finished.wait(timeout):
            raise TimeoutError("llama.vscode provider call did not finish")

    def cancel(self) -> None:
        self.token.set()

    def _finish(self, outcome: str, text: str = "", cached: bool = False) -> None:
        if self.token.is_set() and outcome in ("answered", "cached"):
            outcome = "cancelled-ran-on" if outcome == "answered" else outcome  # VS Code discards the late answer
        self.outcome, self.text, self.cached = outcome, text, cached
        self.answered = time.perf_counter()
        self.finished.set()

    def _run(self) -> None:
        ed = self.editor
        while True:  # "Start only if the previous request is finished"
            with ed.lock:
                if not ed.busy:
                    ed.busy = True
                    break
            time.sleep(LLAMA_VSCODE_POLL_S)
            if self.token.is_set():
                return self._finish("cancelled-waiting")
        try:
            cut = self.prefix.rfind("\n") + 1
            head, prompt = self.prefix[:cut], self.prefix[cut:]
            hit = ed.cache_lookup(head, self.suffix, prompt)
            if hit is not None:
                return self._finish("cached", hit if hit.strip() else "", cached=True)
            if self.token.is_set():
                return self._finish("cancelled-before-request")
            text = ed.backend.complete(ed.prompt_ids(self.prefix, self.suffix))
            if text.strip():
                ed.cache_put(head, self.suffix, prompt, text)
            self._finish("answered", text if text.strip() else "")
        except Exception as exc:  # noqa: BLE001 -- reported as the outcome, never a hang
            self._finish("error", f"{type(exc).__name__}: {exc}")
        finally:
            with ed.lock:
                ed.busy = False

    def record(self, key: int, pause: str, t0: float) -> Ask:
        return Ask(key, pause, (self.asked - t0) * 1e3, (self.answered - self.asked) * 1e3, self.outcome, self.cached,
                   self.text)


class LlamaVscodeEditor:
    """VS Code with llama.vscode in front of llama.cpp: the same keys, llama.vscode's request discipline."""

    def __init__(self, backend, meta, doc: TypingDoc):
        self.backend, self.meta, self.doc = backend, meta, doc
        self.lock = threading.Lock()
        self.busy = False
        self.cache: OrderedDict[str, str] = OrderedDict()

    def place_cursor(self) -> None:
        """llama.vscode does nothing for the cursor's position (its extra-context pings are left out)."""

    def prompt_ids(self, prefix: str, suffix: str) -> list[int]:
        v = self.backend.vocab
        if self.meta.has_fim:
            return anchor_fim_ids(v, self.meta, prefix, suffix)
        cut = prefix.rfind("\n") + 1

        def tok(text: str) -> list[int]:
            return v.tokenize(text.encode("utf-8"), add_bos=False, special=False) if text else []

        return tok(prefix[:cut])[-ANCHOR_PROMPT_TOKENS:] + tok(prefix[cut:])

    @staticmethod
    def _key(head: str, suffix: str, prompt: str) -> str:
        return hashlib.sha256(f"{head}|{suffix}|{prompt}".encode()).hexdigest()

    def cache_lookup(self, head: str, suffix: str, prompt: str) -> str | None:
        """llama.vscode's getCachedCompletion: this exact context, or a shorter prompt whose suggestion starts with
        what was typed since (the rest of it is the answer)."""
        for i in range(len(prompt), -1, -1):
            key = self._key(head, suffix, prompt[:i])
            got, typed = self.cache.get(key), prompt[i:]
            if got is not None and got.startswith(typed):
                self.cache.move_to_end(key)
                return got[len(typed):]  # may be "": the suggestion was typed out; llama.vscode then shows nothing
        return None

    def cache_put(self, head: str, suffix: str, prompt: str, text: str) -> None:
        self.cache[self._key(head, suffix, prompt)] = text
        while len(self.cache) > LLAMA_VSCODE_CACHE_KEYS:
            self.cache.popitem(last=False)

    def type(self, k: Key) -> None:
        self.doc.insert(k)

    def ask(self) -> VscodeCall:
        return VscodeCall(self, self.doc.text[: self.doc.cursor], self.doc.text[self.doc.cursor :])

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------------------ runs


def source_text(name: str) -> tuple[str, str]:
    """(label, text) of a module name or a file path."""
    p = Path(name)
    if p.suffix == ".py" and p.exists():
        return p.name, p.read_text(encoding="utf-8")
    return f"{name}.py", inspect.getsource(importlib.import_module(name))


def typing_span(text: str, start_line: int, chars: int) -> tuple[int, int]:
    """[start, end) to type: from the first non-blank character of 1-based `start_line` to the end of the line where
    `chars` characters have been typed (the indentation stays in the document: the cursor starts there)."""
    lines = text.splitlines(keepends=True)
    start = sum(len(ln) for ln in lines[: start_line - 1])
    start += len(lines[start_line - 1]) - len(lines[start_line - 1].lstrip(" \t"))
    end = text.find("\n", start + chars)
    return start, len(text) if end == -1 else end


def ours_factory(bundle: str, threads: int, stderr, path: str = "typing.py", tabs: dict[str, str] | None = None,
                 options: dict | None = None):
    what = "waferline server over stdio" + (f", {len(tabs)} other tabs open" if tabs else "") + "".join(
        f", {k} {v}" for k, v in (options or {}).items())

    def make(doc: TypingDoc):
        editor = LspEditor(bundle, doc, threads, stderr, path=path, tabs=tabs, options=options)
        return editor, lambda: what + editor.context_note()

    return make


def anchor_factory(backend, meta):
    layout = ("llama.vscode /infill layout" if meta.has_fim
              else f"last {ANCHOR_PROMPT_TOKENS} tokens of the lines above + the cursor line")

    def make(doc: TypingDoc):
        return LlamaVscodeEditor(backend, meta, doc), lambda: f"{backend.kind}, {layout}{backend.note()}"

    return make


def session(engine: str, make_editor, text: str, start: int, end: int, rhythm: Rhythm) -> Run:
    doc = TypingDoc(text[:start] + text[end:], start)
    keys = keystrokes(text[start:end], start)
    editor, detail = make_editor(doc)
    try:
        editor.place_cursor()
        time.sleep(rhythm.lead_ms / 1e3)
        asked, t0, typing_s = drive(editor, keys, rhythm)
    finally:
        editor.close()
    if doc.text != text:
        raise SystemExit("the typed document differs from the source: the key schedule is wrong")
    asks = [h.record(i, keys[i].pause, t0) for i, h in asked]
    return Run(engine, "", detail() if callable(detail) else detail, len(keys), typing_s, asks)


def summary(run: Run) -> dict:
    pause = [a for a in run.asks if a.pause]
    storm = [a for a in run.asks if not a.pause]
    lat = np.array([a.latency_ms for a in pause])
    if lat.size and not np.isfinite(lat).all():
        raise SystemExit(f"{run.engine}: a pause request has no answer time")  # cannot happen: drive() waits
    p50, p95 = np.percentile(lat, [50, 95]) if lat.size else (float("nan"),) * 2
    outcomes: dict[str, int] = {}
    for a in storm:
        k = "answered" if a.outcome in ("answered", "cached") else a.outcome
        outcomes[k] = outcomes.get(k, 0) + 1
    return {"n": len(pause), "p50": float(p50), "p95": float(p95), "max": float(lat.max()) if lat.size else float("nan"),
            "pause_cached": sum(a.cached for a in pause), "pause_empty": sum(not a.text for a in pause),
            "pause_errors": sum(a.outcome == "error" for a in pause),
            "storm": len(storm), "storm_outcomes": outcomes}


def describe(run: Run, s: dict) -> str:
    storm = ", ".join(f"{v} {k}" for k, v in sorted(s["storm_outcomes"].items())) or "none"
    return (f"{run.engine:6s} pause requests {s['n']}: p50 {s['p50']:.0f} ms, p95 {s['p95']:.0f} ms, max {s['max']:.0f} ms "
            f"({s['pause_cached']} from cache, {s['pause_empty']} empty, {s['pause_errors']} errors) | "
            f"storm requests {s['storm']}: {storm} | "
            f"typing took {run.typing_s:.0f} s | {run.detail}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m", help="model name(s), comma-separated: each runs in turn")
    ap.add_argument("--file", default="textwrap", help="standard-library module or .py path to type")
    ap.add_argument("--start-line", type=int, default=251, help="1-based line where typing starts")
    ap.add_argument("--chars", type=int, default=400, help="type at least this many characters, to a line end")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--key-ms", type=float, default=Rhythm.key_ms)
    ap.add_argument("--word-ms", type=float, default=Rhythm.word_ms)
    ap.add_argument("--line-ms", type=float, default=Rhythm.line_ms)
    ap.add_argument("--debounce-ms", type=float, default=Rhythm.debounce_ms)
    ap.add_argument("--lead-ms", type=float, default=Rhythm.lead_ms)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--engines", default="ours,anchor", help="which to run, comma-separated: ours, anchor")
    ap.add_argument("--anchor-via", choices=["inprocess", "server"], default="inprocess")
    ap.add_argument("--ram-cache", action="store_true", help="the anchor also keeps prompt states in a LlamaRAMCache")
    ap.add_argument("--cache-reuse", type=int, default=256,
                    help="as llama.cpp server's --cache-reuse, which llama.vscode asks for (0: off; inprocess only)")
    ap.add_argument("--server-log", help="the servers' stderr (default: discarded)")
    ap.add_argument("--server-log-level", choices=["debug", "info", "warning"],
                    help="our server's logLevel (default: warning; debug logs each scheduler job's ms)")
    ap.add_argument("--json", help="write every request of every run here")
    ap.add_argument("--tabs", type=int, default=0, help="other files open beside the typed one (ours only)")
    ap.add_argument("--context", choices=["on", "off"], help="the server's cross-file context (default: its default)")
    ap.add_argument("--context-tokens", type=int, help="the server's contextTokens (default: its default)")
    ap.add_argument("--kv-slots", type=int, help="the server's kvSlots: documents whose K/V stay cached (default: its default)")
    args = ap.parse_args()

    from runtime import models
    from runtime.bundle import read_meta

    print(cpu_line(), flush=True)
    rhythm = Rhythm(args.key_ms, args.word_ms, args.line_ms, args.debounce_ms, args.lead_ms)
    label, text = source_text(args.file)
    if args.tabs and Path(args.file).suffix == ".py":
        raise SystemExit("--tabs needs a module name for --file (its package's modules are the tabs)")
    path, tabs = neighbour_tabs(args.file, args.tabs) if args.tabs else ("typing.py", {})
    options = context_options(args.context, args.context_tokens)
    if args.kv_slots is not None:
        options["kvSlots"] = args.kv_slots
    if args.server_log_level:
        options["logLevel"] = args.server_log_level
    start, end = typing_span(text, args.start_line, args.chars)
    keys = keystrokes(text[start:end], start)
    pauses = {p: sum(k.pause == p for k in keys) for p in ("word", "line")}
    stderr = open(args.server_log, "a") if args.server_log else subprocess.DEVNULL
    runs: list[Run] = []
    for model in args.model.split(","):
        bundle = str(models.resolve_model(model))
        print(f"lsp_typing {model}: {end - start} chars of {label} from line {args.start_line}, {len(keys)} keys "
              f"({pauses['word']} word pauses, {pauses['line']} line pauses) | key {rhythm.key_ms:.0f} ms, word pause "
              f"{rhythm.word_ms:.0f} ms, line pause {rhythm.line_ms:.0f} ms, debounce {rhythm.debounce_ms:.0f} ms | "
              f"threads {args.threads}", flush=True)
        backend = None
        wanted = set(args.engines.split(","))
        if "anchor" in wanted:
            gguf = str(models.gguf_path(model))
            backend = (InProcessLlama(gguf, args.threads, args.ram_cache, args.cache_reuse) if args.anchor_via == "inprocess"
                       else HttpLlama(gguf, args.threads, args.ram_cache, stderr))
            meta = read_meta(bundle)
        per_engine: dict[str, list[Run]] = {}
        try:
            engines = [("ours", ours_factory(bundle, args.threads, stderr, path, tabs, options))] if "ours" in wanted else []
            if backend is not None:
                engines.append(("anchor", anchor_factory(backend, meta)))
            for _ in range(args.rounds):
                for name, make in engines:
                    run = session(name, make, text, start, end, rhythm)
                    run.model = model
                    runs.append(run)
                    per_engine.setdefault(name, []).append(run)
                    print(describe(run, summary(run)), flush=True)
        finally:
            if backend is not None:
                backend.close()
        merged = {n: summary(Run(n, model, "", 0, 0.0, [a for r in rs for a in r.asks])) for n, rs in per_engine.items()}
        names = {"ours": "ours", "anchor": "llama.cpp"}
        line = f"lsp_typing {model}: pause requests p50/p95/max " + ", ".join(
            f"{names[n]} {m['p50']:.0f}/{m['p95']:.0f}/{m['max']:.0f} ms (n={m['n']})" for n, m in merged.items())
        if len(merged) == 2:
            o, a = merged["ours"], merged["anchor"]
            line += f" | ours faster by p50 {a['p50'] / o['p50']:.2f}x, p95 {a['p95'] / o['p95']:.2f}x"
        cancelled = {n: s["storm"] - s["storm_outcomes"].get("answered", 0) for n, s in merged.items()}
        line += " | storm requests not shown (cancelled): " + ", ".join(f"{n} {c}/{merged[n]['storm']}" for n, c in cancelled.items())
        print(line, flush=True)
    if args.json:
        Path(args.json).write_bytes(msgspec.json.encode(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
