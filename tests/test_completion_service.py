"""CompletionService over the real runtime.engine.generate with an oracle decoder (no ONNX model needed).

The oracle "knows" a document and always predicts the vocabulary token that continues it the longest, so the
tests can check prompt layout, token healing after a back-off, KV reuse, stop rules, cancellation and the cache
exactly.
"""

import threading
from pathlib import Path

import msgspec
import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from runtime.bundle import Bundle, BundleMeta
from runtime.complete import CompletionRequest, CompletionService
from runtime.sequences import common_prefix_len

CORPUS = "".join(p.read_text() for p in sorted((Path(__file__).resolve().parents[1] / "runtime" / "complete").glob("*.py")))
EOS = "<eos>"
SPECIALS = [EOS, "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<repo_name>", "<file_sep>"]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator([CORPUS], trainer)
    return tok


def make_meta(tok: Tokenizer, fim: bool = False, header: bool = False) -> BundleMeta:
    ids = {s: tok.token_to_id(s) for s in SPECIALS}
    return BundleMeta(
        name="test", architecture="llama", n_layers=1, d_model=8, n_heads=1, n_kv_heads=1, head_dim=8, d_ff=8,
        vocab_size=tok.get_vocab_size(), rope_theta=1e4, rms_eps=1e-5, context_length=4096, eos_ids=[ids[EOS]],
        fim_prefix_id=ids["<fim_prefix>"] if fim else None, fim_suffix_id=ids["<fim_suffix>"] if fim else None,
        fim_middle_id=ids["<fim_middle>"] if fim else None,
        repo_name_id=ids["<repo_name>"] if header else None, file_sep_id=ids["<file_sep>"] if header else None,
    )


class OracleDecoder:
    """Decoder look-alike: predicts the token that continues `document` furthest (eos when off-document)."""

    def __init__(self, bundle: Bundle, document: str, max_context: int = 4096):
        self.bundle, self.meta, self.document, self.max_context = bundle, bundle.meta, document, max_context
        self.tokens: list[int] = []
        self.evaluated = 0
        n = bundle.tokenizer.get_vocab_size()
        self.vocab = bundle.tokenizer.decode_batch([[i] for i in range(n)], skip_special_tokens=True)

    def _logits(self) -> np.ndarray:
        text = self.bundle.tokenizer.decode(self.tokens, skip_special_tokens=True)
        logits = np.full(len(self.vocab), -10.0, np.float32)
        at = self.document.find(text) if text else 0
        want = self.document[at + len(text) :] if at >= 0 else ""
        best = max((i for i, t in enumerate(self.vocab) if t and want.startswith(t)), key=lambda i: len(self.vocab[i]), default=None)
        logits[self.meta.eos_ids[0] if best is None else best] = 10.0
        return logits

    def truncate(self, n):
        del self.tokens[max(0, n) :]

    def prefill(self, ids, chunk=512, cancel=None):
        keep = min(common_prefix_len(self.tokens, ids), len(ids) - 1)
        self.truncate(keep)
        self.evaluated += len(ids) - keep
        self.tokens = list(ids)
        return self._logits()

    def step(self, token_id):
        self.tokens.append(int(token_id))
        self.evaluated += 1
        return self._logits()

    def verify(self, ids):
        rows = []
        for t in ids:
            rows.append(self.step(t))
        return np.stack(rows)


DOC = (
    "import os\n\n\n"
    "def total(values):\n"
    "    result = 0\n"
    "    for v in values:\n"
    "        result = result + v\n"
    "    return result\n\n\n"
    "def main():\n"
    "    print(total([1, 2, 3]))\n"
)


def service(tok, document=DOC, **meta_kw) -> tuple[CompletionService, OracleDecoder]:
    bundle = Bundle(path=Path("."), meta=make_meta(tok, **meta_kw), tokenizer=tok)
    dec = OracleDecoder(bundle, document)
    return CompletionService(bundle, dec), dec


def at(marker: str, document: str = DOC) -> tuple[str, str]:
    i = document.index(marker) + len(marker)
    return document[:i], document[i:]


def test_line_completion_after_backoff(tokenizer):
    svc, _ = service(tokenizer)
    prefix, suffix = at("    result = ")
    res = svc.complete(CompletionRequest(prefix=prefix, suffix="\n" + suffix.split("\n", 1)[1], doc_key="d"))
    assert res.text == "0"
    assert res.stop_reason in ("stop", "eos")
    prefix, suffix = at("def total(values):\n    ")
    res = svc.complete(CompletionRequest(prefix=prefix, suffix="\n" + suffix.split("\n", 1)[1], doc_key="d"))
    assert res.text == "result = 0"


def test_token_healing_completes_a_cut_word(tokenizer):
    """The cursor cuts a token ("for v in val|"): the last token is given back and regenerated, so the word goes on."""
    svc, _ = service(tokenizer)
    prefix, suffix = at("    for v in val")
    plan = svc.plan_prompt(CompletionRequest(prefix=prefix))
    assert plan.backoff and "val".endswith(plan.backoff.strip())
    assert tokenizer.decode(plan.ids) + plan.backoff == prefix
    res = svc.complete(CompletionRequest(prefix=prefix, suffix="\n" + suffix.split("\n", 1)[1], doc_key="d"))
    assert res.text == "ues:"


def test_backoff_prompt_ends_on_natural_boundary(tokenizer):
    svc, _ = service(tokenizer)
    prefix, _ = at("    result = ")
    plan = svc.plan_prompt(CompletionRequest(prefix=prefix))
    assert plan.backoff == " "
    assert tokenizer.decode(plan.ids) == prefix[:-1]


def test_healed_token_past_the_line_end_shows_nothing(tokenizer):
    """Line mode on a blank line: the backed-off "\n" is spelled by a token that runs past the line end, so this line
    has nothing left to write, and nothing past that token is evaluated."""
    svc, dec = service(tokenizer)
    res = svc.complete(CompletionRequest(prefix="import os\n", suffix="\n\ndef total(values):\n"))
    assert res.text == "" and res.stop_reason == "stop"
    assert res.raw_text.startswith("\n") and res.new_tokens == 1
    assert dec.evaluated == res.prompt_tokens


def test_block_mode_decodes_past_a_healed_line_end(tokenizer):
    svc, _ = service(tokenizer)
    res = svc.complete(CompletionRequest(prefix="import os\n", suffix="", mode="block", max_new_tokens=80))
    assert res.text.lstrip("\n").startswith("def total(values):\n    result = 0")


def test_healing_that_needs_too_many_tokens_shows_nothing(tokenizer):
    svc, _ = service(tokenizer)
    res = svc.complete(CompletionRequest(prefix="def f():\n" + "\t " * 20, suffix="\n"))
    assert res.text == "" and res.raw_text == "" and res.stop_reason == "stop" and res.new_tokens == 0


def test_mid_word_is_skipped_without_model(tokenizer):
    svc, dec = service(tokenizer)
    res = svc.complete(CompletionRequest(prefix="def tot", suffix="al(values):\n"))
    assert res.skipped == "mid-word" and res.text == "" and dec.evaluated == 0


def test_kv_reuse_while_typing(tokenizer):
    svc, dec = service(tokenizer)
    prefix, suffix = at("        result = ")
    ratios = []
    for k in range(1, 8):  # type "result + v" one char at a time, cache off to force the model each time
        svc.cache.clear()
        p = prefix + "result + v"[:k]
        res = svc.complete(CompletionRequest(prefix=p, suffix=suffix[suffix.index("\n") :], doc_key="d"))
        if k > 1:
            ratios.append(res.reused_tokens / res.prompt_tokens)
    assert min(ratios) >= 0.9


def test_typing_along_served_from_cache(tokenizer):
    svc, dec = service(tokenizer)
    prefix, suffix = at("    print(")
    first = svc.complete(CompletionRequest(prefix=prefix, suffix=suffix[len("total([1, 2, 3]))"):]))
    assert first.text == "total([1, 2, 3]))" or first.text.startswith("total(")
    before = dec.evaluated
    again = svc.complete(CompletionRequest(prefix=prefix + "tot", suffix=suffix[len("total([1, 2, 3]))"):]))
    assert again.cached and again.text == first.text[3:] and dec.evaluated == before


def test_cancel_before_first_token(tokenizer):
    svc, _ = service(tokenizer)
    prefix, suffix = at("    for v in ")
    suffix = suffix[suffix.index("\n") :]
    ev = threading.Event()
    ev.set()
    res = svc.complete(CompletionRequest(prefix=prefix, suffix=suffix), cancel=ev)
    assert res.stop_reason == "cancelled" and res.text == ""
    # a cancelled result is not cached
    res2 = svc.complete(CompletionRequest(prefix=prefix, suffix=suffix))
    assert not res2.cached and res2.text == "values:"


def test_block_mode_stops_at_block_end(tokenizer):
    svc, _ = service(tokenizer)
    prefix, _ = at("def total(values):\n")
    res = svc.complete(CompletionRequest(prefix=prefix, suffix="", mode="block", max_new_tokens=200))
    assert res.text == "    result = 0\n    for v in values:\n        result = result + v\n    return result"
    assert res.stop_reason in ("stop", "eos")
    assert res.new_tokens < 60  # stopped at the block end, not at max tokens


def test_fim_prompt_layout(tokenizer):
    """<fim_prefix> lines above <fim_suffix> suffix <fim_middle> cursor line so far: typing on a line changes only
    the tokens after <fim_middle>, so everything before them stays cached."""
    svc, _ = service(tokenizer, fim=True)
    m = svc.meta
    plan = svc.plan_prompt(CompletionRequest(prefix="import os\nx = ", suffix="\ny = 2\n"))
    # FIM backs off to a natural boundary too: the trailing space is regenerated first (token healing)
    assert plan.fim and plan.backoff == " "
    assert plan.ids[0] == m.fim_prefix_id
    i, j = plan.ids.index(m.fim_suffix_id), plan.ids.index(m.fim_middle_id)
    assert tokenizer.decode(plan.ids[1:i]) == "import os\n"
    assert tokenizer.decode(plan.ids[i + 1 : j]) == "\ny = 2\n"
    assert tokenizer.decode(plan.ids[j + 1 :]) == "x ="
    typed = svc.plan_prompt(CompletionRequest(prefix="import os\nx = compute(", suffix="\ny = 2\n"))
    assert typed.ids[: j + 1] == plan.ids[: j + 1]
    at_indent = svc.plan_prompt(CompletionRequest(prefix="def f():\n    ", suffix="\n"))
    assert at_indent.backoff == "    " and at_indent.ids[-1] == m.fim_middle_id


def test_fim_prompt_bounds_a_huge_suffix_and_prefix(tokenizer):
    svc, _ = service(tokenizer, fim=True)
    big = "y = 2\n" * 2_000_000  # 12 MB each side: only windows around the cursor are tokenized
    plan = svc.plan_prompt(CompletionRequest(prefix=big + "x = 1", suffix=big, max_prompt_tokens=256, max_suffix_tokens=64))
    i, j = plan.ids.index(svc.meta.fim_suffix_id), plan.ids.index(svc.meta.fim_middle_id)
    assert j - i - 1 <= 64 and len(plan.ids) <= 256 + 64 + 3


def test_fim_middle_keeps_typed_lines_so_a_new_line_reuses_the_suffix(tokenizer):
    """The middle starts a few lines above the cursor, and at a new line the typed line stays after <|fim_middle|>:
    prefix and suffix keep their tokens, so the next request evaluates only the new text, not the suffix again (the
    cost that made typing slow with a FIM model)."""
    from runtime.complete.prompt import MIDDLE_LINES, MIDDLE_MAX_TOKENS

    svc, dec = service(tokenizer, fim=True)
    m = svc.meta

    def parts(plan):
        i, j = plan.ids.index(m.fim_suffix_id), plan.ids.index(m.fim_middle_id)
        return tokenizer.decode(plan.ids[1:i]), tokenizer.decode(plan.ids[j + 1 :])

    suffix = "\n\n\ndef main():\n    print(total([1, 2, 3]))\n" * 4
    first = CompletionRequest(prefix="import os\n\n\ndef total(values):\n    result = 0", suffix=suffix, doc_key="d")
    head, middle = parts(svc.plan_prompt(first))
    assert head == "import os\n" and middle.startswith("\n\ndef total(values):\n    result")  # " 0" may be healed
    svc.complete(first)
    before = dec.evaluated
    typed = msgspec.structs.replace(first, prefix=first.prefix + "\n    for v in values:\n        ")
    plan = svc.plan_prompt(typed)
    assert parts(plan) == ("import os\n", "\n\ndef total(values):\n    result = 0\n    for v in values:\n")
    assert plan.backoff == "        "
    svc.complete(typed)
    assert dec.evaluated - before < len(svc.encode(suffix))  # the suffix was not evaluated again
    # a middle grown past its budget restarts MIDDLE_LINES above the cursor line (the suffix is evaluated once more)
    long = msgspec.structs.replace(first, prefix=typed.prefix + "x = 1\n" * (MIDDLE_MAX_TOKENS // 2) + "y")
    plan = svc.plan_prompt(long)
    assert parts(plan)[1] == "x = 1\n" * MIDDLE_LINES and plan.backoff == "y"  # "y" healed: given back to the model
    # the cursor moved above the middle's start: it restarts at the cursor line (nothing above it here)
    up = msgspec.structs.replace(first, prefix="import os")
    head, middle = parts(svc.plan_prompt(up))
    assert head == "" and middle.startswith("import") and svc.prompts._middle_starts["d"] == 0


def test_repo_header_when_tokens_exist(tokenizer):
    svc, _ = service(tokenizer, header=True)
    m = svc.meta
    plan = svc.plan_prompt(CompletionRequest(prefix="import os\n", path="pkg/mod.py", repo_name="proj"))
    assert plan.ids[0] == m.repo_name_id
    j = plan.ids.index(m.file_sep_id)
    assert tokenizer.decode(plan.ids[1:j]) == "proj"
    assert tokenizer.decode(plan.ids[j + 1 :]).startswith("pkg/mod.py\nimport os")
    plain, _ = service(tokenizer)
    assert m.repo_name_id not in plain.plan_prompt(CompletionRequest(prefix="import os\n", path="pkg/mod.py")).ids


def test_window_limits_prompt_tokens(tokenizer):
    long_doc = "".join(f"value_{i} = compute({i})\n" for i in range(400))
    svc, _ = service(tokenizer, document=long_doc)
    prefix = long_doc[: long_doc.index("value_399 = ") + len("value_399 = ")]
    res = svc.complete(CompletionRequest(prefix=prefix, suffix="\n", max_prompt_tokens=128))
    assert res.prompt_tokens <= 128
    assert res.text == "compute(399)"


def test_warm_then_complete_reuses_the_warmed_prefix(tiny_bundle):
    """Background prefill on a real decoder: the request that follows evaluates only what is new, and a request in
    another document does not throw the first one's cache away (one KV slot per document)."""
    svc = CompletionService.load(str(tiny_bundle), kv_slots=2)
    doc_a = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(12))
    doc_b = "class Stack:\n    def push(self, item):\n        self.items.append(item)\n"
    req_a = CompletionRequest(prefix=doc_a + "def g(", suffix="\n", doc_key="a", max_new_tokens=4)
    warmed = svc.warm(req_a)
    assert warmed > 50
    res = svc.complete(req_a)
    assert res.reused_tokens >= warmed - 1
    svc.complete(CompletionRequest(prefix=doc_b + "    def pop(", suffix="", doc_key="b", max_new_tokens=4))
    again = svc.complete(CompletionRequest(prefix=doc_a + "def h(", suffix="\n", doc_key="a", max_new_tokens=4))
    assert again.reused_tokens >= warmed - 1
    cancel = threading.Event()
    cancel.set()
    assert svc.warm(CompletionRequest(prefix=doc_b * 5 + "x", doc_key="c"), cancel=cancel) == 0


def test_cold_request_answers_from_a_short_window_until_warmed(tiny_bundle):
    svc = CompletionService.load(str(tiny_bundle), kv_slots=2)
    doc = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(30))
    req = CompletionRequest(prefix=doc + "def g(", suffix="\n", doc_key="a", max_new_tokens=4, cold_prompt_tokens=64)
    cold = svc.complete(req)
    assert cold.cold and cold.prompt_tokens <= 64 + 4
    svc.warm(req)
    svc.cache.clear()
    warm = svc.complete(req)
    assert not warm.cold and warm.prompt_tokens > 200 and warm.prompt_tokens - warm.reused_tokens <= 64
