"""Pure helpers of the server: the inference scheduler (supersession, no backlog) and empty-def detection."""

import threading
import time

from lsp_server.context import find_empty_def, workspace_relative
from lsp_server.scheduler import InferenceScheduler


def _blocking_job():
    """(fn, started, release): fn runs until released, then says whether its flag was set meanwhile."""
    started, release = threading.Event(), threading.Event()

    def fn(cancel):
        started.set()
        release.wait(5)
        return "cancelled" if cancel.is_set() else "done"

    return fn, started, release


def test_newer_job_cancels_running_and_replaces_waiting():
    s = InferenceScheduler()
    slow, started, release = _blocking_job()
    a = s.submit("doc", slow)
    assert started.wait(5)
    b = s.submit("doc", lambda c: "b")  # waits; sets a's cancel flag
    c = s.submit("doc", lambda c: "c")  # replaces b: at most one waiting job per document
    other = s.submit("other", lambda c: "other")  # other documents are untouched
    release.set()
    assert a.future.result(5) == "cancelled"
    assert b.future.result(5) is None and b.cancel.is_set()
    assert c.future.result(5) == "c" and other.future.result(5) == "other"
    assert s.pending() == 0
    s.close()


def test_a_request_interrupts_the_background_call_in_flight():
    """A background prefill's model call is stopped inside it, not at its end: the job's flag runs the hook the call
    registered (the decoder's sets ONNX Runtime's terminate flag)."""
    s = InferenceScheduler()
    in_call, stopped = threading.Event(), threading.Event()

    def background(cancel):
        with cancel.interrupting(stopped.set):
            in_call.set()
            return "interrupted" if stopped.wait(5) else "ran to its end"

    bg = s.submit("tab", background, background=True)
    assert in_call.wait(5)
    fg = s.submit("doc", lambda c: "answer")
    assert bg.future.result(5) == "interrupted" and fg.future.result(5) == "answer"
    s.close()


def test_idle_work_for_the_same_document_waits_and_for_another_document_goes_first():
    s = InferenceScheduler()
    own_window, started, release = _blocking_job()
    warm = s.submit("doc", own_window, background=True)
    assert started.wait(5)
    aside = s.submit("context:doc", lambda c: "aside", background=True, doc="doc")
    assert not warm.cancel.is_set()  # the document's context aside waits for its own window
    other = s.submit("tab", lambda c: "tab", background=True)
    assert warm.cancel.is_set()  # the user moved to another document: its idle work goes first
    release.set()
    assert warm.future.result(5) == "cancelled"
    assert other.future.result(5) == "tab" and aside.future.result(5) == "aside"
    s.close()


def test_a_prefill_aside_waits_for_all_other_idle_work_and_yields_to_it():
    s = InferenceScheduler()
    gate = threading.Event()
    order = []
    s.submit("busy", lambda c: gate.wait(5))
    s.submit("context:doc", lambda c: order.append("aside"), background=True, doc="doc", last=True)
    s.submit("doc", lambda c: order.append("own window"), background=True)
    gate.set()
    deadline = time.monotonic() + 5
    while len(order) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert order == ["own window", "aside"]  # the aside, submitted first, still runs last

    aside, in_aside, release = _blocking_job()
    running = s.submit("context:doc", aside, background=True, doc="doc", last=True)
    assert in_aside.wait(5)
    s.submit("doc", lambda c: "own window", background=True)  # same document, but not `last`: it goes first
    assert running.cancel.is_set()
    release.set()
    assert running.future.result(5) == "cancelled"
    s.close()


def test_control_jobs_are_never_superseded():
    s = InferenceScheduler()
    gate = threading.Event()
    s.submit("x", lambda c: gate.wait(5))
    jobs = [s.submit("model", lambda c, i=i: i, supersede=False) for i in range(3)]
    gate.set()
    assert [j.future.result(5) for j in jobs] == [0, 1, 2]
    s.close()


def test_job_exception_reaches_the_caller():
    s = InferenceScheduler()
    j = s.submit("d", lambda c: 1 / 0)
    try:
        j.future.result(5)
    except ZeroDivisionError:
        pass
    else:
        raise AssertionError("expected the job's exception")
    assert s.submit("d", lambda c: 2).future.result(5) == 2  # worker survives
    s.close()


def test_find_empty_def_variants():
    text = "x = 1\ndef f(a,\n      b):\n\nprint(1)\n"
    site = find_empty_def(text, 1)
    assert site and text[: site.header_end].endswith("b):") and site.body_indent == "    "
    stub = "class A:\n    def f(self):\n        pass\n    def g(self):\n        return 1\n"
    site = find_empty_def(stub, 1)
    assert site and stub[site.replace_start : site.replace_end] == "\n        pass"
    assert find_empty_def(stub, 3) is None  # g has a body
    assert find_empty_def("def f(): return 1\n", 0) is None
    crlf = "def f():\r\n\r\nx = 1\r\n"
    site = find_empty_def(crlf, 0)
    assert site and crlf[site.replace_start] == "\r"  # insert before the CRLF, not inside it


def test_workspace_relative():
    assert workspace_relative("file:///home/u/proj/pkg/a.py", ["file:///home/u/proj"]) == ("proj", "pkg/a.py")
    assert workspace_relative("file:///elsewhere/b.py", ["file:///home/u/proj"]) == (None, "b.py")
    assert workspace_relative("untitled:1", []) == (None, None)
