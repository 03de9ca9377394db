"""Context beyond the file, end to end: a definition in another open tab reaches the prompt of the current one."""

from __future__ import annotations

import time

from lsp_server.language_server import CONTEXT_SETTLE_S
from tests.lsp.test_hostile import T, end_of, inline, notifications, open_doc, start, status, wait_state

SHAPES = '''"""Shapes."""
import math


class Circle:
    """A circle of a given radius."""

    sides: int = 0

    def __init__(self, radius: float):
        self.radius = radius

    def area(self) -> float:
        return math.pi * self.radius ** 2
'''
MAIN = "from .shapes import Circle\n\n\ndef run():\n    c = Circle(2)\n    return c."


def wait_indexed(c, documents: int, timeout_s: float = T) -> dict:
    deadline = time.monotonic() + timeout_s
    while ((ctx := status(c)["context"])["pending"] or ctx["documents"] < documents) and time.monotonic() < deadline:
        time.sleep(0.05)
    return ctx


def completes_with_definition(c, uri: str, text: str, path: str) -> dict:
    """Completions at the end of `text` (typing on: `a` after `a`, with a pause between) answer, until the prompt holds
    the definition of Circle from `path`: a changed context is prefilled aside once requests pause for
    CONTEXT_SETTLE_S, then swapped in, so it may take a request or two. Returns the metrics of that request."""
    want = {"path": path, "lines": [5, 14], "kind": "definition"}
    deadline = time.monotonic() + T
    while True:
        assert "error" not in inline(c, uri, *end_of(text))
        if want in status(c)["context"]["snippets"]:
            return notifications(c, "waferline/metrics", T)[-1]
        assert time.monotonic() < deadline, status(c)["context"]
        time.sleep(CONTEXT_SETTLE_S + 0.2)  # a pause: the prompt with the context goes in aside
        text += "a"
        c.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": len(text)},
                                            "contentChanges": [{"text": text}]})


def open_main_beside_shapes(c) -> str:
    """shapes.py, then main.py, open in the workspace and indexed; a first completion in main holds no snippets."""
    open_doc(c, "file:///w/pkg/shapes.py", SHAPES)
    assert wait_indexed(c, 1)["documents"] == 1
    main = "file:///w/pkg/main.py"
    open_doc(c, main, MAIN)
    assert wait_indexed(c, 2)["documents"] == 2
    assert "error" not in inline(c, main, *end_of(MAIN))
    assert status(c)["context"]["snippets"] == []
    return main


def test_definition_from_another_open_document_is_in_the_prompt(tiny_bundle, tmp_path):
    c = start(tmp_path, {"model": str(tiny_bundle), "prefillOnOpen": False, "coldPromptTokens": 0, "context": True}, root="file:///w")
    try:
        assert wait_state(c, {"ready"})["state"] == "ready"
        main = "file:///w/pkg/main.py"
        open_doc(c, main, MAIN)
        assert "error" not in inline(c, main, *end_of(MAIN))
        alone = notifications(c, "waferline/metrics", T)[-1]
        assert status(c)["context"]["snippets"] == []

        open_doc(c, "file:///w/pkg/shapes.py", SHAPES)
        open_doc(c, "file:///elsewhere/pkg/shapes.py", SHAPES)  # outside the workspace folder: never context
        assert wait_indexed(c, 2)["documents"] == 2
        with_context = completes_with_definition(c, main, MAIN, "pkg/shapes.py")
        assert with_context["prompt_tokens"] > alone["prompt_tokens"] + 20
        ctx = status(c)["context"]  # each swap was a prefill aside, started by a change
        assert ctx["changes"] >= ctx["asides"] >= ctx["swaps"] >= 1
    finally:
        c.close()


def test_without_workspace_folders_every_open_document_counts(tiny_bundle, tmp_path):
    c = start(tmp_path, {"model": str(tiny_bundle), "prefillOnOpen": False, "coldPromptTokens": 0, "context": True})
    try:
        assert wait_state(c, {"ready"})["state"] == "ready"
        open_doc(c, "file:///elsewhere/pkg/shapes.py", SHAPES)
        main = "file:///w/pkg/main.py"
        open_doc(c, main, MAIN)
        assert wait_indexed(c, 2)["documents"] == 2
        completes_with_definition(c, main, MAIN, "shapes.py")
    finally:
        c.close()


def test_status_lists_what_the_prompt_held_and_a_cold_answer_holds_none(tiny_bundle, tmp_path):
    # a cold request (more uncached prompt than coldPromptTokens) answers from a short window without the context
    c = start(tmp_path, {"model": str(tiny_bundle), "prefillOnOpen": False, "coldPromptTokens": 16, "context": True},
              root="file:///w")
    try:
        assert wait_state(c, {"ready"})["state"] == "ready"
        main = open_main_beside_shapes(c)
        c.notify("workspace/didChangeConfiguration", {"settings": {"waferline": {
            "model": str(tiny_bundle), "prefillOnOpen": False, "coldPromptTokens": 0, "context": True}}})
        text = MAIN + "a"
        c.notify("textDocument/didChange", {"textDocument": {"uri": main, "version": 2},
                                            "contentChanges": [{"text": text}]})
        deadline = time.monotonic() + T
        while status(c)["settings"]["coldPromptTokens"] != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        completes_with_definition(c, main, text, "pkg/shapes.py")
    finally:
        c.close()


def test_a_workspace_folder_added_later_brings_its_open_documents_in(tiny_bundle, tmp_path):
    c = start(tmp_path, {"model": str(tiny_bundle), "prefillOnOpen": False, "coldPromptTokens": 0, "context": True},
              root="file:///w")
    try:
        assert wait_state(c, {"ready"})["state"] == "ready"
        main = "file:///elsewhere/pkg/main.py"
        open_doc(c, "file:///elsewhere/pkg/shapes.py", SHAPES)
        open_doc(c, main, MAIN)
        assert wait_indexed(c, 0)["documents"] == 0  # outside the workspace folder
        c.notify("workspace/didChangeWorkspaceFolders", {"event": {
            "added": [{"uri": "file:///elsewhere", "name": "elsewhere"}], "removed": []}})
        assert wait_indexed(c, 2)["documents"] == 2
        completes_with_definition(c, main, MAIN, "pkg/shapes.py")
    finally:
        c.close()


def test_a_file_just_opened_answers_alone_first_and_gets_its_context_once_prefilled_aside(tiny_bundle, tmp_path):
    # coldPromptTokens on: the first request in a new file does not wait for the context's tokens (not even a
    # definition's); the prompt with them is prefilled in a spare slot in idle time and the next requests hold it
    c = start(tmp_path, {"model": str(tiny_bundle), "prefillOnOpen": False, "coldPromptTokens": 100_000, "context": True},
              root="file:///w")
    try:
        assert wait_state(c, {"ready"})["state"] == "ready"
        main = open_main_beside_shapes(c)
        completes_with_definition(c, main, MAIN, "pkg/shapes.py")
    finally:
        c.close()
