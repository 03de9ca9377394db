"""A real llama-cpp-python server (`python -m llama_cpp.server`) on a tiny GGUF with the Qwen FIM tokens, for the
tests that talk to a real inference server (tests/test_remote_real.py, tests/lsp/test_remote_backend.py). It can be
stopped and started again on the same port: the server that went away and came back."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT_S = 120  # safety nets only: a server that takes longer is skipped, a log line that never comes fails
LOG_WAIT_S = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cannot_run() -> str | None:
    """Why llama_cpp.server cannot run here (one line), else None."""
    for module in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette"):
        if importlib.util.find_spec(module) is None:
            return f"llama-cpp-python[server] is not installed here (no {module})"
    return None


class RealServer:
    def __init__(self, gguf: Path, log: Path, port: int, threads: int = 1, n_ctx: int = 2048):
        self.gguf, self.log_path, self.port, self.threads, self.n_ctx = gguf, log, port, threads, n_ctx
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def start(self) -> str | None:
        """Start the server and wait until it lists its model; None, or why it could not start (one line)."""
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf), "--host", "127.0.0.1",
                 "--port", str(self.port), "--n_ctx", str(self.n_ctx), "--n_threads", str(self.threads),
                 "--n_threads_batch", str(self.threads)],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                why = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
                last = [ln for ln in self.log().splitlines() if ln.strip()][-1:] or ["no output"]
                return f"llama_cpp.server could not start here ({why}): {last[0][:200]}"
            try:
                urllib.request.urlopen(f"{self.url}/models", timeout=1).read()
                return None
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    return f"llama_cpp.server did not answer within {START_TIMEOUT_S} s here"
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def wait_for_log(self, pattern: str, start: int) -> re.Match:
        """The first match of `pattern` in the log after offset `start`, waiting for the server to write it."""
        deadline = time.monotonic() + LOG_WAIT_S
        while time.monotonic() < deadline:
            if m := re.compile(pattern).search(self.log(), start):
                return m
            time.sleep(0.05)
        pytest.fail(f"the server never logged {pattern!r}; log tail: {self.log()[-600:]!r}")


def started_server(tmp: Path) -> RealServer:
    """A running server on a tiny Qwen GGUF in `tmp`, or pytest.skip with the one-line reason it cannot run."""
    from runtime.tiny import write_tiny_gguf

    if why := cannot_run():
        pytest.skip(why)
    server = RealServer(write_tiny_gguf(tmp / "tiny-qwen2.gguf", arch="qwen2"), tmp / "server.log", free_port())
    if why := server.start():
        pytest.skip(why)
    return server


@contextlib.contextmanager
def running_server(tmp: Path) -> Iterator[RealServer]:
    """started_server for the length of a `with` block (module fixtures yield it), stopped however the block ends."""
    server = started_server(tmp)
    try:
        yield server
    finally:
        server.stop()
