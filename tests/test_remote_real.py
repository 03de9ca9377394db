"""Remote backends against a REAL server: llama-cpp-python's `python -m llama_cpp.server` on a tiny GGUF with the
Qwen FIM tokens (runtime.tiny), started on 127.0.0.1. Skipped with a one-line reason when that server cannot start
here. What the server does is read from its own log (its `Llama.generate: N prefix-match hit` and `disconnected`
lines), never from wall-clock thresholds."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import msgspec
import pytest
from llama_server import RealServer, running_server

from runtime.remote import FIM_TEMPLATES, PromptParts, RemoteBackend, RemoteConfig, render_fim
from runtime.remote.fim import DISTINCTIVE_MARKERS

PARTS = PromptParts(prefix="import os\n\n\ndef fibonacci(n):\n    if n", suffix="\n    return n\n", path="fib.py",
                    repo="demo", extra=[("util.py", "def add(a, b):\n    return a + b")])
MARKERS = tuple(m for t in FIM_TEMPLATES.values() for m in t.special if m.startswith("<|")) + DISTINCTIVE_MARKERS


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("real-server")) as server:
        yield server


def raw_backend(server: RealServer, **kw) -> RemoteBackend:
    return RemoteBackend(RemoteConfig(dialect="openai-raw", endpoint=server.url, fim_template="qwen2.5-coder", **kw))


def test_real_probe_reports_the_model_and_picks_raw_prompts(real_server):
    b = RemoteBackend(RemoteConfig(dialect="openai", endpoint=real_server.url, fim_template="qwen2.5-coder"))
    result = b.probe()
    print(f"probe: {result.message}")
    assert result.reachable and result.models == [str(real_server.gguf)]
    assert (result.server, result.dialect, b.dialect) == ("llama-cpp-python", "openai-raw", "openai-raw")
    assert "token id 0" in b.fallback_reason


def test_real_suggestions_stream_without_special_tokens(real_server):
    b = raw_backend(real_server, max_tokens=24)
    pieces = list(b.stream(PARTS, threading.Event()))
    text = "".join(pieces)
    print(f"stream: {len(pieces)} pieces {text!r}, {b.last_stats}")
    assert len(pieces) > 1 and text.strip()
    assert not [m for m in MARKERS if m in text]
    assert b.last_stats.finish in ("length", "stop")  # not "marker": the server itself sent no special token text


def test_real_cancel_after_the_first_piece_frees_the_server(real_server):
    """A long request is cancelled (from another thread) after its first piece; the server logs the disconnect --
    its generation loop stopped -- and only then is the next request sent, which streams to its end."""
    long, short = raw_backend(real_server, max_tokens=1500), raw_backend(real_server, max_tokens=8)
    mark = len(real_server.log())
    cancel = threading.Event()
    pieces = long.stream(PARTS, cancel)
    first = next(pieces)
    setter = threading.Thread(target=cancel.set)
    setter.start()
    setter.join()
    rest = list(pieces)
    assert first and rest == [] and long.last_stats.finish == "cancelled"
    gone = real_server.wait_for_log(r"\bdisconnected\b", mark)
    answer = list(short.stream(PARTS, threading.Event()))
    after = real_server.log()[gone.end():]
    print(f"cancelled after {first!r}; next request: {answer}, {short.last_stats}")
    assert answer and short.last_stats.finish == "length"
    assert "POST /v1/completions" in after  # the next request reached the server after the disconnect


def _prompt_tokens_after_typing(server: RealServer, template) -> tuple[int, int]:
    """(reused, evaluated) prompt tokens of a request sent right after the same one with one character less."""
    base = msgspec.structs.replace(PARTS, prefix=f"# session {time.time_ns()}\n" + PARTS.prefix)
    typed = msgspec.structs.replace(base, prefix=base.prefix + " ")
    for parts in (base, typed):
        mark = len(server.log())
        req = urllib.request.Request(f"{server.url}/completions", json.dumps(
            {"prompt": render_fim(template, parts), "max_tokens": 4, "temperature": 0.0}).encode(),
            {"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=60).read()
    hit = server.wait_for_log(r"Llama\.generate: (\d+) prefix-match hit, remaining (\d+) prompt tokens", mark)
    return int(hit.group(1)), int(hit.group(2))


def test_real_prompt_cache_reuses_everything_before_the_typed_character(real_server):
    """Typing one character re-evaluates only the end of the prompt: our layout puts the cursor line after
    <|fim_middle|>, so the server's prefix match covers the repo header, the lines above and the suffix. The
    textbook layout (whole prefix before <|fim_suffix|>) re-evaluates the suffix and the middle on every keystroke."""
    ours = FIM_TEMPLATES["qwen2.5-coder"]
    textbook = msgspec.structs.replace(ours, line_after_middle=False)
    reused, evaluated = _prompt_tokens_after_typing(real_server, ours)
    t_reused, t_evaluated = _prompt_tokens_after_typing(real_server, textbook)
    print(f"prompt cache after one typed character: cursor line after <|fim_middle|>: {reused} prompt tokens "
          f"reused, {evaluated} evaluated; textbook PSM: {t_reused} reused, {t_evaluated} evaluated")
    assert evaluated <= 3 < reused
    assert evaluated < t_evaluated


def test_real_llama_cpp_python_suffix_puts_token_zero_where_fim_tokens_belong(real_server):
    """Why the probe switches llama-cpp-python to raw prompts: its `suffix` answer is the greedy answer to
    [0] + prefix + [0] + (tokens of "☺" + suffix)[2:] + [0] -- token 0 is <|endoftext|> here -- and not the
    answer to the model's FIM layout."""
    import llama_cpp

    prefix, suffix = "def fibonacci(n):\n    ", "\n    return n\n"

    def server_answer(body: dict) -> str:
        req = urllib.request.Request(f"{real_server.url}/completions", json.dumps(
            {**body, "max_tokens": 12, "temperature": 0.0}).encode(), {"Content-Type": "application/json"})
        return json.load(urllib.request.urlopen(req, timeout=60))["choices"][0]["text"]

    llm = llama_cpp.Llama(str(real_server.gguf), n_ctx=512, n_threads=1, verbose=False)
    assert llm.detokenize([0], special=True) == b"<|endoftext|>"
    tok = lambda s: llm.tokenize(s.encode(), add_bos=False, special=False)
    ids = [0] + tok(prefix) + [0] + tok("☺" + suffix)[2:] + [0]
    token_zero = llm.create_completion(ids, max_tokens=12, temperature=0.0)["choices"][0]["text"]
    with_suffix = server_answer({"prompt": prefix, "suffix": suffix})
    fim = server_answer({"prompt": f"<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>"})
    print(f"llama-cpp-python {llama_cpp.__version__}: suffix answer {with_suffix!r} == token-0 layout "
          f"{token_zero!r}; FIM layout answers {fim!r}")
    assert with_suffix == token_zero != fim, (
        f"llama-cpp-python {llama_cpp.__version__} no longer uses token 0 for `suffix`: revisit "
        "LLAMA_CPP_PYTHON_SUFFIX in runtime/remote/backend.py")


def test_waferline_complete_asks_the_remote_server_and_says_one_line_when_it_is_down(real_server, tmp_path):
    """`waferline complete --backend openai-raw --endpoint URL`: the stdio harness through the language server to the
    real server; a refused endpoint is one line and exit 1, not a hang."""
    import subprocess
    import sys

    src = tmp_path / "fib.py"
    src.write_text(PARTS.prefix + PARTS.suffix)
    cmd = [sys.executable, "-m", "lsp_server.cli", "complete", f"{src}:5:9", "--backend", "openai-raw",
           "--fim-template", "qwen2.5-coder", "--timeout", "60"]
    ok = subprocess.run(cmd + ["--endpoint", real_server.url], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "suggestion:" in ok.stdout and "round trip" in ok.stdout
    assert not any(m in ok.stdout for m in MARKERS)
    down = subprocess.run(cmd + ["--endpoint", "http://127.0.0.1:9/v1"], capture_output=True, text=True, timeout=120)
    assert down.returncode == 1
    assert "server not ready: error" in down.stderr and "Traceback" not in down.stderr


def test_waferline_generate_streams_the_remote_servers_completion(real_server, tmp_path):
    """`waferline generate --backend openai-raw --endpoint URL`: the prompt completed by the real server, streamed to
    stdout, with an empty model cache (nothing loads locally); --json carries the same text; `--backend openai`
    against llama-cpp-python says once why it sends raw FIM prompts."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "WAFERLINE_CACHE": str(tmp_path / "empty-cache")}
    cmd = [sys.executable, "-m", "lsp_server.cli", "generate", "--prompt", PARTS.prefix, "--max-tokens", "16",
           "--endpoint", real_server.url, "--fim-template", "qwen2.5-coder"]

    def run(*more: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(cmd + list(more), capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        return proc

    streamed = run("--backend", "openai-raw")
    as_json = json.loads(run("--backend", "openai-raw", "--json").stdout)
    fallback = run("--backend", "openai")
    print(f"generate: {streamed.stdout!r}; {streamed.stderr.strip()!r}; fallback: {fallback.stderr.strip()!r}")
    assert streamed.stdout.strip() and not [m for m in MARKERS if m in streamed.stdout]
    assert "llama-cpp-python" in streamed.stderr and "dialect openai-raw" in streamed.stderr
    assert as_json["text"] == streamed.stdout and as_json["backend"] == "openai-raw"  # greedy: the same answer
    assert as_json["stats"]["bytes_sent"] > len(PARTS.prefix)
    assert "token id 0" in fallback.stderr and fallback.stdout == streamed.stdout
    assert not (tmp_path / "empty-cache" / "models").exists()
