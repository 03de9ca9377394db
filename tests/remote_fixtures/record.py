"""Record real llama-cpp-python server answers, byte for byte, for the dialect contract tests to replay.

    python tests/remote_fixtures/record.py            (from the repository root)

Starts `python -m llama_cpp.server` on a tiny Qwen-vocabulary GGUF (runtime.tiny) with an API key, sends each request
on a raw socket (`Connection: close`) and writes status line, headers and body -- chunked framing included -- to
tests/remote_fixtures/llama_cpp_python/NAME.http. The server's version goes into VERSION.txt.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from runtime.remote.fim import FIM_TEMPLATES, PromptParts, render_fim
from runtime.tiny import write_tiny_gguf

OUT = Path(__file__).resolve().parent / "llama_cpp_python"
KEY = "recording-key"
PARTS = PromptParts(prefix="def fibonacci(n):\n    if n", suffix="\n    return n\n", path="fib.py", repo="demo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exchange(port: int, method: str, path: str, body: dict | None = None, key: str | None = KEY) -> bytes:
    payload = b"" if body is None else json.dumps(body).encode()
    head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close", "User-Agent: waferline"]
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    if key:
        head.append(f"Authorization: Bearer {key}")
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def main() -> None:
    import llama_cpp

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        gguf = write_tiny_gguf(Path(tmp) / "tiny-qwen2.gguf", arch="qwen2")
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                                 "--port", str(port), "--n_ctx", "512", "--n_threads", "1", "--api_key", KEY],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(600):
                try:
                    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models",
                                                 headers={"Authorization": f"Bearer {KEY}"})
                    urllib.request.urlopen(req, timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.1)
            raw = render_fim(FIM_TEMPLATES["qwen2.5-coder"], PARTS)
            stream = {"prompt": raw, "max_tokens": 8, "temperature": 0.0, "stream": True,
                      "stream_options": {"include_usage": True}, "stop": ["<|file_sep|>"]}
            records = {
                "models": exchange(port, "GET", "/v1/models"),
                "completions_raw_stream": exchange(port, "POST", "/v1/completions", stream),
                "completions_suffix_stream": exchange(port, "POST", "/v1/completions", {
                    "prompt": PARTS.prefix, "suffix": PARTS.suffix, "max_tokens": 8, "temperature": 0.0,
                    "stream": True}),
                "unauthorized": exchange(port, "POST", "/v1/completions", stream, key="wrong-key"),
                "not_found": exchange(port, "POST", "/completions", stream),
                "validation_error": exchange(port, "POST", "/v1/completions", {"prompt": raw, "max_tokens": "many"}),
            }
        finally:
            proc.terminate()
            proc.wait(10)
    for name, data in records.items():
        (OUT / f"{name}.http").write_bytes(data)
        status = data.split(b"\r\n", 1)[0].decode()
        print(f"{name}: {status} ({len(data)} bytes)")
    (OUT / "VERSION.txt").write_text(f"llama-cpp-python {llama_cpp.__version__}, recorded "
                                     f"{time.strftime('%Y-%m-%d')} by tests/remote_fixtures/record.py\n")


if __name__ == "__main__":
    main()
