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
import queue
import subprocess
import sys
import threading
import time
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
    return p


class StdioClient:
    """A minimal JSON-RPC client over a subprocess's stdio (what an editor does)."""

    def __init__(self, cmd: list[str], log_path: str | None = None, stderr=None):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
        self._next_id = 0
        self._pending: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self.notifications: queue.Queue = queue.Queue()
        self._log = open(log_path, "w", encoding="utf-8") if log_path else None
        self._t0 = time.perf_counter()
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    def _record(self, direction: str, msg: dict[str, Any]) -> None:
        if self._log is not None:
            with self._lock:
                self._log.write(json.dumps({"t_ms": round((time.perf_counter() - self._t0) * 1e3, 3), "dir": direction, "msg": msg}) + "\n")
                self._log.flush()

    def _send(self, msg: dict[str, Any]) -> None:
        body = json.dumps(msg).encode("utf-8")
        self._record("send", msg)
        with self._lock:
            self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            self.proc.stdin.flush()

    def _read_loop(self) -> None:
        out = self.proc.stdout
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
                q = self._pending.pop(msg["id"], None)
                if q is not None:
                    q.put(msg)
            else:
                self.notifications.put(msg)

    def _answer_server_request(self, msg: dict[str, Any]) -> None:
        result: Any = None
        if msg["method"] == "workspace/configuration":
            result = [None for _ in msg.get("params", {}).get("items", [])]
        elif msg["method"] == "workspace/applyEdit":
            result = {"applied": False}
        self._send({"jsonrpc": "2.0", "id": msg["id"], "result": result})

    def request(self, method: str, params: Any, timeout: float = 120.0) -> tuple[dict[str, Any], float]:
        """(response message, round-trip ms)."""
        with self._lock:
            self._next_id += 1
            mid = self._next_id
        q: queue.Queue = queue.Queue()
        self._pending[mid] = q
        t = time.perf_counter()
        self._send({"jsonrpc": "2.0", "id": mid, "method": method, "params": params})
        msg = q.get(timeout=timeout)
        return msg, (time.perf_counter() - t) * 1e3

    def notify(self, method: str, params: Any) -> None:
        self._send({"jsonrpc": "2.0", "method": method, "params": params})

    def close(self) -> None:
        try:
            self.request("shutdown", None, timeout=10)
            self.notify("exit", None)
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001
            self.proc.kill()
        if self._log is not None:
            self._log.close()


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
            resp, ms = client.request("textDocument/inlineCompletion", params)
            items = ((resp.get("result") or {}).get("items")) or []
            metrics = None
            while True:
                try:
                    n = client.notifications.get(timeout=0.5 if i == 0 else 0.2)
                except queue.Empty:
                    break
                if n.get("method") == "waferline/metrics":
                    metrics = n["params"]
                    break
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
