"""RemoteCompletionService with a scripted backend (a real class with the RemoteBackend interface, no HTTP): the
flow around the stream -- post-processing, result cache, typing along, early close, cancel, errors, budgets."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from runtime.complete import CompletionRequest, RemoteCompletionService
from runtime.complete.remote import CHARS_PER_TOKEN
from runtime.remote import ProbeResult, PromptParts, RemoteError, RequestStats


class ScriptedBackend:
    """Streams the pieces it is given, one per request, and records what each request sent and how far it was read.
    `fail` raises that error instead; `down` makes the probe fail."""

    dialect = "openai-raw"

    def __init__(self, *scripts: list[str], fail: RemoteError | None = None, down: bool = False):
        self.scripts = list(scripts)
        self.fail, self.down = fail, down
        self.sent: list[PromptParts] = []
        self.read: list[int] = []  # pieces handed out, per request
        self.closed: list[bool] = []  # the stream was closed before its end
        self.probes = 0
        self.last_stats: RequestStats | None = None
        self.on_piece = lambda index, cancel: None

    def probe(self) -> ProbeResult:
        self.probes += 1
        if self.down:
            return ProbeResult(reachable=False, dialect=None, message="connection refused by x:1", error_kind="refused")
        return ProbeResult(reachable=True, dialect=self.dialect, message="scripted server; dialect openai-raw")

    def stream(self, parts: PromptParts, cancel: threading.Event, *, max_tokens: int | None = None,
               temperature: float | None = None) -> Iterator[str]:
        self.sent.append(parts)
        if self.fail is not None:
            raise self.fail
        script = self.scripts.pop(0)
        self.read.append(0)
        self.closed.append(True)
        self.last_stats = RequestStats(dialect=self.dialect, bytes_sent=1, first_piece_s=0.01, total_s=0.02)
        for i, piece in enumerate(script):
            if cancel.is_set():
                self.last_stats.finish = "cancelled"
                return
            self.read[-1] += 1
            self.on_piece(i, cancel)
            yield piece
        self.closed[-1] = False
        self.last_stats.finish = "length" if len(script) >= (max_tokens or 64) else "stop"


def service(backend: ScriptedBackend) -> RemoteCompletionService:
    svc = RemoteCompletionService(backend)  # type: ignore[arg-type]
    svc.probe()
    return svc


def test_line_mode_closes_the_stream_at_the_line_end_and_postprocesses():
    b = ScriptedBackend(["total", " = a", " + b)\n", "    print(total)\n", "never read"])
    svc = service(b)
    res = svc.complete(CompletionRequest(prefix="def add(a, b):\n    ", suffix=")\n"))
    assert res.text == "total = a + b"  # the `)` the rest of the line already has is not repeated
    assert (b.read, b.closed) == ([3], [True])  # stopped after the piece with the newline
    assert (res.stop_reason, res.backend, res.new_tokens, res.raw_text) == ("stop", "openai-raw", 3, "total = a + b)\n")


def test_block_mode_stops_once_a_line_leaves_the_block():
    b = ScriptedBackend(["\n        return 1", "\n    return n", "\n\ndef other():", "\n    pass"])
    svc = service(b)
    res = svc.complete(CompletionRequest(prefix="def f(n):\n    if n < 2:", mode="block"))
    assert res.text == "\n        return 1"
    assert b.read == [3] and b.closed == [True]


def test_a_stream_that_ends_by_itself_reports_the_server_finish():
    b = ScriptedBackend(["x" for _ in range(4)])
    res = service(b).complete(CompletionRequest(prefix="y = ", max_new_tokens=4))
    assert (res.text, res.stop_reason, b.closed) == ("xxxx", "max_tokens", [False])


def test_repeats_and_typing_along_are_answered_from_the_cache():
    b = ScriptedBackend(["items.append(value)\n"])
    svc = service(b)
    req = CompletionRequest(prefix="for value in values:\n    ", suffix="\n", doc_key="a.py")
    assert svc.complete(req).text == "items.append(value)"
    again = svc.complete(req)
    typed = svc.complete(CompletionRequest(prefix=req.prefix + "items.", suffix="\n", doc_key="a.py"))
    assert (again.text, again.cached) == ("items.append(value)", True)
    assert (typed.text, typed.cached, typed.backend) == ("append(value)", True, "openai-raw")
    assert len(b.sent) == 1


def test_a_cancelled_stream_shows_nothing_and_is_not_cached():
    b = ScriptedBackend(["a", "b", "c\n"], ["ok\n"])
    cancel = threading.Event()
    b.on_piece = lambda index, _: cancel.set() if index == 1 else None
    svc = service(b)
    req = CompletionRequest(prefix="x = ")
    first = svc.complete(req, cancel)
    assert (first.text, first.stop_reason) == ("", "cancelled")
    assert svc.complete(req).text == "ok"  # asked the server again


def test_server_errors_propagate_and_are_not_cached():
    b = ScriptedBackend(fail=RemoteError("connection refused by x:1: is the server running?", "refused"))
    svc = service(b)
    with pytest.raises(RemoteError, match="connection refused"):
        svc.complete(CompletionRequest(prefix="x = "))
    b.fail, b.scripts = None, [["1\n"]]
    assert svc.complete(CompletionRequest(prefix="x = ")).text == "1"


def test_a_failed_probe_is_retried_before_each_request_until_the_server_answers():
    b = ScriptedBackend(["1\n"], down=True)
    svc = service(b)
    with pytest.raises(RemoteError, match="connection refused") as info:
        svc.complete(CompletionRequest(prefix="x = "))
    assert info.value.kind == "refused" and b.sent == []
    b.down = False
    assert svc.complete(CompletionRequest(prefix="x = ")).text == "1"
    assert b.probes == 3 and svc.ready


def test_the_prompt_keeps_to_a_character_budget_and_its_window_start_stays_while_typing():
    lines = [f"value_{i} = compute({i})\n" for i in range(400)]
    prefix = "".join(lines)
    b = ScriptedBackend(*[["0\n"]] * 3)
    svc = service(b)
    for typed in ("v", "va", "val"):
        svc.complete(CompletionRequest(prefix=prefix + typed, suffix="\n" + "tail\n" * 500, doc_key="big.py",
                                       max_prompt_tokens=256, max_suffix_tokens=32))
    assert all(p.prefix.endswith("\n") for p in b.sent)  # the word begun is held back (token healing by string)
    starts = {len(prefix) - len(p.prefix) for p in b.sent}
    assert len(starts) == 1  # the same window start: the server's prefix cache keeps every line above
    start = starts.pop()
    assert start > 0 and prefix[start - 1] == "\n"
    assert all(len(p.prefix) <= 256 * CHARS_PER_TOKEN for p in b.sent)
    assert all(len(p.suffix) == 32 * CHARS_PER_TOKEN for p in b.sent)


def test_the_context_comes_on_top_of_the_window_and_the_result_names_it():
    from runtime.crossfile import Snippet

    doc = "".join(f"value_{i} = compute({i})\n" for i in range(400))
    snippet = Snippet(path="pkg/a.py", text="def compute(i):\n    ..." * 20, start_line=1, end_line=40)
    for max_context, narrower in ((4096, False), (512 + 64 + 256 + 16, True)):
        b = ScriptedBackend(["x = 1\n"], ["x = 1\n"])
        svc = RemoteCompletionService(b, max_context=max_context)  # type: ignore[arg-type]
        svc.probe()
        alone = svc.parts_for(CompletionRequest(prefix=doc, doc_key="a", max_prompt_tokens=512))
        res = svc.complete(CompletionRequest(prefix=doc + "y = ", doc_key="b", max_prompt_tokens=512,
                                             context=[snippet]))
        assert b.sent[-1].extra == [("pkg/a.py", snippet.text)] and res.context == [snippet]
        # room in the server's context: the window is what it is alone; none: the context takes up to half of it
        assert (len(b.sent[-1].prefix) < len(alone.prefix)) == narrower


def test_a_cursor_inside_a_word_sends_the_text_before_it_and_keeps_only_answers_that_spell_it():
    """Token healing by string: "extend(va" goes out as "extend(" (a prompt cut mid-token is out of distribution),
    the answer must start with "va", and only what follows it is shown; an answer that leaves the word is dropped
    as soon as it does, and the stream is closed. Trailing spaces mid-line are held back the same way."""
    b = ScriptedBackend(["val", "ues", ")\n", "never"], ["x", ")\n"])
    svc = service(b)
    req = CompletionRequest(prefix="def f(values):\n    items.extend(va", suffix=")\n", doc_key="a.py")
    res = svc.complete(req)
    assert b.sent[0].prefix.endswith("items.extend(") and res.text == "lues"
    assert res.raw_text == "lues)\n" and b.read == [3]
    other = svc.complete(CompletionRequest(prefix="def g(values):\n    return va", doc_key="b.py"))
    assert (other.text, b.read[1], b.closed[1]) == ("", 1, True)
    assert b.sent[1].prefix.endswith("return")  # " va" held back: BPE puts the space in the word's token
    trailing = ScriptedBackend([" 1", "\n"], ["1\n"])
    svc = service(trailing)
    assert svc.complete(CompletionRequest(prefix="x = ", doc_key="c.py")).text == "1"  # spelled " 1": " " cut
    assert trailing.sent[0].prefix == "x ="
    assert svc.complete(CompletionRequest(prefix="y = ", doc_key="d.py")).text == "1"  # held-back spaces may be left out


def test_the_middle_starts_lines_above_the_cursor_and_stays_while_typing():
    """As the local FIM prompt: the lines just above the cursor go after the middle marker (next to the answer), and
    a new line does not move text in front of the suffix, so the server's prompt cache keeps the suffix."""
    from runtime.remote.fim import FIM_TEMPLATES, render_fim

    b = ScriptedBackend(["1\n"], ["2\n"])
    svc = service(b)
    head = "import os\n\n\ndef total(values):\n    result = 0\n"
    svc.complete(CompletionRequest(prefix=head + "    for v in values:\n        x = [", suffix="\n    return result\n", doc_key="t.py"))
    svc.complete(CompletionRequest(prefix=head + "    for v in values:\n        x = [1]\n        y = [", suffix="\n    return result\n", doc_key="t.py"))
    first, second = b.sent
    assert first.prefix[first.middle_from:] == "\ndef total(values):\n    result = 0\n    for v in values:\n        x = ["
    assert first.prefix[: first.middle_from] == second.prefix[: second.middle_from] == "import os\n\n"  # kept
    prompt = render_fim(FIM_TEMPLATES["qwen2.5-coder"], second)
    assert prompt.endswith("<|fim_middle|>" + second.prefix[second.middle_from:])
    assert "<|fim_prefix|>import os\n\n<|fim_suffix|>" in prompt
