"""Prompt construction helpers: the prefix window, the natural-boundary back-off, the result cache."""

import pytest

from runtime.complete.cache import ResultCache
from runtime.complete.prompt import choose_window_start, split_backoff


def words(s: str) -> int:
    """A stand-in tokenizer: one token per whitespace-separated word (monotone, like a real one)."""
    return len(s.split())


def doc(n_lines: int, words_per_line: int = 4) -> str:
    return "".join(" ".join(f"w{i}_{j}" for j in range(words_per_line)) + "\n" for i in range(n_lines))


# -- window start ------------------------------------------------------------------------------------------------
def test_short_prefix_starts_at_zero():
    assert choose_window_start(doc(3), None, words, 100) == 0


def test_jump_lands_on_line_boundary_with_three_quarters_budget():
    text = doc(100)  # 400 tokens
    s = choose_window_start(text, None, words, 100)
    assert s > 0 and text[s - 1] == "\n"
    assert words(text[s:]) <= 75 and words(text[s:]) > 70


def test_start_is_stable_while_typing():
    text = doc(100)
    s0 = choose_window_start(text, None, words, 100)
    starts = {s0}
    typed = text
    for k in range(20):  # 20 more tokens typed: stays within budget, start never moves
        typed += f"t{k} "
        starts.add(choose_window_start(typed, s0, words, 100))
    assert starts == {s0}


def test_start_jumps_in_big_steps_only():
    text = doc(30)
    s = choose_window_start(text, None, words, 100)
    moves = []
    for k in range(300):
        text += f"t{k}" + ("\n" if k % 4 == 3 else " ")
        s2 = choose_window_start(text, s, words, 100)
        if s2 != s:
            moves.append(words(text[s:s2]))
        s = s2
    assert moves, "the window should have moved"
    assert min(moves) >= 20  # each jump drops at least ~1/4 of the budget
    assert len(moves) <= 300 // 20


def test_refill_when_cursor_moves_up():
    text = doc(100)
    s = choose_window_start(text, None, words, 100)
    short = text[: s + 20]  # cursor moved near the old start: window would hold ~5 tokens
    s2 = choose_window_start(short, s, words, 100)
    assert s2 < s and words(short[s2:]) <= 100


def test_invalid_previous_start_recomputed():
    text = doc(100)
    assert choose_window_start(text, 10**9, words, 100) == choose_window_start(text, None, words, 100)
    assert choose_window_start(text, 3, words, 100) == choose_window_start(text, None, words, 100)  # mid-line


def test_single_huge_line_cut_mid_line():
    text = " ".join(f"x{i}" for i in range(1000))
    s = choose_window_start(text, None, words, 100)
    assert 0 < s < len(text) and words(text[s:]) <= 75


# -- natural token boundary --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "prefix, prompt, backoff",
    [
        ("x = ", "x =", " "),
        ("x = f(a,  ", "x = f(a,", "  "),
        ("def f():\n    ", "def f():", "\n    "),
        ("def f():\n", "def f():", "\n"),
        ("a = 1\n\t\t", "a = 1", "\n\t\t"),
        ("x = foo", "x = foo", ""),
        ("x = foo.", "x = foo.", ""),
        ("   ", "", "   "),
        ("", "", ""),
    ],
)
def test_split_backoff(prefix, prompt, backoff):
    assert split_backoff(prefix) == (prompt, backoff)
    assert prompt + backoff == prefix


# -- result cache ------------------------------------------------------------------------------------------------
def test_cache_exact_hit_and_miss():
    c = ResultCache(4)
    c.put("def f(", "\n", ("line",), "a, b):")
    assert c.get("def f(", "\n", ("line",)) == "a, b):"
    assert c.get("def f(", "x\n", ("line",)) is None  # suffix differs
    assert c.get("def f(", "\n", ("block",)) is None  # options differ


def test_cache_typing_along():
    c = ResultCache(4)
    c.put("x = ", "\n", (), "compute(a)")
    assert c.get("x = comp", "\n", ()) == "ute(a)"
    assert c.get("x = compute(a)", "\n", ()) is None  # typed it all: nothing left to suggest
    assert c.get("x = cx", "\n", ()) is None  # diverged


def test_cache_is_bounded_lru():
    c = ResultCache(2)
    for i in range(3):
        c.put(f"p{i}", "", (), f"t{i}")
    assert c.get("p0", "", ()) is None
    assert c.get("p2", "", ()) == "t2"


def test_cache_keeps_only_the_visible_tail():
    """A 20 MB prefix is not held by the cache; typing along still works on it."""
    c = ResultCache(4)
    big = "x = 1\n" * 3_000_000 + "y = "
    c.put(big, "\n", (), "compute(a)", tail_chars=4096)
    assert sum(len(e.prefix_tail) for e in c._entries.values()) <= 4096
    assert c.get(big, "\n", (), tail_chars=4096) == "compute(a)"
    assert c.get(big + "comp", "\n", (), tail_chars=4096) == "ute(a)"
    assert c.get("z" + big[1:] + "comp", "\n", (), tail_chars=4096) == "ute(a)"  # beyond the visible tail: same prompt
