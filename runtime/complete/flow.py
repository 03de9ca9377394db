"""What every completion service does before and after its model: skip rules, then the result cache (repeats and
typing along a shown suggestion), then the model -- whichever backend writes the text, these answer the same."""

from __future__ import annotations

import threading
import time

from runtime.complete.cache import ResultCache
from runtime.complete.postprocess import is_mid_word
from runtime.complete.prompt import visible_chars
from runtime.complete.request import CompletionRequest, CompletionResult


class CompletionFlow:
    """Skip rules -> cache -> `_run_model` (the one step a backend supplies) -> cache. Subclasses set `cache`."""

    backend = "local"  # named in each result: which engine wrote it
    cache: ResultCache

    def complete(self, req: CompletionRequest, cancel: threading.Event | None = None) -> CompletionResult:
        """Suggest text for the cursor. Never raises on model output; a set `cancel` ends decoding at the next token.
        A remote backend's failure raises runtime.remote.RemoteError (nothing is cached then)."""
        t0 = time.perf_counter()
        if is_mid_word(req.prefix, req.suffix):
            return CompletionResult(text="", stop_reason="skipped", skipped="mid-word", backend=self.backend)
        if not req.prefix.strip():
            return CompletionResult(text="", stop_reason="skipped", skipped="empty-prefix", backend=self.backend)
        okey = self._options_key(req)
        if req.temperature == 0.0:
            hit = self.cache.get(req.prefix, req.suffix, okey, visible_chars(req))
            if hit is not None:
                return CompletionResult(text=hit, raw_text=hit, stop_reason="cached", cached=True, backend=self.backend,
                                        cpu_ms=(time.perf_counter() - t0) * 1e3)
        res = self._run_model(req, cancel, t0)
        if res.stop_reason != "cancelled" and req.temperature == 0.0:
            self.cache.put(req.prefix, req.suffix, okey, res.text, visible_chars(req))
        return res

    def _options_key(self, req: CompletionRequest) -> tuple:
        """Everything besides the text that changes the answer: a different context is a different prompt."""
        context = hash(tuple((s.path, s.text) for s in req.context))
        return (req.mode, req.max_new_tokens, req.max_prompt_tokens, round(req.temperature, 4), req.seed, req.path, context)

    def _run_model(self, req: CompletionRequest, cancel: threading.Event | None, t0: float) -> CompletionResult:
        raise NotImplementedError
