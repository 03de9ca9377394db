"""lsp_server.actions: which code actions are offered where (no server needed).

Positions are LSP positions: UTF-16 code units by default, so lines with emoji (2 units) and CJK (1 unit, 3 bytes
in UTF-8) are checked at the cursor a client would send.
"""

from __future__ import annotations

import pytest

from lsp_server.actions import BODY, HERE, SELECTION, incomplete_at, offers, wanted
from lsp_server.positions import UTF8, UTF16, units_len


def at_end(line: str, encoding: str = UTF16, language_id: str | None = None, before: str = "") -> bool:
    """incomplete_at with the cursor at the end of `line`, the last line of `before + line`."""
    return incomplete_at(before + line, before.count("\n"), units_len(line, encoding), encoding, language_id)


@pytest.mark.parametrize("line", [
    "x = ", "x =", "total = price *", "foo(", "foo(a,", "items[", "obj.", "    return", "    return ", "if ready:",
    "for item in", "    yield", "value = not", "from os import", "import", "lambda", "else", "x = a and",
    "path = base /", "n = a //", "x = \\", "@", "d = {", "call(x) +",
])
def test_unfinished_python_statements(line):
    assert at_end(line)


@pytest.mark.parametrize("line", [
    "", "    ", "x = 1", "    return a + b", "print(read('x'))", "pass", "x = foo()", "...", "def f(): ...",
    "x = 1  # then add", "s = 'a + '", "s = 'unfinished +", 'doc = """starts here:', "from os import *",
    "items = []", "break", "my_if", "x = obj.for_each",
])
def test_finished_or_not_code(line):
    assert not at_end(line)


def test_inside_a_docstring_is_prose():
    before = 'def f():\n    """Return the sum of:\n'
    assert not at_end("    a and", before=before)
    assert at_end("x = ", before=before + '    """\n')  # after it closes, code again


@pytest.mark.parametrize(("language_id", "line", "unfinished"), [
    ("typescript", "const total = price *", True),
    ("typescript", "const f = (x) =>", True),
    ("typescript", "let x = a // then b", False),
    ("typescript", "i++", False),
    ("typescript", "if (ready) {", True),
    ("typescript", "const t = `text +", False),
    ("cpp", "p->", True),
    ("cpp", "#include <vector>", False),
    ("java", "Map<String, List<Integer>>", False),
    ("rust", "let x = a -", True),
    ("go", "return", True),
    ("lua", "if x then", True),
    ("lua", "x = 1 -- and then", False),
    ("shellscript", "for f in *; do", True),
])
def test_other_languages(language_id, line, unfinished):
    assert at_end(line, language_id=language_id) is unfinished


def test_inside_a_block_comment():
    assert not at_end(" * and the rest,", language_id="c", before="int x;\n/* a comment that goes on\n")
    assert at_end("int y =", language_id="c", before="/* closed */\n")


def test_only_closing_brackets_may_follow_the_cursor():
    text = "print()\nx = foo(a, b)\n"
    assert incomplete_at(text, 0, len("print("))  # `print(|)`: an editor closed the bracket
    assert not incomplete_at(text, 1, len("x = "))  # `x = |foo(a, b)`: the statement goes on after the cursor
    assert not incomplete_at(text, 1, len("x = foo(a, b)"))


@pytest.mark.parametrize("encoding", [UTF16, UTF8])
@pytest.mark.parametrize("head", ['f("😀😀", ', 'f("名前", ', 'g(label="🎉名", '])
def test_positions_count_code_units_emoji_and_cjk(encoding, head):
    """`f("…", |)`: the cursor before the closing bracket, in the encoding's units. Counted in code points instead,
    it would land past the bracket (the line end), where the statement is finished."""
    text = head + ")\nnext = 1\n"
    assert incomplete_at(text, 0, units_len(head, encoding), encoding)
    assert not incomplete_at(text, 0, units_len(head + ")", encoding), encoding)


def test_crlf_and_out_of_range():
    assert incomplete_at("x = \r\ny = 1\r\n", 0, 4)
    assert not incomplete_at("x = 1\r\n", 0, 99)
    assert not incomplete_at("x = ", 5, 0) and not incomplete_at("x = ", -1, 0)


DOC = "import os\n\n\ndef read(path):\n\n\nprint(read('x'))\nresult = \n"


def titles(start, end=None, **kw) -> list[str]:
    return [o.title for o in offers(DOC, start, end or start, **kw)]


def test_invoked_always_offers_complete_here():
    assert titles((0, 3), invoked=True) == [HERE]
    assert titles((6, 16), invoked=True) == [HERE]
    assert titles((99, 0), invoked=True) == [HERE]


def test_automatic_offers_only_where_it_helps():
    assert titles((0, 9), invoked=False) == []  # `import os|`
    assert titles((6, 16), invoked=False) == []  # `print(read('x'))|`
    assert titles((7, 9), invoked=False) == [HERE]  # `result = |`
    assert titles((3, 15), invoked=False) == [HERE, BODY]  # `def read(path):|` with an empty body
    assert titles((4, 0), invoked=False) == [BODY]  # the empty body's first line


def test_a_selection_is_replaced():
    assert titles((6, 0), (6, 16), invoked=False) == [SELECTION]
    assert titles((6, 0), (6, 16), invoked=True) == [SELECTION]
    # UTF-16 (0, 6) is inside the emoji's surrogate pair: it clamps to (0, 5), so nothing is selected
    assert [o.title for o in offers("s = '😀'\n", (0, 5), (0, 6), invoked=False)] == []


def test_the_kind_filter():
    assert wanted(None) and wanted(["refactor"]) and wanted(["refactor.rewrite"])
    assert not wanted(["quickfix"]) and not wanted(["source"]) and not wanted(["refactor.extract"]) and not wanted([])
    assert titles((7, 9), invoked=True, only=["quickfix"]) == []
    assert titles((7, 9), invoked=True, only=["refactor"]) == [HERE]
