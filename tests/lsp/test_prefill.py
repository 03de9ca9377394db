"""Cold files: a file just opened is prefilled in the background, a cold request answers from a short window and
the full one is prefilled after it, and background work never holds up a request (it stops at its next chunk)."""

from __future__ import annotations

import threading
import time

from lsp_server.scheduler import InferenceScheduler
from tests.lsp.test_hostile import T, end_of, inline, notifications, open_doc, start, status, wait_state

DOC = "".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(60)) + "def g(x):\n    return "


def wait_idle(c, timeout_s: float = T) -> dict:
    deadline = time.monotonic() + timeout_s
    while (st := status(c))["background"] and time.monotonic() < deadline:
        time.sleep(0.05)
    return st


def test_opened_file_is_prefilled_so_the_first_request_reuses_it(tiny_bundle, tmp_path):
    c = start(tmp_path, {"model": str(tiny_bundle), "coldPromptTokens": 64})
    try:
        assert wait_state(c, {"ready"})["state"] == "ready"
        open_doc(c, "file:///open.py", DOC)
        assert wait_idle(c)["background"] == 0
        assert "error" not in inline(c, "file:///open.py", *end_of(DOC))
        m = notifications(c, "waferline/metrics", T)[-1]
        assert m["prompt_tokens"] > 400 and m["reused_tokens"] >= m["prompt_tokens"] - 64  # full window, mostly cached
    finally:
        c.close()


def test_cold_request_answers_short_then_the_full_window_is_prefilled(tiny_bundle, tmp_path):
    c = start(tmp_path, {"model": str(tiny_bundle), "coldPromptTokens": 64, "prefillOnOpen": False})
    try:
        assert wait_state(c, {"ready"})["state"] == "ready"
        open_doc(c, "file:///cold.py", DOC)
        inline(c, "file:///cold.py", *end_of(DOC))
        first = notifications(c, "waferline/metrics", T)[-1]
        assert first["prompt_tokens"] <= 64 + 8  # the short cold-start window
        assert wait_idle(c)["background"] == 0
        text = DOC + "x"  # typing on: a new request, with the full window already cached
        c.notify("textDocument/didChange", {"textDocument": {"uri": "file:///cold.py", "version": 2},
                                            "contentChanges": [{"text": text}]})
        inline(c, "file:///cold.py", *end_of(text))
        second = notifications(c, "waferline/metrics", T)[-1]
        assert second["prompt_tokens"] > 400 and second["prompt_tokens"] - second["reused_tokens"] <= 64
    finally:
        c.close()


def test_background_jobs_wait_for_idle_and_stop_for_a_request():
    sched = InferenceScheduler()
    try:
        order: list[str] = []
        started, release = threading.Event(), threading.Event()

        def blocker(cancel):
            started.set()
            release.wait(T)
            order.append("blocker")

        def background(cancel):
            order.append("background-start")
            while not cancel.is_set():  # a prefill loop: checks its flag between chunks
                time.sleep(0.005)
            order.append("background-stopped")

        sched.submit("a", blocker)
        assert started.wait(T)
        bg = sched.submit("b", background, background=True)
        fg = sched.submit("c", lambda cancel: order.append("request"))
        release.set()
        fg.future.result(T)
        assert order[:2] == ["blocker", "request"]  # the request ran first although queued after
        deadline = time.monotonic() + T
        while "background-start" not in order and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sched.pending() == 0 and sched.pending(background=True) == 1
        sched.submit("d", lambda cancel: order.append("request-2")).future.result(T)
        bg.future.result(T)
        assert order[-2:] == ["background-stopped", "request-2"]
    finally:
        sched.close()


def test_the_newest_background_job_runs_first():
    """Tabs restored at start each queue a prefill; the file opened last (where the user is) must not wait for them."""
    sched = InferenceScheduler()
    try:
        order: list[str] = []
        started, release = threading.Event(), threading.Event()
        sched.submit("a", lambda cancel: (started.set(), release.wait(T)))
        assert started.wait(T)
        jobs = [sched.submit(f"tab{i}", lambda cancel, i=i: order.append(f"tab{i}"), background=True) for i in range(3)]
        jobs.append(sched.submit("opened", lambda cancel: order.append("opened"), background=True))
        release.set()
        for j in jobs:
            j.future.result(T)
        assert order == ["opened", "tab2", "tab1", "tab0"]
    finally:
        sched.close()
