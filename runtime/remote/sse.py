"""Incremental Server-Sent Events parser (the parts of the WHATWG rules that completion servers exercise).

Bytes arrive in arbitrary pieces: a line, a UTF-8 character or a CRLF pair may be split across reads. Lines end in
LF, CRLF or CR; `:` lines are keep-alive comments; `data:` lines accumulate until a blank line dispatches the event.
llama.cpp's server reports an error inside a stream as a non-standard `error: {...}` line: it is kept as an event of
type "error" instead of being ignored as the standard says, so the message reaches the user.
"""

from __future__ import annotations

import codecs
import re

import msgspec

_EOL = re.compile(r"\r\n|\r|\n")
MAX_LINE_CHARS = 1 << 20  # a "line" this long without an end is not an event stream


class SSEEvent(msgspec.Struct, frozen=True):
    event: str
    data: str


class SSEParser:
    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._buf = ""
        self._data: list[str] = []
        self._event = ""
        self.comments = 0  # keep-alive lines seen
        self.overlong = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        self._buf += self._decoder.decode(chunk)
        events: list[SSEEvent] = []
        start = 0
        while (m := _EOL.search(self._buf, start)) is not None:
            if m.group() == "\r" and m.end() == len(self._buf):
                break  # maybe the first half of a CRLF split across reads
            self._line(self._buf[start:m.start()], events)
            start = m.end()
        self._buf = self._buf[start:]
        if len(self._buf) > MAX_LINE_CHARS:
            self.overlong = True
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream. Leniently completes what was left: a last line without its end and an event without its
        blank line (some servers end on `data: [DONE]` alone). The caller treats these as possibly cut short."""
        self._buf += self._decoder.decode(b"", final=True)
        events: list[SSEEvent] = []
        if self._buf:
            self._line(self._buf.rstrip("\r"), events)
            self._buf = ""
        self._line("", events)
        return events

    def _line(self, line: str, events: list[SSEEvent]) -> None:
        if not line:
            if self._data:
                events.append(SSEEvent(self._event or "message", "\n".join(self._data)))
            self._data, self._event = [], ""
            return
        if line.startswith(":"):
            self.comments += 1
            return
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "error":  # llama.cpp: "error: {json}"
            self._event = "error"
            self._data.append(value)
        # id, retry and unknown fields: nothing a completion needs
