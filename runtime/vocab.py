"""Every token's text, sorted, so the tokens consistent with a forced prefix (token healing) are found per step with
two bisections and a few dictionary look-ups instead of a scan of the vocabulary."""

from __future__ import annotations

import bisect
import functools

import numpy as np


def starts_line_break(text: str) -> bool:
    """Does `text` end the line it continues (a line break after nothing but spaces/tabs)?"""
    return text.lstrip(" \t").startswith(("\n", "\r"))


class TokenTexts:
    """The decoded text of each token id (special tokens decode to ""), indexed by text."""

    def __init__(self, tokenizer):
        n = tokenizer.get_vocab_size(with_added_tokens=True)
        self.text: list[str] = tokenizer.decode_batch([[i] for i in range(n)], skip_special_tokens=True)
        pairs = sorted((t, i) for i, t in enumerate(self.text) if t)
        self._sorted_text = [t for t, _ in pairs]
        self._sorted_ids = [i for _, i in pairs]
        self._ids_by_text: dict[str, list[int]] = {}
        for t, i in pairs:
            self._ids_by_text.setdefault(t, []).append(i)

    @functools.cached_property
    def line_break_ids(self) -> np.ndarray:
        """Tokens that end the line they continue (GenerateOptions.same_line); built on first use, not at load."""
        return np.array([i for i, t in enumerate(self.text) if starts_line_break(t)], dtype=np.int64)

    def consistent_with(self, text: str) -> np.ndarray:
        """Token ids whose text starts with `text` or is a shorter non-empty prefix of it.

        Tokens starting with `text` are one contiguous run of the sorted texts; its prefixes are at most len(text)
        dictionary look-ups."""
        lo = bisect.bisect_left(self._sorted_text, text)
        hi = bisect.bisect_left(self._sorted_text, text + "\U0010ffff")
        ids = self._sorted_ids[lo:hi] + [i for k in range(1, len(text)) for i in self._ids_by_text.get(text[:k], ())]
        return np.array(ids, dtype=np.int64)
