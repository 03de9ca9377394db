"""The decoder on ONNX Runtime: a preallocated KV cache it owns, prefill / step / truncate; and `generate`, the decode
loop, made of gpt-fast's named steps (prefill, decode one token, speculative step) plus a forced prefix (token healing).

Speed comes from doing nothing per token that is not the model: the KV cache is one buffer per layer that
GroupQueryAttention reads and writes in place (bound as both past and present, so a step copies no cache), and the
single-token step reuses one IO binding whose input arrays are updated in place.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

import msgspec
import numpy as np
import onnxruntime as ort

from .bundle import Bundle
from .errors import ModelError, WaferlineError
from .sequences import common_prefix_len
from .vocab import starts_line_break


def session_options(threads: int) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # Prompt lengths differ on every keystroke: cached memory patterns per shape and an arena that only grows made a
    # long-running server's RSS climb (measured: 230 -> 434 MB over 200 random prefills; 365 MB without both), while
    # step time did not change measurably. Freed tensors now go back to the OS.
    opts.enable_mem_pattern = False
    opts.enable_cpu_mem_arena = False
    return opts


def _return_freed_memory_to_os() -> None:
    """glibc raises its mmap threshold after large blocks are freed, so later prefill scratch (tens of MB) comes from
    per-thread heaps that are never given back: a language server's RSS went 252 -> 700 MB in 10 s of typing and kept
    creeping. A fixed threshold keeps large blocks as mmaps, returned to the OS when freed. The trim then gives back
    the free heap that parsing left behind before the session's weights arrive on top of it (the Qwen tokenizer's JSON:
    39 MB). No-op off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 << 10)  # M_MMAP_THRESHOLD = 128 KiB (glibc's initial value), fixed: no dynamic raise
        libc.mallopt(-8, 2)  # M_ARENA_MAX = 2: fewer per-thread heaps holding freed memory
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def release_loaded_weights(data_path: str) -> int:
    """Page out what loading touched in the weights file; returns how many of its mappings were advised.

    ORT maps the external data (private, per initializer) and reads every weight once to prepack it into its own
    buffers; those file pages then stay in our RSS although decode reads the packed copies (Qwen2.5-Coder-0.5B: 68 MB,
    the head's picker half; peak RSS 663 -> 601 MB). MADV_PAGEOUT keeps every byte (a page ORT wrote goes to swap or
    stays, never dropped); rows gathered later fault back in from the page cache. No-op off Linux."""
    try:
        maps = open("/proc/self/maps").read().splitlines()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    except (OSError, AttributeError):
        return 0
    advised = 0
    for line in maps:
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == data_path:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            libc.madvise(start, end - start, 21)  # MADV_PAGEOUT (Linux 5.4); EINVAL on older kernels: left as is
            advised += 1
    return advised


@contextlib.contextmanager
def _paging_out_while_loading(data_path: str, every_s: float = 0.02):
    """Page the weights file out every `every_s` while ORT builds the session (it releases the GIL meanwhile), so
    the pages it has already packed do not pile up on top of the packed copies: Qwen2.5-Coder-0.5B's peak at load
    604 -> 563 MiB (the file's 68 MB would otherwise be resident together with everything else)."""
    done = threading.Event()

    def page_out() -> None:
        while not done.wait(every_s):
            release_loaded_weights(data_path)

    worker = threading.Thread(target=page_out, name="waferline-load-pageout", daemon=True)
    worker.start()
    try:
        yield
    finally:
        done.set()
        worker.join()


class _Slot:
    """One sequence's KV cache: buffers bound in place, the token ids whose K/V they hold, the step binding."""

    def __init__(self, kv: list[ort.OrtValue]):
        self.kv = kv
        self.tokens: list[int] = []
        self.step_binding: ort.IOBinding | None = None


class Decoder:
    """ONNX session and KV caches: one slot per document (LRU, `max_slots`), so switching back to a file finds its
    prompt still cached; every call works on the current slot, chosen with `use_slot`."""

    def __init__(self, bundle: Bundle, threads: int = 2, max_context: int = 2048, max_slots: int = 1):
        _return_freed_memory_to_os()
        meta = bundle.meta
        self.bundle, self.meta = bundle, meta
        self.max_context = min(max_context, meta.context_length, 16384)
        data_path = str(bundle.path.resolve() / "model.onnx.data")
        try:
            with _paging_out_while_loading(data_path):
                self.session = ort.InferenceSession(str(bundle.model_path), session_options(threads),
                                                    providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - ORT raises a zoo of types for a damaged file
            raise ModelError(f"cannot load {bundle.model_path}: {str(exc).splitlines()[0][:300]}") from None
        release_loaded_weights(data_path)
        _return_freed_memory_to_os()  # and the graph's load-time scratch
        self.max_slots = max(1, int(max_slots))
        # single-token step: arrays updated in place, bound once per slot
        self._step_ids = np.zeros((1, 1), np.int64)
        self._step_seqlens = np.zeros((1,), np.int32)
        self._step_total = np.zeros((), np.int32)
        self._step_logits = np.zeros((1, 1, meta.vocab_size), np.float32)
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self.use_slot("")

    def use_slot(self, key: str) -> bool:
        """Make `key`'s KV cache current (the least recently used slot is recycled past max_slots).
        True when the slot already existed, i.e. its cached tokens can be reused."""
        slot = self._slots.get(key)
        found = slot is not None
        if slot is None:
            if len(self._slots) < self.max_slots:
                kv_shape = (1, self.meta.n_kv_heads, self.max_context, self.meta.head_dim)  # [B, H_kv, T_max, D]
                slot = _Slot([ort.OrtValue.ortvalue_from_numpy(np.zeros(kv_shape, np.float32))
                              for _ in range(2 * self.meta.n_layers)])
            else:
                _, slot = self._slots.popitem(last=False)
                slot.tokens = []
            self._slots[key] = slot
        self._slots.move_to_end(key)
        self._slot, self._kv, self.tokens = slot, slot.kv, slot.tokens
        if slot.step_binding is None:
            slot.step_binding = self._bind(self._step_ids, self._step_seqlens, self._step_total, np.ones(1, np.int64),
                                           self._step_logits)
        self._step_binding = slot.step_binding
        return found

    def _bind(self, ids, seqlens, total, last, logits) -> ort.IOBinding:
        b = self.session.io_binding()
        b.bind_cpu_input("input_ids", ids)
        b.bind_cpu_input("seqlens_k", seqlens)
        b.bind_cpu_input("total_sequence_length", total)
        b.bind_cpu_input("last_logits", last)
        b.bind_output("logits", "cpu", 0, np.float32, list(logits.shape), logits.ctypes.data)
        for i in range(self.meta.n_layers):
            for j, kv in enumerate(("key", "value")):
                buf = self._kv[2 * i + j]
                b.bind_ortvalue_input(f"past_key_values.{i}.{kv}", buf)
                b.bind_ortvalue_output(f"present.{i}.{kv}", buf)
        return b

    # ------------------------------------------------------------------ cache control
    def truncate(self, n: int) -> None:
        """Forget all but the first n cached tokens (their K/V stay valid; later slots get overwritten)."""
        del self.tokens[max(0, n):]

    def reset(self) -> None:
        self.tokens.clear()

    def rename_slot(self, src: str, dst: str) -> bool:
        """`src`'s cache becomes `dst`'s (dst's old one is dropped) and the current slot: a prompt prefilled aside
        takes the document's place in one step. False when `src` holds nothing."""
        slot = self._slots.pop(src, None)
        if slot is None:
            return False
        self._slots.pop(dst, None)
        self._slots[dst] = slot
        self.use_slot(dst)
        return True

    def drop_slot(self, key: str) -> None:
        """Forget a document's cache (closed file); its buffers are freed unless it is the current slot."""
        if key in self._slots and self._slots[key] is not self._slot:
            del self._slots[key]

    # ------------------------------------------------------------------ evaluation
    def _run(self, ids: Sequence[int], n_logits: int, cancel: threading.Event | None = None) -> np.ndarray | None:
        """Append ids to the cache; logits [n_logits, vocab] for the last n_logits of them. None when `cancel` (a
        runtime.cancel.Interrupt) stopped the call midway: the cache then holds what it held before."""
        past = len(self.tokens)
        total = past + len(ids)
        if total > self.max_context:
            raise WaferlineError(f"context of {total} tokens exceeds this decoder's {self.max_context}")
        if len(ids) == 1 and n_logits == 1:
            self._step_ids[0, 0] = ids[0]
            self._step_seqlens[0] = total - 1
            self._step_total[()] = total
            self.session.run_with_iobinding(self._step_binding)
            self.tokens.append(int(ids[0]))
            return self._step_logits[0]
        logits = np.empty((1, n_logits, self.meta.vocab_size), np.float32)
        binding = self._bind(
            np.asarray([ids], np.int64), np.array([total - 1], np.int32), np.array(total, np.int32),
            np.array([n_logits], np.int64), logits,
        )
        interrupting = getattr(cancel, "interrupting", None)
        if interrupting is None:
            self.session.run_with_iobinding(binding)
        else:
            run = ort.RunOptions()
            with interrupting(lambda: setattr(run, "terminate", True)):
                try:
                    self.session.run_with_iobinding(binding, run)
                except Exception:  # noqa: BLE001 - ORT reports a terminated run as a RuntimeError ("Exiting due to ...")
                    if run.terminate:
                        return None  # K/V written past `past` are not counted in self.tokens: overwritten later
                    raise
        self.tokens.extend(int(t) for t in ids)
        return logits[0]

    def prefill(self, ids: Sequence[int], chunk: int = 256, cancel: threading.Event | None = None) -> np.ndarray | None:
        """Make the cache hold exactly `ids`, reusing the longest common prefix; logits [vocab] of the last id.
        A set `cancel` stops between chunks (None returned; the cache keeps what was evaluated), and inside one when it
        is a runtime.cancel.Interrupt (that chunk is lost; a waiting request goes first at once). Chunks of 256 rather
        than 512: 1,000 prompt tokens at 1087-1146 vs 994-1045 tok/s (Qwen2.5-Coder-0.5B; SmolLM2 604-625 vs 571-600)
        and a peak 20-25 MB lower (the activations of half as many rows)."""
        if not ids:
            raise WaferlineError("cannot prefill an empty prompt")
        keep = min(common_prefix_len(self.tokens, ids), len(ids) - 1)  # the last id is always evaluated, for its logits
        self.truncate(keep)
        rest = list(ids[keep:])
        for start in range(0, len(rest), chunk):
            if cancel is not None and cancel.is_set():
                return None
            logits = self._run(rest[start : start + chunk], 1, cancel)
            if logits is None:
                return None
        return logits[-1]

    def step(self, token_id: int) -> np.ndarray:
        """Feed one token; logits [vocab] for the next."""
        return self._run([token_id], 1)[0]

    def verify(self, ids: Sequence[int]) -> np.ndarray:
        """Feed several tokens at once; logits [len(ids), vocab] after each (speculative verification)."""
        return self._run(list(ids), len(ids))


# ---------------------------------------------------------------------- decoding


class GenerateOptions(msgspec.Struct, kw_only=True):
    max_new_tokens: int = 64  # counts forced tokens too, but at least one token is decoded after them
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop_token_ids: list[int] = []
    stop_strings: list[str] = []  # matched in the text decoded after the forced tokens
    speculate: bool = True
    draft_tokens: int = 8
    ngram: int = 3
    min_ngram: int = 2
    forced_prefix: str = ""  # the output starts with this text (token healing: see force_prefix)
    stop_in_forced: bool = True  # a stop string in what the forced tokens add past forced_prefix ends generation there
    # the first text after forced_prefix may not be a line break: line mode at `f(`, where the model's favourite
    # (arguments on the next line) would show nothing, takes its best continuation on this line
    same_line: bool = False
    # stop as soon as the output ends in a repeated pattern (ends_in_repetition): stop_reason "repetition"
    stop_repetition: bool = False


class GenerateResult(msgspec.Struct, kw_only=True):
    prompt_ids: list[int]
    token_ids: list[int]  # decoded after the forced tokens
    text: str  # of token_ids, cut at a stop string
    reused_tokens: int
    prompt_s: float
    decode_s: float
    prompt_tokens_per_s: float
    decode_tokens_per_s: float
    stop_reason: str  # "eos" | "stop" | "max_tokens" | "cancelled" | "repetition" | "unforced" (no tokens spell forced_prefix)
    drafted: int = 0
    accepted: int = 0
    misses: int = 0  # verify steps that rejected a drafted token (runtime/acceptance.py)
    forced_ids: list[int] = []  # the tokens that spell forced_prefix
    forced_text: str = ""  # what they add past it (the last one's text may run on: " =" for " ")


def choose(logits: np.ndarray, opts: GenerateOptions, rng: np.random.Generator) -> int:
    """Greedy, or temperature + top-p (nucleus) sampling."""
    if opts.temperature <= 0.0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / opts.temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    if opts.top_p < 1.0:
        order = np.argsort(-p)
        cut = int(np.searchsorted(np.cumsum(p[order]), opts.top_p)) + 1
        keep = order[:cut]
        p = np.zeros_like(p)
        p[keep] = 1.0
        p *= np.exp(z - z.max())
        p /= p.sum()
    return int(rng.choice(p.size, p=p))


class PromptLookup:
    """Prompt-lookup drafting: the tokens that followed the latest earlier occurrence of the current tail n-gram
    (n = ngram..1), in the lookup source (e.g. the whole document) followed by the sequence generated so far.

    An index from n-gram to where it last ended makes each draft O(ngram) instead of a scan of the document.
    A single matching token predicts too little (measured on SmolLM2, repeated code: 1-gram drafts lowered effective
    decode speed ~7%), so matches shorter than min_ngram draft nothing.
    """

    def __init__(self, source: Sequence[int], ngram: int, min_ngram: int = 2):
        self.ngram, self.min_ngram = ngram, min(min_ngram, ngram)
        self.tokens: list[int] = list(source)
        self.last: dict[tuple[int, ...], int] = {}
        self.indexed = 0  # n-grams ending at positions <= indexed are in self.last

    def extend(self, ids: Sequence[int]) -> None:
        self.tokens.extend(ids)

    def draft(self, k: int) -> list[int]:
        toks, end = self.tokens, len(self.tokens)
        for stop in range(self.indexed + 1, end):  # index every n-gram that ends before the tail does
            for n in range(1, min(self.ngram, stop) + 1):
                self.last[tuple(toks[stop - n : stop])] = stop
        self.indexed = max(self.indexed, end - 1)
        for n in range(min(self.ngram, end), self.min_ngram - 1, -1):
            at = self.last.get(tuple(toks[end - n :]))
            if at is not None:
                return toks[at : at + k]
        return []


def lookup_draft(history: Sequence[int], source: Sequence[int], ngram: int, k: int, min_ngram: int = 2) -> list[int]:
    """One-shot draft of k tokens for `history` given `source` (see PromptLookup)."""
    lookup = PromptLookup(source, ngram, min_ngram)
    lookup.extend(history)
    return lookup.draft(k)


class _TextStream:
    """Incremental detokenization that never emits half a UTF-8 character. `head` goes out with the first piece."""

    def __init__(self, tokenizer, on_text: Callable[[str], None] | None, head: str = ""):
        self.tokenizer, self.on_text, self.sent = tokenizer, on_text, 0
        self.unsent_head = head
        self.text = ""

    def update(self, ids: list[int]) -> str:
        self.text = self.tokenizer.decode(ids, skip_special_tokens=False)
        if self.on_text is not None and not self.text.endswith("\ufffd") and len(self.text) > self.sent:
            self.on_text(self.unsent_head + self.text[self.sent :])
            self.unsent_head = ""
            self.sent = len(self.text)
        return self.text


# ---------------------------------------------------------------------- the steps of generate (named as in gpt-fast)

MAX_FORCED_TOKENS = 16  # a forced prefix is the few characters a prompt backed off: needing more tokens is no fit


def prefill(decoder: Decoder, prompt_ids: list[int]) -> tuple[np.ndarray, int]:
    """Evaluate the prompt, reusing the longest cached prefix: (logits after its last token, tokens reused)."""
    reused = min(common_prefix_len(decoder.tokens, prompt_ids), len(prompt_ids) - 1)
    return decoder.prefill(prompt_ids), reused


def decode_one_token(decoder: Decoder, token: int) -> np.ndarray:
    """Evaluate one token: logits for the next."""
    return decoder.step(token)


def force_prefix(decoder: Decoder, logits: np.ndarray, prefix: str,
                 cancel: threading.Event | None = None, same_line: bool = False) -> tuple[list[int], str] | None:
    """Token healing: spell `prefix` with the most likely tokens consistent with it (greedy, whatever the sampling
    options), evaluating all but the last: (their ids, what the last one adds past `prefix`; with `same_line` never a
    line break). None when cancelled or when the vocabulary cannot spell it within MAX_FORCED_TOKENS."""
    texts = decoder.bundle.token_texts
    ids: list[int] = []
    remaining = prefix
    for _ in range(MAX_FORCED_TOKENS):
        cand = texts.consistent_with(remaining)
        if same_line:
            cand = cand[[not (t.startswith(remaining) and starts_line_break(t[len(remaining) :]))
                         for t in (texts.text[c] for c in cand)]] if cand.size else cand
        if cand.size == 0 or (cancel is not None and cancel.is_set()):
            return None
        tok = int(cand[int(np.argmax(np.asarray(logits)[cand]))])
        ids.append(tok)
        text = texts.text[tok]
        if text.startswith(remaining):
            return ids, text[len(remaining) :]
        remaining = remaining[len(text) :]
        logits = decode_one_token(decoder, tok)
    return None


def speculative_step(decoder: Decoder, token: int, draft: list[int]) -> tuple[int, np.ndarray]:
    """Evaluate `token` and a draft in one batch and keep the drafted tokens greedy decoding would have chosen:
    (how many, logits after the last one kept). The cache past them is dropped."""
    base = len(decoder.tokens)
    rows = decoder.verify([token] + draft)  # row j holds the model's choice after draft[j - 1]
    n_ok = 0
    while n_ok < len(draft) and int(np.argmax(rows[n_ok])) == draft[n_ok]:
        n_ok += 1
    decoder.truncate(base + 1 + n_ok)
    return n_ok, rows[n_ok]


# (longest pattern, tail it must fill), GitHub Copilot's repetition rules (vscode-copilot-chat,
# completions-core/.../suggestions/anomalyDetection.ts): ten of one token, or the last 30/45/60 tokens one pattern
# of at most 10/20/30 tokens
REPETITION_RULES = ((1, 10), (10, 30), (20, 45), (30, 60))


def ends_in_repetition(ids: Sequence[int]) -> bool:
    """True when `ids` ends in one short pattern repeated (REPETITION_RULES): the model is looping, not writing.
    The smallest period of the last n tokens is n - pi[n - 1], pi the KMP prefix function of the tail reversed."""
    tail = list(ids[-REPETITION_RULES[-1][1]:])[::-1]
    pi = [0] * len(tail)
    for i in range(1, len(tail)):
        k = pi[i - 1]
        while k and tail[i] != tail[k]:
            k = pi[k - 1]
        pi[i] = k + (tail[i] == tail[k])
    return any(len(tail) >= n and n - pi[n - 1] <= period for period, n in REPETITION_RULES)


def _cut_at_stop(text: str, stop_strings: Sequence[str]) -> str:
    hits = [text.find(s) for s in stop_strings if s in text]
    return text[: min(hits)] if hits else text


def generate(
    decoder: Decoder,
    prompt_ids: Sequence[int],
    opts: GenerateOptions | None = None,
    cancel: threading.Event | None = None,
    on_text: Callable[[str], None] | None = None,
    lookup_ids: Sequence[int] | None = None,
) -> GenerateResult:
    """Prefill, spell the forced prefix, then decode one token or, greedy only, one speculative step (a prompt-lookup
    draft from `lookup_ids` + the sequence so far) at a time until a stop rule. `on_text` streams forced_text + text."""
    opts = opts or GenerateOptions()
    rng = np.random.default_rng(opts.seed)
    stop_ids = set(opts.stop_token_ids) | set(decoder.meta.eos_ids)
    prompt_ids = list(prompt_ids)
    t0 = time.perf_counter()
    logits, reused = prefill(decoder, prompt_ids)
    reason: str | None = None
    forced, forced_text, budget = [], "", opts.max_new_tokens
    if opts.forced_prefix:
        spelled = force_prefix(decoder, logits, opts.forced_prefix, cancel, opts.same_line)
        if spelled is None:
            reason = "cancelled" if cancel is not None and cancel.is_set() else "unforced"
        else:
            forced, forced_text = spelled
            budget = max(1, budget - len(forced))
            if opts.stop_in_forced and any(s in forced_text for s in opts.stop_strings):
                reason = "stop"
            else:
                logits = decode_one_token(decoder, forced[-1])
    out: list[int] = []
    stream = _TextStream(decoder.bundle.tokenizer, on_text, head=forced_text)
    speculate = opts.speculate and opts.temperature <= 0.0
    lookup = PromptLookup(list(lookup_ids) if lookup_ids is not None else [], opts.ngram, opts.min_ngram) if speculate else None
    if lookup is not None:
        lookup.extend(prompt_ids + forced)
    drafted = accepted = misses = 0
    t_first = None
    while reason is None and len(out) < budget:
        if cancel is not None and cancel.is_set():
            reason = "cancelled"
            break
        if opts.same_line and not out and not forced_text.strip(" \t"):
            logits = np.array(logits, dtype=np.float32)  # a copy: the decoder's buffer stays as it is
            logits[decoder.bundle.token_texts.line_break_ids] = -np.inf
        token = choose(logits, opts, rng)
        if t_first is None:
            t_first = time.perf_counter()
        if token in stop_ids:
            reason = "eos"
            break
        out.append(token)
        if lookup is not None:
            lookup.extend([token])
        text = stream.update(out)
        if any(s in text for s in opts.stop_strings):
            reason = "stop"
            break
        if opts.stop_repetition and ends_in_repetition(out):
            reason = "repetition"
            break
        if len(out) >= budget:
            break
        room = min(opts.draft_tokens, budget - len(out) - 1, decoder.max_context - len(decoder.tokens) - 2)
        draft = lookup.draft(room) if lookup is not None and room > 0 else []
        if not draft:
            logits = decode_one_token(decoder, token)
            continue
        n_ok, logits = speculative_step(decoder, token, draft)
        drafted += len(draft)
        accepted += n_ok
        misses += n_ok < len(draft)
        for d in draft[:n_ok]:
            if d in stop_ids:
                reason = "eos"
                break
            out.append(d)
            lookup.extend([d])
            if len(out) >= budget:
                break
        text = stream.update(out)
        if reason is None and any(s in text for s in opts.stop_strings):
            reason = "stop"
        elif reason is None and opts.stop_repetition and ends_in_repetition(out):
            reason = "repetition"
    reason = reason or "max_tokens"
    t2 = time.perf_counter()
    stream.update(out)
    text = _cut_at_stop(stream.text, opts.stop_strings) if reason == "stop" else stream.text
    prompt_s = (t_first or t2) - t0
    decode_s = t2 - (t_first or t2)
    evaluated = len(prompt_ids) - reused
    return GenerateResult(
        prompt_ids=prompt_ids,
        token_ids=out,
        text=text,
        reused_tokens=reused,
        prompt_s=prompt_s,
        decode_s=decode_s,
        prompt_tokens_per_s=evaluated / prompt_s if prompt_s > 0 else 0.0,
        decode_tokens_per_s=(len(out) - 1) / decode_s if decode_s > 0 and len(out) > 1 else 0.0,
        stop_reason=reason,
        drafted=drafted,
        accepted=accepted,
        misses=misses,
        forced_ids=forced,
        forced_text=forced_text,
    )
