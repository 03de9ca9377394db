"""Pure helpers between LSP documents and the completion service (unit-tested without a server)."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import unquote, urlparse

import msgspec

from lsp_server.positions import UTF16, position_to_index

_DEF = re.compile(r"^([ \t]*)(async[ \t]+)?def[ \t]+\w+")
_TRIVIAL_BODY = {"pass", "...", "raise NotImplementedError", "raise NotImplementedError()"}


def cursor_split(text: str, line: int, character: int, encoding: str = UTF16) -> tuple[str, str, int]:
    """(prefix, suffix, index) at an LSP position (clamped into the text)."""
    i = position_to_index(text, line, character, encoding)
    return text[:i], text[i:], i


def workspace_relative(uri: str, roots: list[str]) -> tuple[str | None, str | None]:
    """(repo_name, relative_path) of a document for the `<repo_name>`/`<file_sep>` header; paths use '/'."""
    path = unquote(urlparse(uri).path) if uri.startswith("file:") else None
    if not path:
        return None, None
    best = None
    for root in roots:
        rp = unquote(urlparse(root).path) if root.startswith("file:") else root
        rp = rp.rstrip("/")
        if rp and (path == rp or path.startswith(rp + "/")) and (best is None or len(rp) > len(best)):
            best = rp
    if best is None:
        return None, PurePosixPath(path).name
    return PurePosixPath(best).name, path[len(best) + 1 :]


class DefSite(msgspec.Struct, kw_only=True):
    """An empty (or trivially stubbed) function: where its body goes and what it replaces."""

    header_end: int  # str index just after the ':' ending the signature
    body_indent: str
    replace_start: int  # text[replace_start:replace_end] is replaced by "\n" + indent + body
    replace_end: int


def _line_bounds(text: str) -> list[tuple[int, int]]:
    """(start, end) of every line, end before its "\n" or "\r\n"."""
    out = []
    start = 0
    for ln in text.split("\n"):
        out.append((start, start + len(ln) - ln.endswith("\r")))
        start += len(ln) + 1
    return out


def find_empty_def(text: str, line: int, indent_unit: str = "    ") -> DefSite | None:
    """A `def` whose signature covers or sits just above `line` and whose body is empty or only a stub."""
    bounds = _line_bounds(text)
    lines = [text[a:b] for a, b in bounds]
    if not 0 <= line < len(lines):
        return None
    for d in range(line, max(-1, line - 8), -1):
        m = _DEF.match(lines[d])
        if not m:
            continue
        indent = m.group(1)
        # the signature ends at the first line (from d) ending with ':' once brackets balance
        depth = 0
        end_line = None
        for k in range(d, min(len(lines), d + 30)):
            code = lines[k].split("#", 1)[0]
            depth += sum(code.count(c) for c in "([{") - sum(code.count(c) for c in ")]}")
            if depth <= 0 and code.rstrip().endswith(":"):
                end_line = k
                break
        if end_line is None or end_line + 1 < line - 1:
            return None
        header_end = bounds[end_line][0] + len(lines[end_line].split("#", 1)[0].rstrip())
        after = lines[end_line][len(lines[end_line].split("#", 1)[0].rstrip()) :]
        if after.strip() and not after.strip().startswith("#"):
            return None  # one-line def: `def f(): return 1`
        body = [(k, lines[k]) for k in range(end_line + 1, len(lines)) if lines[k].strip()]
        body_indent = indent + indent_unit
        if not body or len(body[0][1]) - len(body[0][1].lstrip()) <= len(indent):
            end = bounds[end_line][1]
            return DefSite(header_end=header_end, body_indent=body_indent, replace_start=end, replace_end=end)
        k, first = body[0]
        rest_deeper = len(body) > 1 and len(body[1][1]) - len(body[1][1].lstrip()) > len(indent)
        if first.strip() in _TRIVIAL_BODY and not rest_deeper:
            ind = first[: len(first) - len(first.lstrip())]
            return DefSite(header_end=header_end, body_indent=ind, replace_start=bounds[end_line][1], replace_end=bounds[k][1])
        return None
    return None
