"""How often the LM head's 4-bit shortlist misses the exact argmax, and what scoring the whole head exactly costs.

The shortlist bundle (the default) and an `--exact-head` bundle of the same GGUF differ only in the head, so every
position where their greedy tokens differ is a position where the true top token was not among the shortlist's
candidates. Positions: the bench text of bench/decode.py (held in: the standard library's textwrap module).

    python bench/shortlist.py [--model qwen2.5-coder-0.5b] [--tokens 1000] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.decode import Ours, prompt_ids  # noqa: E402
from bench.machine import cpu_line  # noqa: E402
from runtime import models  # noqa: E402
from runtime.builder import SHORTLIST  # noqa: E402
from runtime.bundle import load_bundle  # noqa: E402
from runtime.convert import convert  # noqa: E402


def decode_rates(engines: list[Ours], ids: list[int], new_tokens: int = 128, runs: int = 3) -> list[float]:
    """Median decode tok/s of each engine over `runs` alternating runs (A B A B: both see the same machine state)."""
    for e in engines:
        e.run(ids[:32], 4)  # warm-up
    rates: list[list[float]] = [[] for _ in engines]
    for _ in range(runs):
        for e, got in zip(engines, rates):
            _, decode_s, out = e.run(ids, new_tokens)
            got.append((len(out) - 1) / decode_s)
    return [float(np.median(r)) for r in rates]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=models.DEFAULT_MODEL)
    ap.add_argument("--tokens", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    print(cpu_line(), flush=True)

    short = load_bundle(models.pull(args.model, progress=False))
    ids = prompt_ids(short.tokenizer, args.tokens, offset=1000)
    with tempfile.TemporaryDirectory() as tmp:
        exact = load_bundle(convert(models.gguf_path(args.model), Path(tmp) / "exact-head", progress=False, head_shortlist=0))
        e_short, e_exact = Ours(short, args.threads), Ours(exact, args.threads)
        logits_short = e_short.logits(ids)  # [N, V]
        top_exact = np.argmax(e_exact.logits(ids), -1)
        candidates = np.argpartition(-logits_short, SHORTLIST - 1, axis=-1)[:, :SHORTLIST]  # the exactly scored ones
        misses = int(np.sum(~np.any(candidates == top_exact[:, None], axis=-1)))
        differs = int(np.sum(np.argmax(logits_short, -1) != top_exact))
        rate_short, rate_exact = decode_rates([e_short, e_exact], ids[:460])
    print(f"positions {len(ids)}: the exact head's top token is outside the {SHORTLIST} shortlisted candidates at {misses} "
          f"({misses / len(ids):.2%}); greedy tokens differ at {differs} ({differs / len(ids):.2%}; the rest of the "
          f"difference is the two exact scorings' arithmetic: float32 rows x float32 hidden vs int8-activation MatMulNBits)")
    print(f"decode tok/s, 460-token prompt, 128 greedy tokens, median of 3 alternating runs: shortlist {rate_short:.1f}, exact head {rate_exact:.1f} "
          f"({rate_short / rate_exact:.2f}x)")
    print(f"SUMMARY {args.model}: shortlist misses the exact argmax at {misses}/{len(ids)} positions "
          f"({misses / len(ids):.2%}), greedy differs at {differs}; decode {rate_short:.1f} vs {rate_exact:.1f} tok/s exact head; {cpu_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
