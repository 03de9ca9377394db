"""`waferline serve` and `waferline complete` (lsp_server/cli.py dispatches here).

`serve` runs the language server over stdio (default), TCP or WebSocket; logs go to stderr or --log-file, never
stdout (stdout is the protocol). `complete FILE:LINE:COL` is the harness: it starts `python -m lsp_server` as a
subprocess over stdio exactly as an editor would (initialize, initialized, didOpen, inlineCompletion), prints the
suggestion and the timings, and can record the whole exchange as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime.errors import WaferlineError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if not 1 <= int(port) <= 65535:  # asyncio raises OverflowError past 65535 only once it binds
        raise argparse.ArgumentTypeError(f"port must be in 1..65535, got {port}")
    return host or "127.0.0.1", int(port)


def add_serve_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("serve", help="run the language server (stdio by default)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--stdio", action="store_true", help="serve over stdin/stdout (default)")
    group.add_argument("--tcp", type=_host_port, metavar="HOST:PORT", help="serve over TCP")
    group.add_argument("--ws", type=_host_port, metavar="HOST:PORT", help="serve over WebSocket")
    p.add_argument("--log-file", help="write logs here instead of stderr")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def setup_logging(log_file: str | None, level: str) -> None:
    try:
        handler: logging.Handler = logging.FileHandler(log_file, encoding="utf-8") if log_file else logging.StreamHandler(sys.stderr)
    except OSError as exc:
        raise WaferlineError(f"cannot write the log file {log_file}: {exc.strerror}") from None
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    from lsp_server.server import configure_log_level

    configure_log_level(level)


def run_serve(args: argparse.Namespace) -> int:
    setup_logging(getattr(args, "log_file", None), getattr(args, "log_level", "info"))
    from lsp_server.server import create_server
    from lsp_server.stdio import start_stdio

    server = create_server()
    try:
        if getattr(args, "tcp", None):
            server.start_tcp(*args.tcp)
        elif getattr(args, "ws", None):
            server.start_ws(*args.ws)
        else:
            return start_stdio(server)  # our frame reader: pygls's dies on a bad Content-Length
    finally:
        server.scheduler.close()
    return 0


# ---------------------------------------------------------------------------------------------------------------
# Harness


def add_complete_parser(subparsers) -> argparse.ArgumentParser:
    from runtime.checks import float_arg, int_arg
    from runtime.remote.cli_options import add_remote_options

    def location(text: str) -> str:
        """FILE:LINE:COL checked as it is parsed (parse_location's SystemExit would skip argparse's one-line error)."""
        try:
            parse_location(text)
        except SystemExit as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    p = subparsers.add_parser("complete", help="ask the server for one completion, as an editor would")
    p.add_argument("location", type=location, metavar="FILE:LINE:COL", help="1-based line and column (column in characters)")
    p.add_argument("--model", help="model name or bundle path (default: the server's default)")
    p.add_argument("--mode", choices=["line", "block"], help="single-line or block completion")
    p.add_argument("--max-new-tokens", type=int_arg(1, 16384))
    p.add_argument("--log", metavar="traffic.jsonl", help="record every JSON-RPC message with a timestamp")
    p.add_argument("--repeat", type=int_arg(1, 10000), default=1, help="ask N times (the first is cold, the rest warm)")
    p.add_argument("--timeout", type=float_arg(0.0, 86400.0, lo_open=True), default=300.0,
                   help="seconds to wait for the model to load")
    p.add_argument("--server-log", help="the server's log file (default: its stderr is shown)")
    add_remote_options(p)
    return p


NO_PARAMS: Any = object()  # send_request's default: the message has no "params" member (legal for some methods)
REQUEST_CANCELLED = -32800  # LSP's error code for a request the client cancelled


def frame(body: bytes) -> bytes:
    """One LSP frame: the Content-Length header, the blank line, the body."""
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class ServerExited(ConnectionError):
    """The server closed its stdout (exited or crashed) before answering."""


class Pending:
    """One request sent and its answer to come. `sent`/`received` are perf_counter stamps taken where the bytes
    are written and where the reader thread parses the answer, so a caller busy elsewhere does not inflate `ms`."""

    __slots__ = ("id", "method", "sent", "received", "message", "cancelled", "seen", "_event", "__weakref__")

    def __init__(self, mid: int, method: str | None):
        self.id = mid
        self.method = method
        self.sent = 0.0
        self.received: float | None = None
        self.message: dict[str, Any] | None = None
        self.cancelled = False  # $/cancelRequest was sent for it (the answer still comes: a result or an error)
        self.seen: int | None = None  # notifications received before the answer: notifications_of(until=seen)
        self._event = threading.Event()

    def put(self, msg: dict[str, Any] | None) -> None:
        """Called by the reader with the answer (None: the server exited)."""
        self.received = time.perf_counter()
        self.message = msg
        self._event.set()

    def done(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """The answer (a result or an error message); TimeoutError, or ServerExited when it can never come."""
        if not self._event.wait(timeout):
            raise TimeoutError(f"no answer to {self.method} (id {self.id}) within {timeout} s")
        if self.message is None:
            raise ServerExited(f"the server exited before answering {self.method} (id {self.id})")
        return self.message

    @property
    def ms(self) -> float:
        """Round trip in ms (NaN while unanswered)."""
        return float("nan") if self.received is None else (self.received - self.sent) * 1e3

    @property
    def error_code(self) -> int | None:
        err = (self.message or {}).get("error")
        return err.get("code") if isinstance(err, dict) else None


class StdioClient:
    """A JSON-RPC client over a subprocess's stdio, as an editor drives a language server.

    Public API (benches and tests use only this):
      request(method, params) -> (answer, ms)   blocking call
      send_request(method, params) -> Pending   non-blocking; Pending.wait(timeout), .done(), .ms, .id
      wait(id or Pending, timeout) -> answer;  cancel(id or Pending): $/cancelRequest
      notify(method, params);  write_raw(bytes): bytes as they are, for framing tests
      seen() -> int;  notifications_of(method, since, until) -> [params];  wait_notification(method, timeout, since) -> params
    Requests from the server (workspace/configuration, applyEdit) are answered minimally.
    """

    def __init__(self, cmd: list[str], log_path: str | None = None, stderr=None):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        self._next_id = 0
        self._pending: dict[int, Pending] = {}  # unanswered: id -> Pending
        self._handles: weakref.WeakValueDictionary[int, Pending] = weakref.WeakValueDictionary()  # for wait/cancel by id
        self._lock = threading.Lock()  # one writer at a time, and id allocation (the reader never takes it)
        self._log_lock = threading.Lock()
        self._notes: list[dict[str, Any]] = []  # every notification, in order (seen()/since index into it)
        self._notes_cv = threading.Condition()
        self.exited = False
        self._log = open(log_path, "w", encoding="utf-8") if log_path else None
        self._t0 = time.perf_counter()
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    def __enter__(self) -> StdioClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -------------------------------------------------------------------------------------- wire

    def _record(self, direction: str, msg: dict[str, Any]) -> None:
        if self._log is not None:
            with self._log_lock:
                self._log.write(json.dumps({"t_ms": round((time.perf_counter() - self._t0) * 1e3, 3), "dir": direction, "msg": msg}) + "\n")
                self._log.flush()

    def write_raw(self, data: bytes) -> None:
        """Write bytes to the server's stdin exactly as given (no framing, not logged)."""
        with self._lock:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def _send(self, msg: dict[str, Any], wrap: Callable[[bytes], bytes] = frame, pending: Pending | None = None) -> None:
        self._record("send", msg)
        data = wrap(json.dumps(msg).encode("utf-8"))
        with self._lock:
            if pending is not None:
                pending.sent = time.perf_counter()
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def _read_loop(self) -> None:
        out = self.proc.stdout
        try:
            while True:
                length = None
                while True:
                    line = out.readline()
                    if not line:
                        return
                    if line in (b"\r\n", b"\n"):
                        break
                    name, _, value = line.decode("ascii", "replace").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length is None:
                    continue
                msg = json.loads(out.read(length))
                self._record("recv", msg)
                if "id" in msg and "method" in msg:  # a request from the server: answer minimally
                    self._answer_server_request(msg)
                elif "id" in msg:
                    target = self._pending.pop(msg["id"], None)  # atomic; no lock (a writer may hold one, blocked)
                    if isinstance(target, Pending):
                        target.seen = len(self._notes)  # only this thread appends
                    if target is not None:
                        target.put(msg)
                else:
                    with self._notes_cv:
                        self._notes.append(msg)
                        self._notes_cv.notify_all()
        finally:
            self.exited = True
            for mid in list(self._pending):
                target = self._pending.pop(mid, None)
                if isinstance(target, Pending):
                    target.put(None)  # wait() raises ServerExited now instead of timing out
            with self._notes_cv:
                self._notes_cv.notify_all()

    def _answer_server_request(self, msg: dict[str, Any]) -> None:
        result: Any = None
        if msg["method"] == "workspace/configuration":
            result = [None for _ in msg.get("params", {}).get("items", [])]
        elif msg["method"] == "workspace/applyEdit":
            result = {"applied": False}
        self._send({"jsonrpc": "2.0", "id": msg["id"], "result": result})

    # -------------------------------------------------------------------------------------- requests

    def send_request(self, method: str, params: Any = NO_PARAMS, *, wrap: Callable[[bytes], bytes] = frame) -> Pending:
        """Send a request without waiting; its Pending carries the id, the answer and the round trip. `wrap` frames
        the JSON body (framing tests pass their own)."""
        with self._lock:
            self._next_id += 1
            p = Pending(self._next_id, method)
            self._pending[p.id] = p
            self._handles[p.id] = p
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": p.id, "method": method}
        if params is not NO_PARAMS:
            msg["params"] = params
        if self.exited:
            p.put(None)
            return p
        try:
            self._send(msg, wrap, p)
        except OSError:  # BrokenPipeError: the server is gone
            self._pending.pop(p.id, None)
            p.put(None)
        return p

    def _handle(self, ref: int | Pending) -> Pending:
        if isinstance(ref, Pending):
            return ref
        p = self._handles.get(ref)
        if p is None:
            raise KeyError(f"no request with id {ref} (answered and no longer held)")
        return p

    def wait(self, ref: int | Pending, timeout: float | None = None) -> dict[str, Any]:
        """The answer to a request sent with send_request, by id or Pending (see Pending.wait)."""
        return self._handle(ref).wait(timeout)

    def cancel(self, ref: int | Pending) -> None:
        """$/cancelRequest for a request. Its answer still comes (LSP: a result, or error REQUEST_CANCELLED); a
        request already answered is left alone (nothing is sent)."""
        p = self._handle(ref) if isinstance(ref, Pending) else self._handles.get(ref)
        if p is not None and p.done():
            return
        if p is not None:
            p.cancelled = True
        mid = ref.id if isinstance(ref, Pending) else ref
        self.notify("$/cancelRequest", {"id": mid})

    def request(self, method: str, params: Any, timeout: float = 120.0) -> tuple[dict[str, Any], float]:
        """Send and wait: (answer message, round-trip ms)."""
        p = self.send_request(method, params)
        msg = p.wait(timeout)
        return msg, p.ms

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    # -------------------------------------------------------------------------------------- notifications

    def seen(self) -> int:
        """How many notifications have arrived: a mark for `since` (what arrives after this call has index >= it)."""
        with self._notes_cv:
            return len(self._notes)

    def notifications_of(self, method: str, since: int = 0, until: int | None = None) -> list[Any]:
        """The params of every notification of `method` received so far with since <= index < until (nothing is
        consumed: any number of readers see them all). since=client.seen() before a request and until=its
        Pending.seen give what the server sent while it was being answered."""
        with self._notes_cv:
            return [n.get("params") for n in self._notes[since:until] if n.get("method") == method]

    def wait_notification(self, method: str, timeout: float, since: int = 0) -> Any:
        """The params of the first notification of `method` with index >= since, waiting up to `timeout` s for it;
        TimeoutError if none comes (ServerExited if the server is gone)."""
        deadline = time.monotonic() + timeout
        i = since
        with self._notes_cv:
            while True:
                for n in self._notes[i:]:
                    if n.get("method") == method:
                        return n.get("params")
                i = len(self._notes)
                left = deadline - time.monotonic()
                if self.exited:
                    raise ServerExited(f"the server exited before sending {method}")
                if left <= 0:
                    raise TimeoutError(f"no {method} notification within {timeout} s")
                self._notes_cv.wait(left)

    def close(self) -> None:
        try:
            self.request("shutdown", None, timeout=10)
            self.notify("exit", None)
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001
            self.proc.kill()
            self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def server_command() -> list[str]:
    return [sys.executable, "-m", "lsp_server"]


def wait_ready(client: StdioClient, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        status, _ = client.request("waferline/status", None)
        st = status.get("result") or {}
        if st.get("state") != "loading" or time.monotonic() > deadline:
            return st
        time.sleep(0.05)


def parse_location(text: str) -> tuple[Path, int, int]:
    path, _, rest = text.rpartition(":")
    path2, _, line = path.rpartition(":")
    if not path2 or not line.isdigit() or not rest.isdigit():
        raise SystemExit(f"expected FILE:LINE:COL (1-based), got {text!r}")
    return Path(path2), int(line), int(rest)


COMPLETE_FILE_LIMIT = 8 << 20  # bytes of source sent to the server in one didOpen


def run_complete(args: argparse.Namespace) -> int:
    from lsp_server.positions import units_len
    from runtime.checks import read_text_file
    from runtime.remote.cli_options import remote_settings

    path, line1, col1 = parse_location(args.location)
    try:  # all before the server starts (a failure past that would leave it running); one line for either entry
        text = read_text_file(path, "source file", COMPLETE_FILE_LIMIT)
        for flag, target in (("--log", args.log), ("--server-log", args.server_log)):
            try:
                if target:
                    open(target, "w").close()
            except OSError as exc:
                raise WaferlineError(f"cannot write {flag} {target}: {exc.strerror}") from None
    except WaferlineError as exc:
        print(f"waferline: error: {exc}", file=sys.stderr)
        return 2
    lines = text.splitlines(keepends=True)
    line0 = max(0, line1 - 1)
    line_text = lines[line0].rstrip("\r\n") if line0 < len(lines) else ""
    character = units_len(line_text[: max(0, col1 - 1)])  # columns are characters; LSP wants UTF-16 units
    options: dict[str, Any] = {}
    if args.model:
        options["model"] = str(Path(args.model).resolve()) if Path(args.model).exists() else args.model
    if args.mode:
        options["mode"] = args.mode
    if args.max_new_tokens:
        options["maxNewTokens"] = args.max_new_tokens
    options.update(remote_settings(args))
    stderr = open(args.server_log, "w") if args.server_log else None
    t_start = time.perf_counter()
    client = StdioClient(server_command(), args.log, stderr=stderr)
    try:
        uri = path.resolve().as_uri()
        init, init_ms = client.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": path.resolve().parent.as_uri(),
                "capabilities": {"textDocument": {"inlineCompletion": {}}, "window": {"workDoneProgress": True}},
                "initializationOptions": {"waferline": options},
                "clientInfo": {"name": "waferline-complete"},
            },
        )
        if "error" in init:
            print(f"initialize failed: {init['error']}", file=sys.stderr)
            return 1
        client.notify("initialized", {})
        client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}})
        t_load = time.perf_counter()
        st = wait_ready(client, args.timeout)
        load_ms = (time.perf_counter() - t_load) * 1e3
        if st.get("state") != "ready":
            print(f"waferline complete: server not ready: {st.get('state')}: {st.get('message')}", file=sys.stderr)
            return 1
        params = {
            "textDocument": {"uri": uri},
            "position": {"line": line0, "character": character},
            "context": {"triggerKind": 2},
        }
        for i in range(max(1, args.repeat)):
            mark = client.seen()
            resp, ms = client.request("textDocument/inlineCompletion", params)
            items = ((resp.get("result") or {}).get("items")) or []
            try:  # sent before the answer; none when the server skipped the request
                metrics = client.wait_notification("waferline/metrics", 0.5 if i == 0 else 0.2, since=mark)
            except TimeoutError:
                metrics = None
            suggestion = items[0]["insertText"] if items else ""
            if i == 0:
                print("suggestion:")
                print(suggestion if suggestion else "(none)")
            m = metrics or {}
            print(
                f"[{i + 1}] round trip {ms:.1f} ms | cpu {m.get('cpu_ms', 0):.1f} ms | new tokens {m.get('new_tokens', 0)} | "
                f"{m.get('cpu_tokens_per_s', 0):.1f} tok/s | prompt {m.get('prompt_tokens', 0)} tokens, "
                f"{m.get('reused_tokens', 0)} reused | wafer {m.get('wafer_ms')} ms | cached {m.get('cached', False)}"
            )
        print(f"initialize {init_ms:.1f} ms | model ready after {load_ms:.0f} ms | total {(time.perf_counter() - t_start):.2f} s")
    finally:
        client.close()
        if stderr is not None:
            stderr.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (the real one is lsp_server.cli:main): `python -m lsp_server.cli_serve complete ...`."""
    parser = argparse.ArgumentParser(prog="waferline")
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_parser(sub)
    add_complete_parser(sub)
    args = parser.parse_args(argv)
    return run_serve(args) if args.command == "serve" else run_complete(args)


if __name__ == "__main__":
    sys.exit(main())
