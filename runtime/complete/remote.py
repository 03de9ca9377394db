"""Completions written by a remote inference server (runtime.remote) instead of the local ONNX decoder.

The same flow as the local service (skip rules, result cache, typing along, post-processing); what differs is the
prompt: the server owns the tokenizer, so nothing large loads here and budgets are characters (CHARS_PER_TOKEN), and
the prompt window moves in jumps per document as the local one does, so the server's prefix cache keeps hitting.
The stream is closed as soon as post-processing could not use more of it (the line or block is complete), which
stops the generation on the server.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict

import msgspec

from runtime.complete.cache import ResultCache
from runtime.complete.flow import CompletionFlow
from runtime.complete.postprocess import (
    PostContext,
    block_ended,
    make_post_context,
    postprocess,
)
from runtime.complete.prompt import choose_middle_start, choose_window_start, remember_offset
from runtime.complete.request import CompletionRequest, CompletionResult
from runtime.remote import ProbeResult, PromptParts, RemoteBackend, RemoteError

# Code averages 3-4 characters per BPE token; budgets in characters at 4 per token keep a prompt near its token
# budget without a tokenizer (the server reports the real count in its usage, shown as prompt_tokens when it does).
CHARS_PER_TOKEN = 4
_FINISH_TO_STOP = {"length": "max_tokens", "cancelled": "cancelled"}
_HEAL = re.compile(r"[ \t]*(?<![A-Za-z0-9_])[A-Za-z_][A-Za-z0-9_]{0,31}\Z|[ \t]+\Z")


def split_heal(prefix: str) -> tuple[str, str]:
    """(prompt prefix, held back) when the cursor cuts what a BPE token would hold: a word begun, with the spaces
    before it ("x = va": " va"), or trailing spaces mid-line ("x = ": " "). A prompt that ends there is out of
    distribution (llama.cpp FIM scored 3.3% exact on such cursors), so the server gets the text before it and its
    answer must start with what was held back (a word; held-back spaces it may leave out): token healing by string,
    the remote form of what the local planner does with logits. Indentation before a word at a line start stays."""
    line = prefix[prefix.rfind("\n") + 1 :]
    m = _HEAL.search(line)
    if m is None:
        return prefix, ""
    held = m.group() if line[: m.start()].strip() else m.group().lstrip(" \t")
    if not held or not prefix[: len(prefix) - len(held)].strip():
        return prefix, ""
    return prefix[: len(prefix) - len(held)], held


def stream_complete(text: str, ctx: PostContext) -> bool:
    """Could more streamed text change what post-processing shows? No once the line (line mode) or the block
    (block mode) is complete, or a markdown fence / a run of blank lines ends the code: the stream can close."""
    if ctx.mode == "line":
        return "\n" in text
    return "```" in text or "\n\n\n" in text or block_ended(text, ctx)


class RemoteCompletionService(CompletionFlow):
    """A CompletionService over a RemoteBackend. One request at a time is the caller's rule (the LSP server's single
    worker): the metrics are read from the backend's `last_stats`, which the next request replaces."""

    def __init__(self, backend: RemoteBackend, *, max_context: int = 2048, cache_size: int = 32):
        self.remote = backend
        self.max_context = max_context  # the budget requests are fitted to; the server's own may be larger
        self.cache = ResultCache(cache_size)
        self.probe_result: ProbeResult | None = None
        self._window_starts: OrderedDict[str, int] = OrderedDict()
        self._middle_starts: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def backend(self) -> str:  # type: ignore[override]
        return self.remote.dialect

    @property
    def ready(self) -> bool:
        """Did the last probe find a working dialect? While not, each request probes again first."""
        return self.probe_result is not None and self.probe_result.dialect is not None

    def probe(self) -> ProbeResult:
        """Check the server (runtime.remote.RemoteBackend.probe: never raises) and remember the answer."""
        self.probe_result = self.remote.probe()
        return self.probe_result

    def count_tokens(self, text: str) -> int:
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    def forget(self, doc_key: str) -> None:
        """A closed document: drop its window start."""
        with self._lock:
            self._window_starts.pop(doc_key, None)
            self._middle_starts.pop(doc_key, None)

    # -- the request -----------------------------------------------------------------------------------------------

    def parts_for(self, req: CompletionRequest) -> PromptParts:
        """The prompt parts within `req`'s budgets, in characters: the prefix window (whose start moves in jumps, see
        runtime.complete.prompt.choose_window_start), where its middle starts (a few lines above the cursor line, kept
        while typing: choose_middle_start), the head of the suffix, the other files' snippets -- on top of the window
        while `max_context` has room for them, as the local prompt has them."""
        room = self.max_context - req.max_new_tokens - req.max_suffix_tokens - 16
        extra = sum(self.count_tokens(f"{s.path}\n{s.text}") for s in req.context)
        budget = max(16, min(req.max_prompt_tokens, max(room - extra, min(req.max_prompt_tokens, room) // 2)))
        start = self._window_start(req, budget)
        with self._lock:
            middle = choose_middle_start(req.prefix, start, self._middle_starts.get(req.doc_key), self.count_tokens)
            remember_offset(self._middle_starts, req.doc_key, middle)
        return PromptParts(prefix=req.prefix[start:], suffix=req.suffix[: req.max_suffix_tokens * CHARS_PER_TOKEN],
                           path=req.path, repo=req.repo_name, extra=[(s.path, s.text) for s in req.context],
                           middle_from=middle - start)

    def _window_start(self, req: CompletionRequest, budget: int) -> int:
        """Absolute offset of the prefix window, remembered per document; only the last 2 x budget worth of
        characters are looked at, from a line start."""
        base = max(0, len(req.prefix) - 2 * budget * CHARS_PER_TOKEN)
        if base:
            nl = req.prefix.find("\n", base)
            base = nl + 1 if nl != -1 else base
        with self._lock:
            prev = self._window_starts.get(req.doc_key)
        rel = choose_window_start(req.prefix[base:], None if prev is None or prev < base else prev - base,
                                  self.count_tokens, budget)
        with self._lock:
            remember_offset(self._window_starts, req.doc_key, base + rel)
        return base + rel

    def _run_model(self, req: CompletionRequest, cancel: threading.Event | None, t0: float) -> CompletionResult:
        """Stream from the server until post-processing has what it needs, then close the stream. Raises RemoteError
        (the server is down, answered an error, ...), after probing again when the last probe had failed."""
        if not self.ready and not self.probe().dialect:
            result = self.probe_result
            raise RemoteError(result.message, result.error_kind or "connection")  # type: ignore[arg-type]
        sent_prefix, held = split_heal(req.prefix)
        parts = self.parts_for(msgspec.structs.replace(req, prefix=sent_prefix))
        ctx = make_post_context(req.prefix, req.suffix, req.mode)
        cancel = cancel or threading.Event()
        pieces = self.remote.stream(parts, cancel, max_tokens=req.max_new_tokens, temperature=req.temperature)
        strict = bool(held.strip())  # a held-back word must be spelled; held-back spaces the answer may leave out

        def after_held(text: str) -> str | None:
            """The answer past what was held back; None when it cannot fit the cursor (yet, while streaming)."""
            if text.startswith(held):
                return text[len(held):]
            return None if strict else text

        raw, n_pieces, ended_early = "", 0, False
        try:
            for piece in pieces:
                raw += piece
                n_pieces += 1
                if strict and not (raw.startswith(held) or held.startswith(raw)):
                    break  # the answer left the word begun: nothing fits the cursor
                visible = after_held(raw)
                if visible is not None and stream_complete(visible, ctx):
                    ended_early = True
                    break
        finally:
            pieces.close()  # closes the connection: the server stops generating
        visible = after_held(raw)
        healed, raw = visible is not None, visible or ""
        stats = self.remote.last_stats
        if cancel.is_set():
            reason = "cancelled"
        elif ended_early or not healed:
            reason = "stop"
        else:
            reason = _FINISH_TO_STOP.get(stats.finish if stats else "", "eos")
        first_s = stats.first_piece_s if stats and stats.first_piece_s is not None else None
        total_s = stats.total_s if stats else time.perf_counter() - t0
        decode_s = total_s - first_s if first_s is not None else 0.0
        sent_chars = len(parts.prefix) + len(parts.suffix) + sum(len(text) for _, text in parts.extra)
        prompt_tokens = stats.prompt_tokens if stats and stats.prompt_tokens else math.ceil(sent_chars / CHARS_PER_TOKEN)
        return CompletionResult(
            text="" if reason == "cancelled" else postprocess(raw, ctx),
            raw_text=raw,
            stop_reason=reason,
            prompt_tokens=prompt_tokens,
            reused_tokens=min(stats.cached_tokens or 0, prompt_tokens) if stats else 0,
            new_tokens=n_pieces,  # best effort: servers stream about one token per event
            cpu_ms=(time.perf_counter() - t0) * 1e3,  # the wall time of the remote call
            prompt_ms=(first_s or 0.0) * 1e3,  # time to the first text: the server's prompt work plus the network
            decode_ms=decode_s * 1e3,
            cpu_tokens_per_s=(n_pieces - 1) / decode_s if n_pieces > 1 and decode_s > 0 else 0.0,
            backend=self.backend,
            context=req.context,
        )
