"""UTF-16 positions <-> str indices (lsp_server.positions): emoji, CJK, CRLF, out of range."""

import pytest
from hypothesis import given, settings, strategies as st

from lsp_server.positions import clamp_position, index_to_position, line_starts, position_to_index, units_len

TEXT = "a😀b\r\n中文x\rz\nlast"


@pytest.mark.parametrize(
    "line, char, index",
    [
        (0, 0, 0), (0, 1, 1), (0, 3, 2), (0, 4, 3),  # 😀 is 2 UTF-16 units, 1 code point
        (0, 2, 1),  # inside the surrogate pair: clamps to the emoji's start
        (0, 99, 3),  # past the line end: the line end, before \r\n
        (1, 0, 5), (1, 2, 7), (1, 3, 8),  # CJK: 1 unit each
        (2, 1, 10), (3, 4, 15), (3, 5, 15),
        (9, 0, 15), (-1, 5, 0), (1, -3, 5),  # line out of range
    ],
)
def test_position_to_index(line, char, index):
    assert position_to_index(TEXT, line, char) == index


def test_line_starts_all_terminators():
    assert line_starts(TEXT) == [0, 5, 9, 11]


def test_index_to_position_and_clamp():
    assert index_to_position(TEXT, 3) == (0, 4)
    assert index_to_position(TEXT, 4) == (0, 4)  # between \r and \n: end of line 0
    assert index_to_position(TEXT, 999) == (3, 4)
    assert clamp_position(TEXT, 1, 99) == (1, 3)
    assert clamp_position(TEXT, 50, 50) == (3, 4)


def test_utf8_and_utf32():
    assert position_to_index("é😀x", 0, 6, "utf-8") == 2
    assert position_to_index("é😀x", 0, 2, "utf-32") == 2
    assert index_to_position("é😀x", 2, "utf-8") == (0, 6)
    assert units_len("é😀x", "utf-16") == 4


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab \n\r\t😀中é")), max_size=40), st.integers(0, 50))
def test_roundtrip(text, index):
    index = min(index, len(text))
    line, char = index_to_position(text, index)
    back = position_to_index(text, line, char)
    # a round trip lands on the same index unless the index was inside a line terminator
    assert back == index or text[back:index] in ("\r", "\n", "\r\n")
