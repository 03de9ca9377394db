"""The stdio transport: our own frame reader in place of pygls's.

pygls 2 (`pygls.io_.run_async`) matches only `Content-Length: N\\r\\n` exactly, reads N bytes whatever N is and never
resynchronises: one huge length is a MemoryError, and a wrong length or a lowercase header leaves the server deaf for
good. Here header names are case-insensitive, a frame over MAX_FRAME_BYTES is skipped with a logged error, and a body
that is not JSON is dropped and reading resumes at the next `Content-Length` header. A header line can never occur
inside a valid JSON body (a raw newline cannot appear in a JSON string, a bare word cannot appear outside one), so a
header seen inside a body means that body's length was wrong: the body is cut there, which also means a too-long
length never waits for bytes the client will not send.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import threading
from typing import Any, Awaitable, Callable

from pygls.io_ import StdoutWriter

log = logging.getLogger("waferline.lsp")

MAX_FRAME_BYTES = 64 << 20
MAX_HEADER_BYTES = 8 << 10  # a header block longer than this without its blank line is junk
HEADER = re.compile(rb"content-length[ \t]*:[ \t]*(\d{1,19})[ \t]*\r?\n", re.IGNORECASE)
HEADERS_END = re.compile(rb"\n\r?\n")  # from the header line's own newline
KEEP_TAIL = 64  # bytes kept while no header is in sight: one may be split across reads
READ_CHUNK = 1 << 16


class FrameReader:
    """Splits a byte stream into frame bodies, resynchronising on the next `Content-Length` header after junk."""

    def __init__(self, read: Callable[[], Awaitable[bytes]]):
        self._read = read
        self._buf = bytearray()
        self._eof = False

    async def _more(self) -> bool:
        if not self._eof:
            chunk = await self._read()
            self._eof = not chunk
            self._buf += chunk
        return not self._eof

    def _skip(self, n: int, why: str) -> None:
        if n > 0:
            if bytes(self._buf[:n]).strip():
                log.warning("skipped %d bytes %s", n, why)
            del self._buf[:n]

    async def next_body(self) -> bytes | None:
        """The next frame's body (not necessarily JSON: see `reject`); None at the end of input."""
        while True:
            m = HEADER.search(self._buf)
            if m is None:
                self._skip(len(self._buf) - KEEP_TAIL, "of input that is not a Content-Length header")
                if not await self._more():
                    return None
                continue
            if m.start() > 0:
                self._skip(m.start(), "before a Content-Length header")
                continue
            end = HEADERS_END.search(self._buf, m.end() - 1)
            if end is None:
                if len(self._buf) > MAX_HEADER_BYTES:
                    self._skip(m.end(), "of a header block with no end")
                elif not await self._more():
                    return None
                continue
            again = HEADER.search(self._buf, 1, end.start() + 1)
            if again is not None:  # a second header before the blank line: the first one was junk
                self._skip(again.start(), "of an unterminated header block")
                continue
            length, start = int(m.group(1)), end.end()
            if length > MAX_FRAME_BYTES:
                log.error("frame of %d bytes is over the %d-byte limit: skipped; resynchronising on the next header",
                          length, MAX_FRAME_BYTES)
                del self._buf[:start]
                continue
            scanned = start
            while True:
                cut = HEADER.search(self._buf, max(start, scanned - KEEP_TAIL), start + length)
                if cut is not None:
                    log.error("Content-Length %d is wrong: a header follows %d bytes into the body", length, cut.start() - start)
                    body = bytes(self._buf[start : cut.start()])
                    del self._buf[: cut.start()]
                    return body
                if len(self._buf) >= start + length:
                    body = bytes(self._buf[start : start + length])
                    del self._buf[: start + length]
                    return body
                scanned = len(self._buf)
                if not await self._more():
                    return None

    def reject(self, body: bytes) -> None:
        """A body that did not parse: scan it again for a header (a too-short length cuts the next header in two)."""
        self._buf[:0] = body


def parse_body(body: bytes) -> Any:
    """JSON of a body, or raises ValueError; invalid UTF-8 is replaced, not fatal."""
    try:
        return json.loads(body.decode("utf-8", "replace"))
    except RecursionError:
        raise ValueError("nested too deeply") from None


async def serve(server, fd: int) -> None:
    """Read frames from `fd` and hand each message to the protocol until `exit` or the end of input."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)  # bounded: a flooding client blocks the reader thread

    def pump() -> None:  # a daemon thread: a read blocked on a silent client never holds up exit
        while True:
            try:
                chunk = os.read(fd, READ_CHUNK)
            except OSError:
                chunk = b""
            try:
                asyncio.run_coroutine_threadsafe(chunks.put(chunk), loop).result()
            except RuntimeError:  # the loop is gone
                return
            if not chunk:
                return

    threading.Thread(target=pump, name="lsp-stdin", daemon=True).start()
    frames = FrameReader(chunks.get)
    protocol = server.protocol
    while not server._stop_event.is_set():
        body = await frames.next_body()
        if body is None:
            return
        try:
            data = parse_body(body)
        except ValueError as exc:
            log.error("dropped a %d-byte frame that is not JSON (%s); resynchronising on the next header", len(body), exc)
            frames.reject(body)
            continue
        try:
            protocol.handle_message(protocol.structure_message(data) if isinstance(data, dict) else data)
        except Exception as exc:  # noqa: BLE001 - one bad message never stops the server (SystemExit from `exit` passes)
            log.error("cannot handle a message: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(0)  # let handlers started by this message run before the next one (as pygls does)


def start_stdio(server) -> int:
    """Serve over stdin/stdout; the exit code LSP asks for (0 after shutdown + exit, 1 for exit without shutdown)."""
    server._stop_event = threading.Event()
    server.protocol.set_writer(StdoutWriter(sys.stdout.buffer))
    try:
        asyncio.run(serve(server, sys.stdin.buffer.fileno()))
    except SystemExit as exc:  # raised by pygls's `exit` handler with the code
        return exc.code if isinstance(exc.code, int) else 0
    except BrokenPipeError:
        log.error("the client closed the connection")
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0
