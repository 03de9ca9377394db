"""The completion service: request -> cached answer, or prompt plan -> generate -> post-processing -> suggestion.

No LSP here (DESIGN.md): callers hand in plain strings (prefix before the cursor, suffix after it) and get a
`CompletionResult` back. One model, one decoder with a KV slot per document, one caller at a time (the LSP server
runs it in a single worker thread); a document's stable prompt can be prefilled ahead of its requests (`warm`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from runtime.complete.cache import ResultCache
from runtime.complete.flow import CompletionFlow
from runtime.complete.postprocess import block_ended, make_post_context, postprocess, scan_brackets
from runtime.complete.prompt import PromptPlan, PromptPlanner, control_token_ids
from runtime.complete.request import CompletionRequest, CompletionResult
from runtime.sequences import common_prefix_len

if TYPE_CHECKING:  # runtime.engine/bundle are imported lazily: the pure parts must work without them
    from runtime.bundle import Bundle

COLD_SLOT = "\0cold"  # suffix of a document's second KV slot, the short cold-start window
NEXT_SLOT = "\0next"  # suffix of the slot where a prompt with new context is prefilled aside (warm_aside)


class _StopFlag:
    """Duck-typed threading.Event for generate(): set by the caller's cancel Event or by our own stop rule."""

    def __init__(self, outer: threading.Event | None):
        self.outer = outer
        self.stopped = False

    def is_set(self) -> bool:
        return self.stopped or (self.outer is not None and self.outer.is_set())

    def set(self) -> None:
        self.stopped = True

    def wait(self, timeout: float | None = None) -> bool:  # present for Event compatibility
        return self.is_set()


class CompletionService(CompletionFlow):
    """One model, one KV cache per document, one caller at a time: the local ONNX decoder writes the text."""

    def __init__(self, bundle: Bundle, decoder, *, cache_size: int = 32):
        self.bundle = bundle
        self.meta = bundle.meta
        self.tokenizer = bundle.tokenizer
        self.decoder = decoder
        self.cache = ResultCache(cache_size)
        self.stop_ids = control_token_ids(self.meta, self.tokenizer)
        self.prompts = PromptPlanner(self.meta, self.tokenizer, self.stop_ids)
        self.max_context = int(getattr(decoder, "max_context", 0) or getattr(self.meta, "context_length", 2048) or 2048)
        self.acceptance = None  # AcceptanceLedger of a catalog model (load()): its drafts' acceptance on real code

    @classmethod
    def load(cls, model: str, *, threads: int = 2, max_context: int = 2048, kv_slots: int = 4) -> CompletionService:
        """Resolve a model name or path, load its bundle, open a Decoder with `kv_slots` document caches.
        Raises runtime.errors.WaferlineError."""
        from runtime.bundle import load_bundle
        from runtime.acceptance import AcceptanceLedger
        from runtime.engine import Decoder
        from runtime.models import cache_dir, resolve_model

        path = resolve_model(model)
        bundle = load_bundle(path)
        decoder = Decoder(bundle, threads=threads, max_context=max_context, max_slots=kv_slots)
        svc = cls(bundle, decoder)
        svc.max_context = max_context
        if path.resolve().parent == (cache_dir() / "models").resolve():  # a catalog model, not a test's or a user's scratch bundle
            import atexit

            svc.acceptance = AcceptanceLedger(path.name)
            atexit.register(svc.acceptance.flush)
        return svc

    def encode(self, text: str) -> list[int]:
        return self.prompts.encode(text)

    def count_tokens(self, text: str) -> int:
        return self.prompts.count_tokens(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    # -- completion ----------------------------------------------------------------------------------------------

    def _run_model(self, req: CompletionRequest, cancel: threading.Event | None, t0: float) -> CompletionResult:
        """Plan, generate with the backed-off text as forced prefix (token healing), post-process."""
        from runtime.engine import GenerateOptions, generate

        plan, cold = self.plan_for_cache(req)  # leaves the slot it planned for current
        ctx = make_post_context(req.prefix, req.suffix, req.mode)
        stop = _StopFlag(cancel)
        reused = common_prefix_len(getattr(self.decoder, "tokens", []), plan.ids)
        streamed: list[str] = []

        def on_text(piece: str) -> None:
            streamed.append(piece)
            if req.mode == "block" and block_ended("".join(streamed), ctx):
                stop.set()

        opts = GenerateOptions(
            max_new_tokens=max(1, min(req.max_new_tokens, self.max_context - len(plan.ids) - 2)),
            temperature=req.temperature,
            seed=req.seed,
            stop_token_ids=self.stop_ids,
            stop_strings=["\n"] if req.mode == "line" else ["```", "\n\n\n"],
            speculate=req.speculate,
            forced_prefix=plan.backoff,
            # line mode: a healed token past the line end leaves nothing to write; block mode: a healed run of blank
            # lines ("\n\n\n") comes before the block, it does not end it
            stop_in_forced=req.mode == "line",
            # line mode inside a bracket this line opened (`f(`, `[x,`): the rest of this line, never nothing
            same_line=req.mode == "line" and bool(scan_brackets(ctx.line_prefix)),
            # a loop (`"a", "a", ...`, a line of one token) is cut off as it starts, not run to max_new_tokens
            # (64 tokens: 1.3 s on the Xeon, 1.84 s on the EPYC), and shown as nothing, as Copilot drops it
            stop_repetition=True,
        )
        gen = generate(self.decoder, plan.ids, opts, cancel=stop, on_text=on_text, lookup_ids=plan.lookup_ids)
        if self.acceptance is not None:
            self.acceptance.add(gen.drafted, gen.accepted, gen.misses)
        if plan.backoff and not gen.forced_ids:  # cancelled while healing, or no tokens spell the backed-off text
            reason = "cancelled" if gen.stop_reason == "cancelled" else "stop"
            return self._nothing("", reason, t0, len(plan.ids), reused, context=plan.context, cold=cold)
        if req.mode == "line" and "\n" in gen.forced_text:  # the healed token ends the line: nothing left to write
            return self._nothing(gen.forced_text, "stop", t0, len(plan.ids), reused, len(gen.forced_ids), plan.context,
                                 cold)
        new_ids = gen.forced_ids + gen.token_ids
        full = self.decode(new_ids)
        raw = full[len(plan.backoff) :] if full.startswith(plan.backoff) else ""
        reason = gen.stop_reason
        if reason == "cancelled" and stop.stopped and not (cancel is not None and cancel.is_set()):
            reason = "stop"  # our block-end rule, not the caller
        # held on the line and never reached its end, or looping: a runaway (`"a", "a", "a", ...`), not a suggestion
        runaway = (opts.same_line and reason == "max_tokens") or reason == "repetition"
        return CompletionResult(
            text="" if reason == "cancelled" or runaway else postprocess(raw, ctx),
            raw_text=raw,
            stop_reason=reason,
            prompt_tokens=len(plan.ids),
            reused_tokens=min(reused, len(plan.ids)),
            new_tokens=len(new_ids),
            cpu_ms=(time.perf_counter() - t0) * 1e3,
            prompt_ms=gen.prompt_s * 1e3,
            decode_ms=gen.decode_s * 1e3,
            cpu_tokens_per_s=gen.decode_tokens_per_s,
            drafted=gen.drafted,
            accepted=gen.accepted,
            cold=cold,
            context=plan.context,
        )

    @staticmethod
    def _nothing(raw: str, reason: str, t0: float, prompt_tokens: int, reused: int,
                 new_tokens: int = 0, context: list | None = None, cold: bool = False) -> CompletionResult:
        """An empty suggestion after the prompt was evaluated (no decode timings)."""
        return CompletionResult(
            text="",
            raw_text=raw,
            stop_reason=reason,
            prompt_tokens=prompt_tokens,
            reused_tokens=min(reused, prompt_tokens),
            new_tokens=new_tokens,
            cpu_ms=(time.perf_counter() - t0) * 1e3,
            cold=cold,
            context=context or [],
        )

    # -- prompt plans and KV slots -------------------------------------------------------------------------------

    def plan_for_cache(self, req: CompletionRequest) -> tuple[PromptPlan, bool]:
        """The full plan in the document's KV slot, or -- when its uncached part is over `req.cold_prompt_tokens` --
        a short-window plan in the document's cold slot, which answers within the cold-start latency; True then.
        Leaves the slot it planned for current."""
        full = self.plan_prompt(req)
        short = self._cold_plan(req, full)
        return (full, False) if short is None else (short, True)

    def _cold_plan(self, req: CompletionRequest, full: PromptPlan) -> PromptPlan | None:
        """Makes the document's slot current; when more than `req.cold_prompt_tokens` of `full` are not in it, the
        short-window plan (3/4 of that budget before the cursor, 1/4 after, no cross-file context: it would cost
        the cold start its latency) with the document's cold slot current.
        The short window has a slot of its own, so prefilling the full window in the background never evicts it,
        and window and middle starts of its own (remembered under the cold slot's key), so it too moves in jumps:
        where the full window is not in yet (a slow machine: 209 prompt tok/s measured on a 2-core EPYC, so a
        1,300-token window takes 6 s of idle time a typist does not leave), a request slid the short window at
        every new line and evaluated all of it again (300 tokens, 1.4 s there)."""
        self._use_slot(req.doc_key)
        cached = common_prefix_len(getattr(self.decoder, "tokens", []), full.ids)
        if req.cold_prompt_tokens <= 0 or len(full.ids) - cached <= req.cold_prompt_tokens:
            return None
        short = msgspec.structs.replace(req, doc_key=req.doc_key + COLD_SLOT,
                                        max_prompt_tokens=max(16, req.cold_prompt_tokens * 3 // 4),
                                        max_suffix_tokens=min(req.max_suffix_tokens, req.cold_prompt_tokens // 4),
                                        context=[])  # other files' snippets wait for the full prompt
        self._use_slot(short.doc_key)
        return self.plan_prompt(short)

    def plan_prompt(self, req: CompletionRequest) -> PromptPlan:
        """Token ids for `req` (see PromptPlanner.plan); the document's window and middle starts are remembered."""
        return self.prompts.plan(req, self.max_context)

    def _use_slot(self, doc_key: str) -> None:
        use = getattr(self.decoder, "use_slot", None)  # test doubles have one cache
        if use is not None:
            use(doc_key)

    def warm(self, req: CompletionRequest, cancel: threading.Event | None = None, chunk: int = 64,
             at_cursor: bool = True) -> int:
        """Prefill the part of `req`'s prompt that stays put while the user types there into the document's KV slot,
        so the request that follows evaluates only what is new: through `<|fim_middle|>` when the cursor is known
        (`at_cursor`), else only the header and the lines above it (a file just opened). Small chunks: a real
        request cancels this within one chunk. Returns the tokens now cached."""
        if not req.prefix.strip():
            return 0
        full = self.plan_prompt(req)
        if at_cursor and req.cold_prompt_tokens > 0:
            short = self._cold_plan(req, full)
            if short is not None:  # first the short window a request would use right now (its own slot)
                self._prefill_stable(short, at_cursor, cancel, chunk)
        self._use_slot(req.doc_key)
        return self._prefill_stable(full, at_cursor, cancel, chunk)

    def warm_aside(self, req: CompletionRequest, cancel: threading.Event | None = None, chunk: int = 64) -> bool:
        """Prefill `req` -- the document with other context, or with its middle restarted when that is ripe
        (PromptPlanner.middle_ripe) -- into a spare slot while the document's own slot keeps serving the prompt it
        holds; once all of it through `<|fim_middle|>` is in, the spare becomes the document's slot and its layout the
        document's. A context change or a full middle then never makes a request evaluate the whole file (or suffix)
        again. True when swapped; a cancelled call leaves its part in the spare, and the next call goes on from there."""
        rename = getattr(self.decoder, "rename_slot", None)
        if rename is None or not req.prefix.strip():
            return False
        plan = self.prompts.plan(req, self.max_context, remember=False, restart_middle=self.prompts.middle_ripe(req))
        self._use_slot(req.doc_key + NEXT_SLOT)
        done = (self._prefill_stable(plan, True, cancel, chunk) >= len(self._stable_ids(plan, True))
                and not (cancel is not None and cancel.is_set()))
        if done and plan.fim and len(plan.ids) > 1:
            # the middle's lines typed so far too (all but the last token, which the next key changes): the first
            # request after the swap then evaluates what was typed since, not the whole middle (up to 53 tokens);
            # stopped midway, the swap still happens
            self.decoder.prefill(plan.ids[:-1], chunk=chunk, cancel=cancel)
        if done and rename(req.doc_key + NEXT_SLOT, req.doc_key):
            self.prompts.adopt(req.doc_key, plan)
            return True
        self._use_slot(req.doc_key)
        return False

    def middle_ripe(self, req: CompletionRequest) -> bool:
        """See PromptPlanner.middle_ripe: cheap (a few lines tokenized), asked after each answer."""
        return self.prompts.middle_ripe(req)

    def _stable_ids(self, plan: PromptPlan, at_cursor: bool) -> list[int]:
        """What stays put while the user types at the cursor (`at_cursor`) or anywhere in the file."""
        if not plan.fim:
            return plan.ids
        stop_at = self.meta.fim_middle_id if at_cursor else self.meta.fim_suffix_id
        return plan.ids[: plan.ids.index(stop_at) + (1 if at_cursor else 0)]

    def _prefill_stable(self, plan: PromptPlan, at_cursor: bool, cancel: threading.Event | None, chunk: int) -> int:
        """Prefill the stable part unless the slot holds it already: prefill makes the cache hold exactly its ids, so
        it would cut off the middle typed after it, and the next request evaluated that again (56-80 tokens, requests
        of 237-502 ms on the 2-core EPYC, after every answer the idle warm-up followed)."""
        stable = self._stable_ids(plan, at_cursor)
        cached = common_prefix_len(getattr(self.decoder, "tokens", []), stable)
        if cached < len(stable) and not (cancel is not None and cancel.is_set()):
            self.decoder.prefill(stable, chunk=chunk, cancel=cancel)
            cached = common_prefix_len(getattr(self.decoder, "tokens", []), stable)
        return cached

    def forget(self, doc_key: str) -> None:
        """A closed document: drop its KV slots and window state."""
        self.prompts.forget(doc_key)
        self.prompts.forget(doc_key + COLD_SLOT)
        drop = getattr(self.decoder, "drop_slot", None)
        if drop is not None:
            drop(doc_key)
            drop(doc_key + COLD_SLOT)
            drop(doc_key + NEXT_SLOT)
