"""Post-processing: a raw model continuation -> what is shown at the cursor ("" = nothing).

Pure functions of the text around the cursor, each rule with golden tests (tests/test_completion_postprocess.py):
line/block stop, suffix de-duplication, whitespace/fence/prose rejection, bracket balance, indentation. The bracket
scanner skips strings and # comments, so a ")" in a string never balances or cuts anything.
"""

from __future__ import annotations

import re

import msgspec

from runtime.complete.request import Mode

_WORD = re.compile(r"[A-Za-z0-9_]")
_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {")": "(", "]": "[", "}": "{"}
_PROSE_START = re.compile(
    r"^\s*(Here('s| is| are)|Sure\b|Certainly\b|Of course\b|This (code|function|will|is)\b|The (code|function|above|following)\b"
    r"|Note:|In this\b|I (will|would|have|can)\b|You can\b|Below\b|Explanation\b|Output:)",
)
_CODE_CHARS = set("()[]{}=<>+*/%@#\"'`;|&^~\\")


class PostContext(msgspec.Struct, kw_only=True):
    """What post-processing needs from the document around the cursor."""

    line_prefix: str  # text of the cursor's line before the cursor
    rest_of_line: str  # text of the cursor's line after the cursor
    next_lines: list[str] = []  # following lines of the suffix (a few)
    mode: Mode = "line"
    open_brackets: list[str] = []  # brackets open in the prefix, innermost last
    in_comment_or_string: bool = False
    indent_unit: str = "    "


def is_mid_word(prefix: str, suffix: str) -> bool:
    """True when the cursor touches an identifier on its right: completing there would split a word."""
    return bool(suffix) and bool(_WORD.match(suffix[0]))


# One match per string literal (triple-quoted ones may span lines; an unterminated one runs to the end, a single-line
# one to its line's end), # comment, or bracket: the regex engine does the character loop, so a whole file scans fast.
_LEXEME = re.compile(
    r"""(?P<tq>\"\"\"|\'\'\')(?:\\.|.)*?(?:(?P<tq_end>(?P=tq))|\Z)"""
    r"""|"(?:\\.|[^"\\\n])*(?:(?P<dq_end>")|(?=\n)|\Z)|'(?:\\.|[^'\\\n])*(?:(?P<sq_end>')|(?=\n)|\Z)"""
    r"|(?P<comment>#[^\n]*)|(?P<bracket>[()\[\]{}])",
    re.S,
)
_TOP_STATEMENT = re.compile(r"^(?:def|class|async def|import|from|@)\b", re.M)
SCAN_CHARS = 256_000  # beyond this the scan starts at a top-level statement: 1 MB files stay fast


def _code_brackets(code: str):
    """(index, char) of each bracket in `code` outside strings and # comments (approximate, never raises)."""
    for m in _LEXEME.finditer(code):
        if m["bracket"]:
            yield m.start(), m["bracket"]


def _scan(code: str) -> tuple[list[str], bool]:
    """One pass over `code`: the brackets left open, and whether it ends inside a string literal or a # comment
    (its last lexeme runs unterminated to the end)."""
    stack: list[str] = []
    last = None
    for last in _LEXEME.finditer(code):
        c = last["bracket"]
        if c in _OPEN:
            stack.append(c)
        elif c and stack and stack[-1] == _CLOSE[c]:
            stack.pop()
    ends_open = (last is not None and last.end() == len(code) and not last["bracket"]
                 and (last["comment"] is not None or not (last["tq_end"] or last["dq_end"] or last["sq_end"])))
    return stack, ends_open


def scan_brackets(code: str) -> list[str]:
    """Open brackets after scanning `code` (strings and # comments skipped), innermost last."""
    return _scan(code)[0]


def scan_start(prefix: str, max_chars: int = SCAN_CHARS) -> int:
    """Where a scan of the prefix may start without landing inside a string: 0 for all but huge files, else the last
    top-level def/class/import/decorator line within the last `max_chars` (a docstring never starts one)."""
    if len(prefix) <= max_chars:
        return 0
    lo = len(prefix) - max_chars
    m = _TOP_STATEMENT.search(prefix, lo)
    return m.start() if m else prefix.find("\n", lo) + 1


def _in_comment_or_string(line_prefix: str, ends_open: bool) -> bool:
    return ends_open or line_prefix.lstrip().startswith("//")  # or a // comment line (C-family files)


def in_comment_or_string(prefix: str) -> bool:
    """Is the cursor inside a comment or a string literal (a docstring too)? Prose is fine there."""
    return _in_comment_or_string(prefix[prefix.rfind("\n") + 1 :], _scan(prefix[scan_start(prefix) :])[1])


def detect_indent_unit(text: str) -> str:
    """The document's indentation unit: a tab, or the smallest run of leading spaces seen (default 4)."""
    tabs = spaces = 0
    best = 0
    for line in text.splitlines()[-400:]:
        if line.startswith("\t"):
            tabs += 1
        elif line.startswith(" ") and line.strip():
            spaces += 1
            n = len(line) - len(line.lstrip(" "))
            if n and (best == 0 or n < best):
                best = n
    if tabs > spaces:
        return "\t"
    return " " * (best if 2 <= best <= 8 else 4)


def make_post_context(prefix: str, suffix: str, mode: Mode, window_chars: int = 4000) -> PostContext:
    """Build the post-processing context from the text on both sides of the cursor. Brackets and string state come
    from a scan of the whole prefix (bounded by scan_start): a window could start inside a docstring and invert both."""
    line_prefix = prefix[prefix.rfind("\n") + 1 :]
    nl = suffix.find("\n")
    rest = suffix if nl == -1 else suffix[:nl]
    next_lines = [] if nl == -1 else suffix[nl + 1 :].split("\n", 8)[:8]
    open_brackets, ends_open = _scan(prefix[scan_start(prefix) :])
    return PostContext(
        line_prefix=line_prefix,
        rest_of_line=rest,
        next_lines=next_lines,
        mode=mode,
        open_brackets=open_brackets,
        in_comment_or_string=_in_comment_or_string(line_prefix, ends_open),
        indent_unit=detect_indent_unit(prefix[-window_chars:]),
    )


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def looks_like_prose(line: str) -> bool:
    """A chat-style sentence rather than code: a known opener, or 5+ plain words with no code punctuation."""
    s = line.strip()
    if not s:
        return False
    if _PROSE_START.match(s):
        return True
    words = s.split()
    if len(words) < 5 or any(c in _CODE_CHARS for c in s):
        return False
    plain = [w.strip(".,;:!?") for w in words]
    return all(w.isalpha() for w in plain) and s[0].isupper() and s[-1] in ".!?"


def _strip_rest_overlap(first: str, rest: str) -> str:
    """Remove the longest tail of `first` that the text after the cursor already provides (e.g. `)` or `):`)."""
    rest = rest.rstrip()
    if not rest:
        return first
    body = first.rstrip()
    for k in range(min(len(body), len(rest)), 0, -1):
        if rest.startswith(body[-k:]):
            return body[:-k]
    return first


def _reserved_closers(stack: list[str], rest: str) -> list[str]:
    """The prefix's open brackets minus those the text after the cursor will close."""
    stack = list(stack)
    own: list[str] = []
    for c in rest:
        if c in _OPEN:
            own.append(c)
        elif c in _CLOSE:
            if own:
                own.pop()
            elif stack and stack[-1] == _CLOSE[c]:
                stack.pop()
    return stack


def _cut_unbalanced(text: str, stack: list[str]) -> str:
    """Cut before the first closer that has no matching opener (the model closed something it didn't open)."""
    stack = list(stack)
    for i, c in _code_brackets(text):
        if c in _OPEN:
            stack.append(c)
        elif not stack or stack[-1] != _CLOSE[c]:
            return text[:i]
        else:
            stack.pop()
    return text


def _width(line: str) -> int:
    """Indent width, a tab counting as 4 columns (after _normalize_indent tabs and spaces never mix)."""
    return len(line[: _indent_of(line)].expandtabs(4))


def _normalize_indent(lines: list[str], unit: str) -> list[str]:
    """Lines after the first get the document's indentation style (tabs vs spaces)."""
    out = lines[:1]
    for ln in lines[1:]:
        n = _indent_of(ln)
        lead = ln[:n]
        if unit == "\t" and "    " in lead:
            lead = lead.replace("    ", "\t")
        elif unit != "\t" and "\t" in lead:
            lead = lead.replace("\t", unit)
        out.append(lead + ln[n:])
    return out


def block_end(lines: list[str], line_prefix: str) -> int | None:
    """Index of the first completion line that leaves the block being written, else None.

    Base indent = the cursor line's. Cursor at a statement start (only indentation before it): the completion is
    the rest of the enclosing block, ended by the first line indented less. Cursor mid-line: the block is the one
    this line opens or continues: deeper lines are its body, the first line back at the base ends it (a closing
    bracket there is kept)."""
    first_full = line_prefix + (lines[0] if lines else "")
    base = _width(first_full) if first_full.strip() else len(line_prefix.expandtabs(4))
    at_statement_start = line_prefix.strip() == ""
    for i in range(1, len(lines)):
        line = lines[i]
        if not line.strip():
            continue
        w = _width(line)
        if w < base:
            return i
        if w > base or at_statement_start:
            continue
        return i + 1 if line.strip()[0] in "}])" else i
    return None


def postprocess(text: str, ctx: PostContext) -> str:
    """Turn a raw model continuation into what is shown at the cursor ("" = show nothing).

    Rules, in order (each has golden tests in tests/test_completion_postprocess.py):
    1. markdown fence: cut at ``` ; 2. line mode: first line only; block mode: up to the end of the block;
    3. never repeat the suffix: drop the tail the rest of the line already has, and cut at a line equal to the
    next line of the suffix; 4. balance brackets: cut at a closer with no opener (the prefix's open brackets
    count, minus those the rest of the line closes); 5. keep indentation: no extra indent on a first line typed
    after indentation, the document's indent unit for tabs/spaces; 6. drop prose outside comments/strings;
    7. drop whitespace-only output.
    """
    if not text:
        return ""
    text = text.replace("\r\n", "\n")
    fence = text.find("```")
    if fence != -1:
        text = text[:fence]
    lines = _normalize_indent(text.split("\n"), ctx.indent_unit)
    if ctx.line_prefix.strip() == "" and ctx.line_prefix:
        lines[0] = lines[0].lstrip(" \t")  # the user already typed the indentation
    if ctx.mode == "line":
        lines = lines[:1]
    else:
        end = block_end(lines, ctx.line_prefix)
        if end is not None:
            lines = lines[:end]
    # never repeat the code below
    nxt = next((ln.strip() for ln in ctx.next_lines if ln.strip()), "")
    if nxt and len(nxt) >= 2:
        for i in range(1, len(lines)):
            if lines[i].strip() == nxt:
                lines = lines[:i]
                break
    if len(lines) == 1:
        lines[0] = _strip_rest_overlap(lines[0], ctx.rest_of_line)
    elif ctx.rest_of_line.strip():
        # multi-line insertion before existing text on the line: its tail must not duplicate that text
        lines[-1] = _strip_rest_overlap(lines[-1], ctx.rest_of_line)
    out = _cut_unbalanced("\n".join(lines), _reserved_closers(ctx.open_brackets, ctx.rest_of_line))
    out_lines = out.rstrip("\n").split("\n")
    keep_tail = bool(ctx.rest_of_line.strip())  # "x " before existing text may be meant: keep the last line's spaces
    out = "\n".join(
        ln if (keep_tail and i == len(out_lines) - 1) else ln.rstrip(" \t") for i, ln in enumerate(out_lines)
    )
    if not out.strip():
        return ""
    if not ctx.in_comment_or_string:
        first = next((ln for ln in out.split("\n") if ln.strip()), "")
        if looks_like_prose(first):
            return ""
    return out



def block_ended(text: str, ctx: PostContext) -> bool:
    """While a block-mode answer streams in: has a complete line already left the block? Then decoding can stop."""
    lines = _normalize_indent(text.split("\n"), ctx.indent_unit)
    return len(lines) > 2 and block_end(lines[:-1], ctx.line_prefix) is not None
