"""Which code actions to offer, and where: pure, so the rule is unit-tested without a server.

VS Code asks for code actions whenever the cursor moves (CodeActionTriggerKind.Automatic) and shows a lightbulb
whenever any come back, so offering "Complete here" at every cursor put a lightbulb on every line. As Copilot and
Continue do, actions asked for automatically are offered only where they help: on a selection, in an empty function
body, and after an incomplete statement (`x = `, `foo(`, `return`, `if x:`). Asked for (Ctrl+., Invoked, or a
client that does not say), "Complete here" is always offered.
"""

from __future__ import annotations

import re

import msgspec

from lsp_server.context import find_empty_def
from lsp_server.positions import UTF16, line_starts, position_to_index
from lsp_server.protocol import CMD_COMPLETE_BODY, CMD_COMPLETE_HERE

KIND = "refactor.rewrite"  # the kind of every action offered here

HERE = "Complete here (waferline)"
SELECTION = "Replace selection with a completion (waferline)"
BODY = "Complete function body (waferline)"

# Line comments by languageId; a language not listed is taken for Python (the default language).
_COMMENT = {"python": "#", "shellscript": "#", "lua": "--"} | dict.fromkeys(
    ("javascript", "javascriptreact", "typescript", "typescriptreact", "go", "rust", "c", "cpp", "java"), "//")
# Block comments and strings that span lines: (opening, closing) by languageId.
_BLOCKS = {"python": (('"""', '"""'), ("'''", "'''")), "lua": (("--[[", "]]"),)} | dict.fromkeys(
    ("javascript", "javascriptreact", "typescript", "typescriptreact", "go", "rust", "c", "cpp", "java"), (("/*", "*/"),))
_QUOTES = "\"'`"

# Code ending like this continues: an operator or opening bracket, a separator, a block opener (`:`, `{`, `then`)...
_OPEN_END = re.compile(r"""(?:[=([{,.:+\-*/%&|^~<!@\\]|[-=\s]>)$""")
_CLOSED_END = re.compile(r"""(?:\.\.\.|\+\+|--|\bimport\s+\*)$""")  # ...or it doesn't: `...`, `i++`, `import *`
# ...or a keyword that needs what follows it
_KEYWORD_END = re.compile(
    r"\b(?:return|yield|await|raise|throw|assert|del|import|from|in|not|and|or|is|if|elif|else|while|for|with|lambda"
    r"|as|new|case|def|class|fn|func|function|let|const|var|async|typeof|instanceof|go|defer|local|then|do)$")
_CLOSERS = set(")]};")  # an editor's auto-closed brackets after the cursor leave the statement open


class Offer(msgspec.Struct, frozen=True):
    """A code action to offer: the command its edit comes from, and its title."""

    command: str
    title: str


def _code(line: str, comment: str) -> str | None:
    """`line` with each string's contents dropped (quotes kept) and its comment cut; None if it ends in a string."""
    out: list[str] = []
    i, quote = 0, ""
    while i < len(line):
        if quote:
            if line[i] == "\\":
                i += 2
            elif line.startswith(quote, i):
                out.append(quote)
                i, quote = i + len(quote), ""
            else:
                i += 1
            continue
        if line.startswith(comment, i):
            break
        if line[i] in _QUOTES:
            quote = line[i] * 3 if line.startswith(line[i] * 3, i) else line[i]
            out.append(quote)
            i += len(quote)
            continue
        out.append(line[i])
        i += 1
    return None if quote else "".join(out)


def _inside_block(before: str, language_id: str | None) -> bool:
    """Whether text ending with `before` is inside a multi-line string or block comment (an approximation: it counts
    delimiters without parsing, which is right for docstrings and comment blocks)."""
    for opening, closing in _BLOCKS.get(language_id or "python", _BLOCKS["python"]):
        if opening == closing:
            if before.count(opening) % 2:
                return True
        elif before.rfind(opening) > before.rfind(closing):
            return True
    return False


def incomplete_at(text: str, line: int, character: int, encoding: str = UTF16, language_id: str | None = None) -> bool:
    """Whether the statement at an LSP position is unfinished: the code before it ends with an operator, an opening
    bracket, a separator, a block opener or a keyword that needs more, and only closing brackets follow it on the
    line. Strings and comments are not code: text being typed in them is not an unfinished statement."""
    starts = line_starts(text)
    if not 0 <= line < len(starts):
        return False
    index = position_to_index(text, line, character, encoding)
    start = starts[line]
    end = starts[line + 1] if line + 1 < len(starts) else len(text)
    comment = _COMMENT.get(language_id or "python", "#")
    before, after = _code(text[start:index], comment), _code(text[start:end].rstrip("\r\n"), comment)
    if before is None or after is None or _inside_block(text[:start], language_id):
        return False
    rest = after[len(before):] if after.startswith(before) else ""
    code = before.rstrip()
    if not code or set(rest.strip()) - _CLOSERS:
        return False
    return not _CLOSED_END.search(code) and bool(_OPEN_END.search(code) or _KEYWORD_END.search(code))


def wanted(kinds: list[str] | None) -> bool:
    """Whether a client's `only` filter admits our kind (kinds are hierarchical: "refactor" admits ours)."""
    return kinds is None or any(KIND == k or KIND.startswith(k + ".") for k in kinds)


def offers(text: str, start: tuple[int, int], end: tuple[int, int], *, invoked: bool, encoding: str = UTF16,
           language_id: str | None = None, indent_unit: str = "    ", only: list[str] | None = None) -> list[Offer]:
    """The actions for a code-action request over start..end (LSP line, character): on request (`invoked`) always
    "Complete here" ("Replace selection" over a selection); automatically only where one helps. "Complete function
    body" whenever the cursor is on or in an empty function."""
    if not wanted(only):
        return []
    selection = position_to_index(text, *start, encoding) != position_to_index(text, *end, encoding)
    out = []
    if invoked or selection or incomplete_at(text, *start, encoding, language_id):
        out.append(Offer(command=CMD_COMPLETE_HERE, title=SELECTION if selection else HERE))
    if not selection and find_empty_def(text, start[0], indent_unit) is not None:
        out.append(Offer(command=CMD_COMPLETE_BODY, title=BODY))
    return out
