"""Decoder and decode loop on a tiny generated model: KV reuse, truncation, speculation, stop rules, cancel, streaming."""

import contextlib
import threading

import numpy as np
import pytest

from runtime.bundle import load_bundle
from runtime.cancel import Interrupt
from runtime.engine import Decoder, GenerateOptions, generate, lookup_draft
from runtime.errors import WaferlineError
from runtime.sequences import common_prefix_len

CODE = "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n\n\n"


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


@pytest.fixture()
def decoder(bundle):
    return Decoder(bundle, max_context=512)


def ids_of(bundle, text):
    return bundle.tokenizer.encode(text).ids


def test_prefix_reuse_gives_same_logits(bundle, decoder):
    ids = ids_of(bundle, CODE)
    fresh = decoder.prefill(ids).copy()
    decoder.prefill(ids[:5])  # move the cache elsewhere, then back: only the new tail is evaluated
    assert decoder.tokens == ids[:5]
    again = decoder.prefill(ids)
    np.testing.assert_allclose(again, fresh, atol=1e-4)
    assert common_prefix_len(decoder.tokens, ids) == len(ids)


def test_truncate_then_step_matches(bundle, decoder):
    ids = ids_of(bundle, CODE)
    want = decoder.prefill(ids).copy()
    decoder.truncate(len(ids) - 1)
    got = decoder.step(ids[-1])
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_speculative_equals_plain_greedy(bundle, decoder):
    prompt = ids_of(bundle, CODE * 2)
    plain = generate(decoder, prompt, GenerateOptions(max_new_tokens=40, speculate=False))
    decoder.reset()
    spec = generate(decoder, prompt, GenerateOptions(max_new_tokens=40, speculate=True))
    assert spec.token_ids == plain.token_ids
    assert spec.drafted > 0  # the draft path really ran
    # every verify step that did not keep its whole draft is one miss; tokens after a miss were never tested
    assert spec.accepted + spec.misses <= spec.drafted and 0 <= spec.misses <= spec.drafted
    assert plain.drafted == plain.accepted == plain.misses == 0
    assert len(plain.token_ids) == 40


def test_forced_prefix_is_spelled_first(bundle, decoder):
    """Token healing: the first tokens spell the forced prefix (the last may run past it), then decoding goes on."""
    prompt = ids_of(bundle, CODE)
    r = generate(decoder, prompt, GenerateOptions(max_new_tokens=8, speculate=False, forced_prefix="    ret"))
    assert r.stop_reason == "max_tokens" and r.forced_ids
    assert "".join(bundle.token_texts.text[i] for i in r.forced_ids) == "    ret" + r.forced_text
    assert len(r.forced_ids) + len(r.token_ids) == 8
    assert decoder.tokens[len(prompt) : len(prompt) + len(r.forced_ids)] == r.forced_ids


def test_lookup_draft_copies_what_followed():
    history = [1, 2, 3, 4, 5, 9, 2, 3]
    assert lookup_draft(history, history, ngram=2, k=3) == [4, 5, 9]
    assert lookup_draft([7, 8], [1, 7, 8, 6, 5], ngram=2, k=2) == [6, 5]
    assert lookup_draft([42], [1, 2, 3], ngram=3, k=4) == []
    assert lookup_draft([9, 3], [1, 3, 4], ngram=3, k=2) == []  # one matching token is too weak a hint
    assert lookup_draft([9, 3], [1, 3, 4], ngram=3, k=2, min_ngram=1) == [4, 9]


def test_stop_strings_and_max_tokens(bundle, decoder):
    prompt = ids_of(bundle, CODE)
    free = generate(decoder, prompt, GenerateOptions(max_new_tokens=12, speculate=False))
    assert free.stop_reason == "max_tokens" and len(free.token_ids) == 12
    stop = free.text[3:6]
    assert stop.strip(), free.text
    decoder.reset()
    stopped = generate(decoder, prompt, GenerateOptions(max_new_tokens=12, stop_strings=[stop], speculate=False))
    assert stopped.stop_reason == "stop"
    assert stop not in stopped.text and free.text.startswith(stopped.text)


def test_cancel_flag_is_checked_every_token(bundle, decoder):
    cancel = threading.Event()
    seen = []

    def on_text(s):
        seen.append(s)
        if len(seen) == 3:
            cancel.set()

    r = generate(decoder, ids_of(bundle, CODE), GenerateOptions(max_new_tokens=50, speculate=False), cancel=cancel, on_text=on_text)
    assert r.stop_reason == "cancelled"
    assert len(r.token_ids) <= 4


def test_stream_concatenates_to_text(bundle, decoder):
    parts = []
    r = generate(decoder, ids_of(bundle, CODE), GenerateOptions(max_new_tokens=20), on_text=parts.append)
    assert "".join(parts) == r.text


def test_sampling_is_seeded(bundle, decoder):
    prompt = ids_of(bundle, CODE)
    opts = GenerateOptions(max_new_tokens=15, temperature=1.0, top_p=0.9, seed=7)
    a = generate(decoder, prompt, opts)
    decoder.reset()
    b = generate(decoder, prompt, opts)
    assert a.token_ids == b.token_ids
    c = generate(decoder, prompt, GenerateOptions(max_new_tokens=15, temperature=1.0, seed=8))
    greedy = generate(decoder, prompt, GenerateOptions(max_new_tokens=15, speculate=False))
    assert a.token_ids != greedy.token_ids or c.token_ids != greedy.token_ids


def test_context_overflow_is_a_clear_error(bundle):
    decoder = Decoder(bundle, max_context=16)
    with pytest.raises(WaferlineError, match="exceeds"):
        decoder.prefill(list(range(20)))


def test_slots_keep_each_documents_cache(bundle):
    """Switching documents keeps each one's K/V: switching back evaluates nothing new and gives the same logits;
    past max_slots the least recently used slot is recycled."""
    dec = Decoder(bundle, max_context=256, max_slots=2)
    a, b, c = ids_of(bundle, CODE), ids_of(bundle, "class Stack:\n    def push(self, item):\n"), ids_of(bundle, "x = 1\n")
    assert not dec.use_slot("a")
    want_a = dec.prefill(a).copy()
    dec.use_slot("b")
    assert dec.tokens == []
    want_b = dec.prefill(b).copy()
    assert dec.use_slot("a") and dec.tokens == a
    np.testing.assert_allclose(dec.verify([a[-1]])[0], Decoder(bundle, max_context=256).verify(a + [a[-1]])[-1], atol=1e-4)
    dec.truncate(len(a))
    assert dec.use_slot("b") and dec.tokens == b
    np.testing.assert_allclose(dec.prefill(b), want_b, atol=1e-5)  # nothing re-evaluated but the last id
    dec.use_slot("c")  # evicts "a", the least recently used
    dec.prefill(c)
    assert not dec.use_slot("a") and dec.tokens == []
    np.testing.assert_allclose(dec.prefill(a), want_a, atol=1e-4)


def test_prefill_stops_between_chunks_when_cancelled(bundle, decoder):
    ids = ids_of(bundle, CODE * 3)
    cancel = threading.Event()
    cancel.set()
    assert decoder.prefill(ids, chunk=8, cancel=cancel) is None
    assert decoder.tokens == []


def test_interrupt_hooks_run_on_set_and_at_once_when_already_set():
    calls = []
    flag = Interrupt()
    with flag.interrupting(lambda: calls.append("a")):
        flag.set()
    assert calls == ["a"]
    flag.set()  # the block is over: its hook is gone
    with flag.interrupting(lambda: calls.append("b")):
        pass
    assert calls == ["a", "b"]


def test_an_interrupt_stops_a_prefill_chunk_in_flight(smollm2_bundle):
    """Set while one 900-token chunk runs, the flag ends the ONNX Runtime call (None, nothing new cached), and the
    cache is as good as before: the same prompt then gives a fresh decoder's logits."""
    bundle = load_bundle(smollm2_bundle)
    dec = Decoder(bundle, max_context=1024, threads=1)
    ids = (ids_of(bundle, CODE * 30) * 2)[:900]
    dec.prefill(ids[:100])

    class Flag(Interrupt):
        def __init__(self):
            super().__init__()
            self.in_call = threading.Event()

        @contextlib.contextmanager
        def interrupting(self, hook):
            with super().interrupting(hook):
                self.in_call.set()
                yield

    flag = Flag()
    setter = threading.Thread(target=lambda: flag.in_call.wait(10) and flag.set())
    setter.start()
    assert dec.prefill(ids, chunk=len(ids), cancel=flag) is None
    setter.join()
    assert dec.tokens == ids[:100]
    got = dec.prefill(ids).copy()
    fresh = Decoder(bundle, max_context=1024, threads=1)
    np.testing.assert_allclose(got, fresh.prefill(ids), atol=1e-4)


def test_rename_slot_puts_a_cache_prefilled_aside_in_a_documents_place(bundle):
    dec = Decoder(bundle, max_context=256, max_slots=3)
    a, b = ids_of(bundle, CODE), ids_of(bundle, "class Stack:\n    def push(self, item):\n")
    dec.use_slot("doc")
    dec.prefill(a)
    dec.use_slot("doc\0next")
    want = dec.prefill(b).copy()
    dec.use_slot("other")
    assert dec.rename_slot("doc\0next", "doc") and dec.tokens == b  # now current, holding what was prefilled aside
    assert not dec.use_slot("doc\0next")  # the spare is gone, not left behind
    assert dec.use_slot("doc") and dec.tokens == b
    np.testing.assert_allclose(dec.prefill(b), want, atol=1e-5)
    assert not dec.rename_slot("missing", "doc") and dec.tokens == b


def test_loaded_weights_are_paged_out_and_logits_do_not_change(tiny_bundle, monkeypatch):
    """After the session is built, the weights file's pages that prepacking touched leave our RSS (MADV_PAGEOUT), and
    the logits are bit-identical to a session whose pages stayed."""
    import sys

    from runtime import engine

    if not sys.platform.startswith("linux"):
        pytest.skip("MADV_PAGEOUT is Linux's")
    bundle = load_bundle(tiny_bundle)
    data = str(bundle.path.resolve() / "model.onnx.data")
    ids = bundle.tokenizer.encode("def add(a, b):\n    return").ids
    released = engine.Decoder(bundle)
    assert _mapped_kib(data) == 0  # before any row is gathered
    got = released.verify(ids).copy()
    gathered = _mapped_kib(data)  # the rows the embedding looked up fault back in
    monkeypatch.setattr(engine, "release_loaded_weights", lambda path: 0)
    kept = engine.Decoder(bundle)
    assert _mapped_kib(data) > gathered  # what the release takes away
    assert np.array_equal(got, kept.verify(ids))
    assert engine.release_loaded_weights("/nonexistent/model.onnx.data") == 0


def test_pages_are_paged_out_while_the_session_loads(tmp_path):
    """The load-time helper pages a mapped file out while the caller is busy (ORT building its session), and stops
    with the block: the peak of load holds the packed weights, not also the file they were packed from."""
    import mmap
    import sys
    import threading
    import time

    from runtime import engine

    if not sys.platform.startswith("linux"):
        pytest.skip("MADV_PAGEOUT is Linux's")
    data = tmp_path / "model.onnx.data"
    data.write_bytes(np.random.default_rng(0).integers(0, 255, 4 << 20, dtype=np.uint8).tobytes())
    with open(data, "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mapped:
        assert sum(mapped[i] for i in range(0, len(mapped), 4096)) > 0  # touch every page, as prepacking does
        resident = [_mapped_kib(str(data.resolve()))]
        with engine._paging_out_while_loading(str(data.resolve()), every_s=0.005):
            for _ in range(1000):  # generous: the helper runs every 5 ms
                time.sleep(0.005)
                resident.append(_mapped_kib(str(data.resolve())))
                if resident[-1] == 0:
                    break
        assert resident[0] > 0 and resident[-1] == 0
        assert not any(t.name == "waferline-load-pageout" for t in threading.enumerate())


def _mapped_kib(path: str) -> int:
    """KiB of `path` resident in this process (/proc/self/smaps; 0 where there is none)."""
    total, current = 0, None
    try:
        with open("/proc/self/smaps") as f:
            for line in f:
                fields = line.split(maxsplit=5)
                if "-" in fields[0] and not fields[0].endswith(":"):  # a mapping's header line
                    current = fields[5].rstrip("\n") if len(fields) == 6 else None
                elif line.startswith("Rss:") and current == path:
                    total += int(line.split()[1])
    except OSError:
        return 0
    return total


def test_same_line_takes_the_best_continuation_on_this_line(smollm2_bundle):
    """At `Progress(` SmolLM2's favourite is a line break (arguments below), which line mode shows as nothing;
    same_line takes the best token that stays on the line, in the healed token too."""
    bundle = load_bundle(smollm2_bundle)
    dec = Decoder(bundle, max_context=256, threads=1)
    texts = bundle.token_texts
    breaks = set(texts.line_break_ids.tolist())
    prompt = ids_of(bundle, "class A:\n    def __init__(self):\n        self.progress = Progress(")
    logits = dec.prefill(prompt).copy()
    assert int(np.argmax(logits)) in breaks  # the case the option is for
    allowed = logits.copy()
    allowed[list(breaks)] = -np.inf
    r = generate(dec, prompt, GenerateOptions(max_new_tokens=1, speculate=False, same_line=True))
    assert r.token_ids == [int(np.argmax(allowed))]
    plain = generate(dec, prompt, GenerateOptions(max_new_tokens=1, speculate=False))
    assert plain.token_ids[0] in breaks
    healed = generate(dec, prompt[:-1], GenerateOptions(max_new_tokens=4, speculate=False, same_line=True,
                                                         forced_prefix=texts.text[prompt[-1]]))
    assert not healed.forced_text.lstrip(" \t").startswith("\n") and healed.token_ids[0] not in breaks


def test_ends_in_repetition_follows_copilots_rules():
    from runtime.engine import ends_in_repetition

    assert ends_in_repetition([5] * 10) and not ends_in_repetition([5] * 9)
    assert ends_in_repetition([1, 2, 3] + [7, 8, 9] * 10)  # 30 tokens of a 3-token pattern
    assert not ends_in_repetition([7, 8, 9] * 9 + [7, 8])  # 29 only
    assert ends_in_repetition(list(range(100, 120)) * 3)  # 60 tokens of a 20-token pattern (the 45-token rule)
    assert not ends_in_repetition(list(range(60)))
    assert not ends_in_repetition([1, 2, 1, 2, 1, 2, 3] * 4)  # repeats, but not at the end
    assert not ends_in_repetition([])


def test_a_looping_model_is_stopped_where_the_loop_is_plain(tiny_bundle):
    """The random tiny model loops on this prompt (greedy); stop_repetition ends it at the first token where the
    output ends in a repeated pattern, and what it kept is what the model wrote."""
    from runtime.engine import ends_in_repetition

    bundle = load_bundle(tiny_bundle)
    decoder = Decoder(bundle)
    ids = bundle.tokenizer.encode("import os\n").ids
    free = generate(decoder, ids, GenerateOptions(max_new_tokens=64, speculate=False)).token_ids
    first = next(n for n in range(1, len(free) + 1) if ends_in_repetition(free[:n]))
    decoder.reset()
    cut = generate(decoder, ids, GenerateOptions(max_new_tokens=64, speculate=False, stop_repetition=True))
    assert cut.stop_reason == "repetition" and cut.token_ids == free[:first] and first < 64
