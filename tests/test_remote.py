"""Remote backends without a real server: the SSE parser, FIM templates, and each dialect's contract against an
in-process HTTP server replaying recorded llama-cpp-python answers (tests/remote_fixtures/llama_cpp_python, see its
VERSION.txt) and answers written from llama.cpp's and vLLM's documentation (tests/remote_fixtures/documented.py).
The real-server tests are in test_remote_real.py."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading

import pytest
from remote_fake import FakeServer, json_answer, never_answer, raw_answer, recorded, sse_answer
from remote_fixtures import documented as doc

from runtime.remote import FIM_TEMPLATES, PromptParts, RemoteBackend, RemoteConfig, RemoteError, render_fim
from runtime.remote.fim import MarkerCutter, template_for_model
from runtime.remote.sse import SSEEvent, SSEParser

PARTS = PromptParts(prefix="import os\n\ndef fibonacci(n):\n    if n", suffix="\n    return n\n", path="pkg/fib.py",
                    repo="demo", extra=[("pkg/util.py", "def add(a, b):\n    return a + b")])
KEY = "sk-test-7f3a9c0d1e2b"


def backend(url: str, dialect: str = "openai-raw", **kw) -> RemoteBackend:
    kw.setdefault("fim_template", "qwen2.5-coder" if dialect != "llamacpp" else None)
    kw.setdefault("read_timeout", 5.0)
    return RemoteBackend(RemoteConfig(dialect=dialect, endpoint=url, **kw))


def run(b: RemoteBackend, parts: PromptParts = PARTS, cancel: threading.Event | None = None) -> list[str]:
    return list(b.stream(parts, cancel or threading.Event()))


def error_of(b: RemoteBackend, parts: PromptParts = PARTS) -> RemoteError:
    with pytest.raises(RemoteError) as info:
        run(b, parts)
    assert "\n" not in str(info.value)
    return info.value


# -- SSE parsing -----------------------------------------------------------------------------------------------------


STREAM = ("data: {\"a\": \"é→😀\"}\r\n\r\n: keep-alive\n\ndata: line one\ndata: line two\n\n"
          "event: custom\rdata: x\r\rerror: {\"error\": \"boom\"}\n\ndata: [DONE]\n\n").encode()
EXPECTED = [SSEEvent("message", '{"a": "é→😀"}'), SSEEvent("message", "line one\nline two"),
            SSEEvent("custom", "x"), SSEEvent("error", '{"error": "boom"}'), SSEEvent("message", "[DONE]")]


def test_sse_parser_gives_the_same_events_whatever_the_read_boundaries():
    """CRLF, CR and LF line ends, comments, multi-line data, llama.cpp's `error:` line, and UTF-8 characters cut
    across reads: every split point, and byte by byte."""
    for cut in range(len(STREAM) + 1):
        p = SSEParser()
        events = p.feed(STREAM[:cut]) + p.feed(STREAM[cut:]) + p.close()
        assert events == EXPECTED, cut
    p = SSEParser()
    assert [e for i in range(len(STREAM)) for e in p.feed(STREAM[i:i + 1])] + p.close() == EXPECTED
    assert p.comments == 1


def test_sse_parser_completes_a_last_event_without_its_blank_line():
    p = SSEParser()
    assert p.feed(b"data: [DONE]") == []
    assert p.close() == [SSEEvent("message", "[DONE]")]


# -- templates and markers -------------------------------------------------------------------------------------------


def test_qwen_template_repo_level_layout_puts_the_cursor_line_last():
    assert render_fim(FIM_TEMPLATES["qwen2.5-coder"], PARTS) == (
        "<|repo_name|>demo\n<|file_sep|>pkg/util.py\ndef add(a, b):\n    return a + b\n<|file_sep|>pkg/fib.py\n"
        "<|fim_prefix|>import os\n\ndef fibonacci(n):\n<|fim_suffix|>\n    return n\n<|fim_middle|>    if n")


def test_templates_without_a_path_or_repo_tokens_put_snippets_in_comments():
    bare = PromptParts(prefix="x = 1\ny = ", suffix="\n", extra=[("a.py", "A = 2")])
    assert render_fim(FIM_TEMPLATES["qwen2.5-coder"], bare) == (
        "<|fim_prefix|># path: a.py\n# A = 2\nx = 1\n<|fim_suffix|>\n<|fim_middle|>y = ")
    assert render_fim(FIM_TEMPLATES["starcoder"], PARTS).startswith(
        "<repo_name>demo<file_sep>pkg/util.py\ndef add(a, b):\n    return a + b\n<file_sep><fim_prefix>pkg/fib.py\n")
    assert render_fim(FIM_TEMPLATES["codellama"], bare) == "<PRE> # path: a.py\n# A = 2\nx = 1\ny =  <SUF>\n <MID>"
    assert render_fim(FIM_TEMPLATES["deepseek-coder"], PromptParts(prefix="a\nb", suffix="c", path="m.js")) == (
        "<｜fim▁begin｜>a\n<｜fim▁hole｜>c<｜fim▁end｜>b")


@pytest.mark.parametrize(("model", "template"), [
    ("Qwen/Qwen2.5-Coder-7B", "qwen2.5-coder"), ("qwen2.5-coder:1.5b-base", "qwen2.5-coder"),
    ("bigcode/starcoder2-3b", "starcoder"), ("HuggingFaceTB/SmolLM2-135M", "starcoder"),
    ("codellama/CodeLlama-7b-hf", "codellama"), ("deepseek-ai/deepseek-coder-6.7b-base", "deepseek-coder"),
    ("meta-llama/Llama-3.1-8B", None), (None, None)])
def test_fim_template_follows_the_model_family(model, template):
    assert template_for_model(model) == template


def test_marker_cutter_cuts_a_marker_split_across_pieces():
    c = MarkerCutter(["<|file_sep|>", "\n\n\n"])
    out = [c.push(p) for p in ["x = 1", " <|fi", "le_", "sep|>y", "never shown"]]
    assert "".join(out) == "x = 1 " and c.stopped
    c = MarkerCutter(["<|file_sep|>"])
    assert [c.push("a <|"), c.push("b")] == ["a ", "<|b"] and c.flush() == "" and not c.stopped


# -- configuration ---------------------------------------------------------------------------------------------------


def test_config_mistakes_are_one_line_errors():
    for kw, word in [({"dialect": "ollama"}, "dialect"), ({"fim_template": "gpt"}, "fimTemplate"),
                     ({"endpoint": "localhost:8080"}, "http://"), ({"read_timeout": 0}, "timeouts")]:
        args = {"dialect": "openai", "endpoint": "http://127.0.0.1:8000/v1", **kw}
        with pytest.raises(RemoteError, match=word) as info:
            RemoteConfig(**args)
        assert info.value.kind == "config"


def test_raw_dialect_without_a_known_family_asks_for_fim_template():
    b = RemoteBackend(RemoteConfig(dialect="openai-raw", endpoint="http://127.0.0.1:9/v1", model="my-finetune"))
    err = error_of(b)
    assert err.kind == "config" and "fimTemplate" in str(err)


# -- dialect contracts (in-process server) ---------------------------------------------------------------------------


def test_openai_raw_replays_the_recorded_llama_cpp_python_stream():
    with FakeServer() as srv:
        srv.routes[("POST", "/v1/completions")] = recorded("completions_raw_stream")
        b = backend(srv.url + "/v1")
        pieces = run(b)
        sent = srv.requests[0].json()
    # "<" could start a special token: held back until the stream ends without one
    assert pieces == ["u", "3", "in", ":", "__", "]:", "\n\n", "<"]
    assert b.last_stats.finish == "length" and b.last_stats.dialect == "openai-raw"
    assert sent["stream"] is True and "suffix" not in sent
    assert sent["prompt"] == render_fim(FIM_TEMPLATES["qwen2.5-coder"], PARTS)
    assert sent["stop"] == ["<|file_sep|>"]


def test_openai_dialect_sends_prompt_and_suffix():
    with FakeServer() as srv:
        srv.routes[("POST", "/v1/completions")] = recorded("completions_suffix_stream")
        b = backend(srv.url + "/v1", "openai", model="served-name")
        assert "".join(run(b))
        sent = srv.requests[0].json()
    assert sent["suffix"] == PARTS.suffix and sent["model"] == "served-name"
    assert sent["prompt"] == "# path: pkg/util.py\n# def add(a, b):\n#     return a + b\n" + PARTS.prefix
    assert b.dialect == "openai" and b.fallback_reason is None


def test_vllm_400_on_suffix_falls_back_to_raw_prompts_once_and_says_so():
    def completions(h, seen):
        if "suffix" in seen.json():
            json_answer(400, doc.VLLM_SUFFIX_400)(h, seen)
        else:
            sse_answer(doc.vllm_stream(["    ", "return", " 1"]))(h, seen)

    with FakeServer() as srv:
        srv.routes[("POST", "/v1/completions")] = completions
        b = backend(srv.url + "/v1", "openai", fim_template=None, model=doc.QWEN)
        assert "".join(run(b)) == "    return 1"
        assert b.dialect == "openai-raw" and "suffix is not currently supported" in b.fallback_reason
        assert "qwen2.5-coder" in b.fallback_reason  # the template came from the model name
        assert "".join(run(b)) == "    return 1"
        bodies = [r.json() for r in srv.requests]
    assert ["suffix" in body for body in bodies] == [True, False, False]  # one 400, then raw prompts only
    assert bodies[1]["prompt"].startswith("<|repo_name|>demo\n") and bodies[1]["prompt"].endswith(
        "<|fim_middle|>    if n")
    assert (b.last_stats.finish, b.last_stats.prompt_tokens, b.last_stats.cached_tokens) == ("stop", 41, 32)


def test_llamacpp_infill_request_and_stream():
    with FakeServer() as srv:
        srv.routes[("POST", "/infill")] = sse_answer(doc.llamacpp_infill_stream([" ==", " 0", ":"]))
        b = backend(srv.url, "llamacpp", stop=["\n\n"], t_max_predict_ms=250, max_tokens=32)
        assert run(b) == [" ==", " 0", ":"]
        sent = srv.requests[0].json()
    assert sent == {"input_prefix": "import os\n\ndef fibonacci(n):\n", "input_suffix": "\n    return n\n",
                    "input_extra": [{"filename": "pkg/util.py", "text": "def add(a, b):\n    return a + b"}],
                    "prompt": "    if n", "n_predict": 32, "temperature": 0.0, "stop": ["\n\n"],
                    "cache_prompt": True, "t_max_predict_ms": 250, "stream": True}
    assert (b.last_stats.finish, b.last_stats.prompt_tokens, b.last_stats.cached_tokens) == ("eos", 42, 40)


def test_special_token_text_never_reaches_the_caller():
    """Even split across events, a FIM token ends the answer and the connection."""
    events = doc.vllm_stream(["x = ", "1<|fi", "le_sep|>other.py\n", "secret"])
    with FakeServer() as srv:
        srv.routes[("POST", "/v1/completions")] = sse_answer(events, then_wait=True)
        b = backend(srv.url + "/v1")
        assert "".join(run(b)) == "x = 1"
        assert srv.disconnected.wait(5)
    assert b.last_stats.finish == "marker"


def test_llamacpp_error_event_mid_stream_is_reported():
    body = doc.sse({"content": "a", "stop": False}) + b'error: {"code": 500, "message": "slot crashed", ' \
        b'"type": "server_error"}\n\n'
    with FakeServer() as srv:
        srv.routes[("POST", "/infill")] = sse_answer(body)
        err = error_of(backend(srv.url, "llamacpp"))
    assert "slot crashed" in str(err)


# -- failure modes ---------------------------------------------------------------------------------------------------


def test_401_names_the_variable_and_never_the_key(monkeypatch, caplog):
    monkeypatch.setenv("WAFERLINE_TEST_KEY", KEY)
    echo = {"error": {"message": f"Incorrect API key provided: {KEY}", "type": "invalid_request_error"}}
    with FakeServer() as srv:
        srv.routes[("POST", "/v1/completions")] = recorded("unauthorized")
        srv.routes[("GET", "/v1/models")] = json_answer(401, echo)
        b = backend(srv.url + "/v1", api_key_env="WAFERLINE_TEST_KEY")
        err = error_of(b)
        probe = b.probe()
        sent = srv.requests[0].headers["authorization"]
    assert sent == f"Bearer {KEY}"
    assert err.kind == "auth" and err.status == 401 and "Invalid API key" in str(err)
    assert "WAFERLINE_TEST_KEY" in str(err)
    assert probe.error_kind == "auth" and probe.reachable and "***" in probe.message
    for text in (str(err), repr(err), probe.message, repr(probe), repr(b), repr(b.config), str(b.last_stats),
                 caplog.text):
        assert KEY not in text
    monkeypatch.delenv("WAFERLINE_TEST_KEY")
    with FakeServer() as srv:
        srv.routes[("POST", "/v1/completions")] = recorded("unauthorized")
        err = error_of(backend(srv.url + "/v1", api_key_env="WAFERLINE_TEST_KEY"))
        assert "authorization" not in srv.requests[0].headers
    assert "WAFERLINE_TEST_KEY is not set" in str(err)


def test_404_suggests_the_base_url_form():
    with FakeServer() as srv:
        srv.routes[("POST", "/completions")] = recorded("not_found")
        err = error_of(backend(srv.url, "openai"))  # the /v1 is missing
        assert err.kind == "not_found" and "ending in /v1" in str(err)
        err = error_of(backend(srv.url + "/v1", "llamacpp"))  # llama.cpp's /infill lives at the root
        assert err.kind == "not_found" and "no /v1" in str(err)


def test_500_carries_the_servers_own_message():
    with FakeServer() as srv:
        srv.routes[("POST", "/v1/completions")] = recorded("validation_error")  # llama-cpp-python answers 500
        err = error_of(backend(srv.url + "/v1"))
    assert err.kind == "http" and err.status == 500 and "Input should be a valid integer" in str(err)


def test_garbage_json_in_the_stream():
    with FakeServer() as srv:
        srv.routes[("POST", "/v1/completions")] = sse_answer(b"data: {\"choices\": [{\"text\": \"ok\"}]}\n\n"
                                                              b"data: <html>502 Bad Gateway</html>\n\n")
        with pytest.raises(RemoteError) as info:
            list(backend(srv.url + "/v1").stream(PARTS, threading.Event()))
    assert info.value.kind == "bad_json" and "<html>502" in str(info.value)


@pytest.mark.parametrize("cut", ["mid-chunk", "mid-event", "no-end"])
def test_a_stream_cut_in_the_middle_is_an_error_not_a_short_answer(cut):
    complete = doc.vllm_stream(["a", "b", "c"])
    if cut == "mid-chunk":  # chunked framing broken off after two events
        answer = sse_answer(complete, cut_after=2)
    elif cut == "mid-event":  # Connection: close, the body stops inside a JSON event
        answer = raw_answer(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
                            + complete[: complete.index(b'"b"') + 2])
    else:  # a well-formed HTTP body whose SSE stream never says it is over
        answer = sse_answer(complete.split(b"data: {\"id\": \"cmpl-0123\", \"object\": \"text_completion\", "
                                           b"\"created\": 1733000000, \"model\": \"Qwen/Qwen2.5-Coder-7B\", "
                                           b"\"choices\": [{\"index\": 0, \"text\": \"\"")[0])
    got: list[str] = []
    with FakeServer() as srv:
        srv.routes[("POST", "/v1/completions")] = answer
        with pytest.raises(RemoteError) as info:
            for piece in backend(srv.url + "/v1").stream(PARTS, threading.Event()):
                got.append(piece)
    assert info.value.kind == "truncated", str(info.value)
    assert got and "".join(got) in ("a", "ab", "abc")


def test_a_server_that_never_answers_times_out():
    with FakeServer() as srv:
        srv.routes[("POST", "/v1/completions")] = never_answer
        b = backend(srv.url + "/v1", read_timeout=0.3)
        outcome: list[BaseException] = []
        t = threading.Thread(target=lambda: outcome.append(pytest.raises(RemoteError, run, b).value))
        t.start()
        t.join(SAFETY := 20)
        assert not t.is_alive(), f"stream() still blocked after {SAFETY} s"
        assert srv.disconnected.wait(5)  # and the connection was closed, not left open
    assert outcome[0].kind == "timeout" and "0.3 s" in str(outcome[0])


def test_cancel_from_another_thread_while_the_read_blocks_closes_the_connection():
    with FakeServer() as srv:
        srv.routes[("POST", "/v1/completions")] = sse_answer(doc.sse({"choices": [{"index": 0, "text": "first"}]}),
                                                             then_wait=True)
        b = backend(srv.url + "/v1", read_timeout=30)  # the timeout cannot be what ends it
        cancel = threading.Event()
        pieces = b.stream(PARTS, cancel)
        assert next(pieces) == "first"
        # the next read blocks: the server sends nothing more until the client hangs up
        threading.Timer(0.05, cancel.set).start()
        assert list(pieces) == []  # ends quietly, no error
        assert srv.disconnected.wait(5)
    assert b.last_stats.finish == "cancelled"


def test_closing_the_generator_also_closes_the_connection():
    with FakeServer() as srv:
        srv.routes[("POST", "/v1/completions")] = sse_answer(doc.sse({"choices": [{"index": 0, "text": "x"}]}),
                                                             then_wait=True)
        pieces = backend(srv.url + "/v1").stream(PARTS, threading.Event())
        assert next(pieces) == "x"
        pieces.close()
        assert srv.disconnected.wait(5)


def test_refused_dns_and_tls_failures():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = error_of(backend(f"http://127.0.0.1:{port}/v1"))
    assert err.kind == "refused" and f"127.0.0.1:{port}" in str(err)
    with FakeServer() as srv:  # https to a plain-HTTP server
        err = error_of(backend(srv.url.replace("http:", "https:") + "/v1"))
    assert err.kind == "tls"


def test_dns_failure_names_the_host(monkeypatch):
    def no_dns(*_args, **_kw):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    err = error_of(backend("http://gpu-box.internal:8000/v1"))
    assert err.kind == "dns" and "gpu-box.internal" in str(err)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl to make a self-signed certificate")
def test_tls_verification_is_on_by_default(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    with FakeServer() as srv:
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        srv.routes[("POST", "/v1/completions")] = sse_answer(doc.vllm_stream(["ok"]))
        url = srv.url.replace("http:", "https:") + "/v1"
        err = error_of(backend(url))
        assert err.kind == "tls" and "verifyTls" in str(err)
        assert "".join(run(backend(url, verify_tls=False))) == "ok"


# -- start-up probe --------------------------------------------------------------------------------------------------


def test_probe_llamacpp_reports_the_model_and_infill_support():
    with FakeServer() as srv:
        srv.routes[("GET", "/health")] = json_answer(200, doc.LLAMACPP_HEALTH)
        srv.routes[("GET", "/props")] = json_answer(200, doc.LLAMACPP_PROPS)
        srv.routes[("POST", "/infill")] = json_answer(200, doc.LLAMACPP_INFILL_EVAL_ONLY)
        result = backend(srv.url, "llamacpp").probe()
        assert srv.requests[-1].json()["n_predict"] == 0  # the FIM check generates nothing
        assert (result.dialect, result.models, result.server) == ("llamacpp", ["qwen2.5-coder-1.5b-q8_0.gguf"],
                                                                  "llama.cpp")
        srv.routes[("POST", "/infill")] = json_answer(501, doc.LLAMACPP_NO_FIM)
        result = backend(srv.url, "llamacpp").probe()
        assert result.dialect is None and "prefix token is missing" in result.message
        srv.routes[("GET", "/health")] = json_answer(503, doc.LLAMACPP_LOADING)
        result = backend(srv.url, "llamacpp").probe()
        assert result.reachable and "loading" in result.message
        result = backend(srv.url + "/v1", "llamacpp").probe()  # no /health there
        assert result.error_kind == "not_found" and "OpenAI-compatible" in result.message


def test_probe_openai_detects_vllm_suffix_rejection():
    with FakeServer() as srv:
        srv.routes[("GET", "/v1/models")] = json_answer(200, doc.VLLM_MODELS)
        srv.routes[("POST", "/v1/completions")] = json_answer(400, doc.VLLM_SUFFIX_400)
        b = backend(srv.url + "/v1", "openai", fim_template=None)
        result = b.probe()
        sent = srv.requests[-1].json()
    assert sent["max_tokens"] == 1 and sent["model"] == doc.QWEN  # the served model, found in /models
    assert (result.server, result.dialect, result.fim_template) == ("vLLM", "openai-raw", "qwen2.5-coder")
    assert result.models == [doc.QWEN] and b.dialect == "openai-raw"
    assert "suffix is not currently supported" in result.message


def test_probe_openai_recognises_llama_cpp_python_and_switches_to_raw():
    with FakeServer() as srv:
        srv.routes[("GET", "/v1/models")] = recorded("models")
        b = backend(srv.url + "/v1", "openai")
        result = b.probe()
        assert [r.path for r in srv.requests] == ["/v1/models"]  # no test completion needed
    assert result.server == "llama-cpp-python" and result.dialect == "openai-raw"
    assert "token id 0" in b.fallback_reason and result.models[0].endswith("tiny-qwen2.gguf")


def test_probe_of_a_server_that_is_down():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = backend(f"http://127.0.0.1:{port}/v1", "openai").probe()
    assert not result.reachable and result.error_kind == "refused" and result.dialect is None


def test_probe_of_garbage():
    with FakeServer() as srv:
        srv.routes[("GET", "/v1/models")] = raw_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n"
                                                       b"Connection: close\r\n\r\n<html>hi!")
        result = backend(srv.url + "/v1", "openai").probe()
    assert result.error_kind == "bad_json" and "<html>hi!" in result.message


def test_a_server_that_does_not_stream_still_answers():
    with FakeServer() as srv:
        srv.routes[("POST", "/infill")] = json_answer(200, {"content": "    return 1", "stop": True,
                                                            "tokens_evaluated": 12, "stop_type": "eos"})
        b = backend(srv.url, "llamacpp")
        assert run(b) == ["    return 1"]
    assert (b.last_stats.finish, b.last_stats.prompt_tokens) == ("eos", 12)
