"""Golden tests for runtime.complete.postprocess: one block per rule (issue 4, point 6)."""

import pytest

from runtime.complete.postprocess import (
    block_end,
    in_comment_or_string,
    is_mid_word,
    looks_like_prose,
    make_post_context,
    postprocess,
    scan_brackets,
    scan_start,
)


def pp(prefix: str, raw: str, suffix: str = "\n", mode: str = "line") -> str:
    return postprocess(raw, make_post_context(prefix, suffix, mode))


# -- line mode: stop at the end of the line/statement ------------------------------------------------------------
@pytest.mark.parametrize(
    "prefix, raw, want",
    [
        ("x = ", "compute(a, b)\ny = 2\n", "compute(a, b)"),
        ("import ", "os\nimport sys", "os"),
        ("def f(", "a, b):\n    return a", "a, b):"),
        ("total = ", "1 + 2   \n", "1 + 2"),  # trailing spaces dropped
    ],
)
def test_line_mode_stops_at_end_of_line(prefix, raw, want):
    assert pp(prefix, raw) == want


# -- block mode: stop at the end of the block --------------------------------------------------------------------
def test_block_mode_keeps_body_and_stops_at_dedent():
    prefix = "def f(x):\n    "
    raw = "if x:\n        return 1\n    return 2\n\ndef g():\n    pass\n"
    assert pp(prefix, raw, mode="block") == "if x:\n        return 1\n    return 2"


def test_block_mode_def_line_body_then_stop():
    prefix = "class A:\n    def f(self"
    raw = "):\n        return 1\n\n    def g(self):\n        return 2\n"
    assert pp(prefix, raw, mode="block") == "):\n        return 1"


def test_block_mode_brace_language_keeps_closer():
    prefix = "function f() {\n  if (x) {"
    raw = "\n    y();\n  }\n  z();\n}\n"
    assert pp(prefix, raw, mode="block") == "\n    y();\n  }"


def test_block_end_none_when_block_continues():
    assert block_end(["x = 1", "    y = 2"], "    ") is None
    assert block_end(["x = 1", "y = 2"], "    ") == 1


# -- never repeat the suffix -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "prefix, raw, suffix, want",
    [
        ("print(", "x)", ")\n", "x"),  # closer already there
        ("if (a", "):", "):\n", ""),  # completion == rest of line -> nothing
        ("foo(bar(", "1))", "))\n", "1"),
        ("d = {'a': ", "1}", "}\n", "1"),
    ],
)
def test_never_repeats_rest_of_line(prefix, raw, suffix, want):
    assert pp(prefix, raw, suffix) == want


def test_block_mode_cuts_at_next_line_of_suffix():
    prefix = "def f(x):\n    y = x + 1\n    "
    suffix = "\n    return y\n"
    raw = "y = y * 2\n    return y\n"
    assert pp(prefix, raw, suffix, mode="block") == "y = y * 2"


# -- drop whitespace-only, fences, prose -------------------------------------------------------------------------
@pytest.mark.parametrize("raw", ["", "   ", "\n\n", "\t \n  "])
def test_whitespace_only_dropped(raw):
    assert pp("x = ", raw, mode="block") == ""
    assert pp("x = ", raw) == ""


@pytest.mark.parametrize(
    "raw, want",
    [("```python\nx = 1\n```", ""), ("1  # one\n```\nmore", "1  # one"), ("value```", "value")],
)
def test_markdown_fence_cut(raw, want):
    assert pp("x = ", raw, mode="block") == want


@pytest.mark.parametrize(
    "raw",
    [
        "Here is the completed function:",
        "Sure! This function returns the sum.",
        "This code computes the total of the list.",
        "The function above will loop over all items.",
    ],
)
def test_prose_dropped_in_code(raw):
    assert pp("def f(xs):\n    ", raw) == ""


def test_prose_kept_in_comment_and_docstring():
    assert pp("x = 1  # ", "This code computes the total of the list.") == "This code computes the total of the list."
    assert pp('def f():\n    """', "Return the sum of the list items.") == "Return the sum of the list items."


def test_looks_like_prose_not_fooled_by_code():
    assert not looks_like_prose("return self.items[0]")
    assert not looks_like_prose("import os, sys")
    assert looks_like_prose("Note: this will be slow")


# -- balance brackets --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "prefix, raw, suffix, want",
    [
        ("x = ", "f(a)) + 1", "\n", "f(a)"),  # extra closer cut
        ("x = [1, ", "2, 3]]", "\n", "2, 3]"),
        ("foo(bar(", "1), 2)", "))\n", "1"),  # closers reserved by the rest of the line
        ("s = ", "')' + x", "\n", "')' + x"),  # brackets in strings ignored
        ("y = (", "a +", "\n", "a +"),  # may leave a bracket open (continued on the next line)
        ("z = g(", "1, h(2))", "\n", "1, h(2))"),
    ],
)
def test_balance_brackets(prefix, raw, suffix, want):
    assert pp(prefix, raw, suffix) == want


def test_scan_brackets_skips_strings_and_comments():
    assert scan_brackets("f(a, '(', \"[\"  # (\n") == ["("]
    assert scan_brackets('x = """(\n[""" + g(') == ["("]
    assert scan_brackets("s = 'it\\'s ('; f(") == ["("]  # escaped quote stays inside the string


def test_a_long_docstring_before_the_cursor_does_not_invert_the_scan():
    """A fixed window once started inside this docstring: every bracket read as string and the ")" the line needs
    was cut (raw "s)" shown as "s"), and the code around the cursor counted as a comment."""
    prefix = 'def f(x):\n    """' + "Explains (a lot).\n" * 400 + '    """\n    n = len(' 
    assert pp(prefix, "x)\n") == "x)"
    assert not in_comment_or_string(prefix)


def test_a_huge_file_scans_from_a_top_level_statement():
    body = "def g():\n    return [1, 2]\n\n" * 20_000  # ~600 kB
    prefix = body + 'def h():\n    """Doc (\n    """\n    return max('
    start = scan_start(prefix)
    assert 0 < start and prefix[start:].startswith("def ")
    assert pp(prefix, "a, b)\n") == "a, b)"


# -- keep indentation --------------------------------------------------------------------------------------------
def test_no_double_indent_after_typed_indentation():
    assert pp("def f():\n    ", "    return 1") == "return 1"


def test_tabs_follow_document_style():
    prefix = "def f():\n    x = 1\n    if x:"
    raw = "\n\t\tprint(x)\n\t\treturn x\n\ty = 2\n"
    assert pp(prefix, raw, mode="block") == "\n        print(x)\n        return x"


def test_spaces_become_tabs_in_tab_document():
    prefix = "def f():\n\tx = 1\n\tif x:"
    raw = "\n\t    print(x)\n"
    assert pp(prefix, raw, mode="block") == "\n\t\tprint(x)"


def test_multiline_keeps_relative_indentation():
    prefix = "for i in range(3):\n    "
    raw = "if i:\n        print(i)\n"
    assert pp(prefix, raw, mode="block") == "if i:\n        print(i)"


# -- no trigger mid-word -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "prefix, suffix, mid",
    [("pri", "nt(x)", True), ("x = ", "y", True), ("x = ", "\n", False), ("f(", ")", False), ("abc", "", False),
     ("a", "_b", True), ("x", " + y", False)],
)
def test_mid_word(prefix, suffix, mid):
    assert is_mid_word(prefix, suffix) is mid


def test_in_comment_or_string():
    assert in_comment_or_string("x = 1  # note ")
    assert in_comment_or_string('def f():\n    """Doc ')
    assert not in_comment_or_string("s = '#'; t = ")
    assert not in_comment_or_string("x = ")
    assert in_comment_or_string("msg = 'Hello wor")  # inside a one-line string
    assert not in_comment_or_string("half = n // ")  # floor division, not a // comment
    assert in_comment_or_string("int x = 1;\n  // note ")
