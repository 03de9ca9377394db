"""LSP positions <-> str indices.

LSP counts `character` in UTF-16 code units by default (an emoji is 2, a CJK ideograph 1, "é" 1); Python indexes
code points. Lines end at "\\n", "\\r\\n" or "\\r" (LSP spec). Out-of-range positions clamp: a line past the end
maps to the end of the text, a character past the end of its line to the line end (before its terminator), and a
position inside a surrogate pair to the code point's start. Nothing here raises on bad numbers.
"""

from __future__ import annotations

import re

_EOL = re.compile(r"\r\n|\r|\n")

UTF8, UTF16, UTF32 = "utf-8", "utf-16", "utf-32"


def _units(ch: str, encoding: str) -> int:
    cp = ord(ch)
    if encoding == UTF16:
        return 2 if cp > 0xFFFF else 1
    if encoding == UTF8:
        return 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4
    return 1


def line_starts(text: str) -> list[int]:
    """Index of the first char of every line (CRLF, CR and LF all end a line)."""
    return [0] + [m.end() for m in _EOL.finditer(text)]


def _line_end(text: str, start: int) -> int:
    m = _EOL.search(text, start)
    return len(text) if m is None else m.start()


def units_len(s: str, encoding: str = UTF16) -> int:
    """Length of `s` in the encoding's code units."""
    if encoding == UTF16:
        return len(s) + sum(1 for c in s if ord(c) > 0xFFFF)
    if encoding == UTF8:
        return len(s.encode("utf-8", "surrogatepass"))
    return len(s)


def position_to_index(text: str, line: int, character: int, encoding: str = UTF16) -> int:
    """Str index of an LSP position, clamped into the text."""
    starts = line_starts(text)
    if line < 0:
        return 0
    if line >= len(starts):
        return len(text)
    start = starts[line]
    end = _line_end(text, start)
    if character <= 0:
        return start
    if encoding == UTF32:
        return min(start + character, end)
    units = 0
    i = start
    while i < end:
        u = _units(text[i], encoding)
        if units + u > character:
            return i  # inside a multi-unit char: its start
        units += u
        i += 1
    return end


def index_to_position(text: str, index: int, encoding: str = UTF16) -> tuple[int, int]:
    """(line, character) of a str index, clamped into the text."""
    index = max(0, min(index, len(text)))
    starts = line_starts(text)
    # bisect for the line
    lo, hi = 0, len(starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if starts[mid] <= index:
            lo = mid
        else:
            hi = mid - 1
    start = starts[lo]
    end = _line_end(text, start)
    return lo, units_len(text[start : min(index, end)], encoding)


def clamp_position(text: str, line: int, character: int, encoding: str = UTF16) -> tuple[int, int]:
    """The valid position an out-of-range one clamps to."""
    return index_to_position(text, position_to_index(text, line, character, encoding), encoding)
