"""Remote backends without a server: the SSE parser and the FIM templates."""

from __future__ import annotations

import pytest

from runtime.remote.fim import FIM_TEMPLATES, MarkerCutter, PromptParts, render_fim, template_for_model
from runtime.remote.sse import SSEEvent, SSEParser

PARTS = PromptParts(prefix="import os\n\ndef fibonacci(n):\n    if n", suffix="\n    return n\n", path="pkg/fib.py",
                    repo="demo", extra=[("pkg/util.py", "def add(a, b):\n    return a + b")])


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
