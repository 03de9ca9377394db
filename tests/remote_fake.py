"""A small in-process HTTP server for the remote-backend contract tests: scripted answers per (method, path),
recorded real responses replayed byte for byte, and a record of what the client sent and when it hung up."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "remote_fixtures"
SAFETY_S = 10  # a handler waiting for the client gives up after this (keeps a broken test from hanging)


class Seen:
    def __init__(self, method: str, path: str, headers: dict[str, str], body: bytes):
        self.method, self.path, self.headers, self.body = method, path, headers, body

    def json(self) -> dict:
        return json.loads(self.body)


Responder = Callable[["Handler", Seen], None]


class Handler(BaseHTTPRequestHandler):
    server: FakeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        self.server.requests.append(seen)
        responder = self.server.routes.get((self.command, self.path))
        if responder is None:
            json_answer(404, {"detail": "Not Found"})(self, seen)
        else:
            responder(self, seen)
        self.close_connection = True

    do_GET = do_POST = _serve

    def wait_for_hangup(self) -> None:
        """Block until the client closes the connection; tell the test it did."""
        self.connection.settimeout(SAFETY_S)
        try:
            while self.connection.recv(4096):
                pass
        except TimeoutError:
            return  # the client never hung up: `disconnected` stays unset and the test says so
        except OSError:
            pass  # a reset is a hang-up too: closing with unread data in its buffer makes the client's kernel send RST
        self.server.disconnected.set()

    def send_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.routes: dict[tuple[str, str], Responder] = {}
        self.requests: list[Seen] = []
        self.disconnected = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


def json_answer(status: int, obj: object) -> Responder:
    def respond(h: Handler, _seen: Seen) -> None:
        data = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(data)

    return respond


def sse_answer(body: bytes, *, cut_after: int | None = None, then_wait: bool = False) -> Responder:
    """`body` as a chunked text/event-stream, one chunk per event. `cut_after`: close the socket after that many
    events, without the final chunk (a stream cut in the middle). `then_wait`: after the events, keep the stream
    open until the client hangs up."""
    events = [e + b"\n\n" for e in body.split(b"\n\n") if e]

    def respond(h: Handler, _seen: Seen) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for i, event in enumerate(events):
            if cut_after is not None and i == cut_after:
                h.connection.shutdown(socket.SHUT_RDWR)
                return
            try:
                h.send_chunk(event)
            except (BrokenPipeError, ConnectionResetError):
                h.server.disconnected.set()  # the client hung up before the last event: what a cancel does
                return
        if then_wait:
            h.wait_for_hangup()
            return
        h.wfile.write(b"0\r\n\r\n")

    return respond


def raw_answer(data: bytes) -> Responder:
    """Bytes on the wire as they are: a recorded exchange replayed, or something no server should send."""
    def respond(h: Handler, _seen: Seen) -> None:
        h.wfile.write(data)
        h.wfile.flush()

    return respond


def recorded(name: str) -> Responder:
    return raw_answer((FIXTURES / "llama_cpp_python" / f"{name}.http").read_bytes())


def never_answer(h: Handler, _seen: Seen) -> None:
    h.wait_for_hangup()
