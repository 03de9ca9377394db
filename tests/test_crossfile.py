"""Context beyond the file: runtime.crossfile picks snippets of the other open documents, and the completion service
puts them before the current file the way each model was trained."""

from __future__ import annotations

import msgspec
import pytest

import runtime.crossfile as crossfile
from runtime.complete import CompletionRequest
from runtime.crossfile import ContextCollector, Snippet, build_index
from runtime.crossfile_py import parse_imports
from tests.test_completion_service import service, tokenizer  # noqa: F401 - fixture

SHAPES = '''"""Shapes."""
import math

UNIT = 1.0


class Circle:
    """A circle of a given radius."""

    sides: int = 0

    def __init__(self, radius: float, name: str = "c"):
        self.radius = radius
        self.name = name
        self._cache = {}
        total = 0

    def area(self) -> float:
        """Area of the circle."""
        secret_body_line = math.pi * self.radius ** 2
        return secret_body_line


def scale(shape, factor: float,
          inplace: bool = False) -> "Circle":
    """Scale a shape by `factor`."""
    shape.radius *= factor
    return shape
'''
UTIL = "def helper(x, y=2):\n    '''Add y.'''\n    return x + y\n\n\ndef other():\n    pass\n"
MAIN = "from .shapes import Circle, scale\nimport pkg.util as u\n\n\ndef run():\n    c = Circle(2)\n    return "


def uri(path: str) -> str:
    return f"file:///w/{path}"


def collector(docs: dict[str, str], **kw) -> ContextCollector:
    c = ContextCollector(**kw)
    for path, text in docs.items():
        c.update(uri(path), path, text)
    c.refresh()
    return c


def words(s: str) -> int:
    return len(s.split())


def test_imports_are_read_line_by_line():
    got = parse_imports("from .a import (x,  # note\n  y as z)\nimport p.q as r, s\nfrom ..b.c import *\nif x:\n"
                        "    from . import m\n")
    assert [(i.local, i.level, i.module, i.name) for i in got] == [
        ("x", 1, ("a",), "x"), ("z", 1, ("a",), "y"), ("r", 0, ("p", "q"), None), ("s", 0, ("s",), None),
        ("m", 1, (), "m")]


def test_import_resolution_picks_the_definition():
    c = collector({"pkg/shapes.py": SHAPES, "pkg/util.py": UTIL, "pkg/main.py": MAIN})
    snips = c.snippets(uri("pkg/main.py"), MAIN, 512)
    defs = {s.text.split("\n")[0]: s for s in snips if s.kind == "definition"}
    circle = defs["class Circle:"]
    assert circle.path == "pkg/shapes.py" and (circle.start_line, circle.end_line) == (7, 21)
    for kept in ('"""A circle of a given radius."""', "sides: int = 0", "def __init__(self, radius: float, name: str",
                 "self.radius = radius", "self._cache = {}", "def area(self) -> float:"):
        assert kept in circle.text
    assert "secret_body_line" not in circle.text and "total = 0" not in circle.text  # signatures, not bodies
    assert defs['def scale(shape, factor: float,'].text.endswith('"""Scale a shape by `factor`."""\n    ...')
    assert "def helper" not in defs  # `u` is not used near the cursor
    typed = MAIN + "u.he"  # `import pkg.util as u` -> `u.helper`
    assert any(s.text.startswith("def helper(x, y=2):") for s in c.snippets(uri("pkg/main.py"), typed, 512))


def test_absolute_imports_reexports_and_a_file_that_does_not_parse():
    broken = ("def helper(x, y=2):\n    '''Add y.'''\n    return (x +\n\n"
              "class Box:\n    size = 3\n    def put(self, x):\n")
    c = collector({"src/pkg/util.py": broken, "src/pkg/__init__.py": "from .util import helper, Box\n",
                   "app/main.py": "from pkg import helper\nfrom pkg.util import Box\n\nhelper(Box()"})
    snips = c.snippets(uri("app/main.py"), "from pkg import helper\nfrom pkg.util import Box\n\nhelper(Box()", 512)
    texts = [s.text for s in snips if s.kind == "definition"]
    assert "def helper(x, y=2):\n    '''Add y.'''" in texts  # through the package's re-export, line-based
    assert "class Box:\n    size = 3\n    def put(self, x):" in texts


def test_names_and_module_attributes_used_nearest_the_cursor_come_first():
    from runtime.crossfile_py import Modules, imported_definitions

    mods = Modules(build_index(p, t) for p, t in {"pkg/shapes.py": SHAPES, "pkg/util.py": UTIL}.items())
    head = "from .shapes import Circle, scale, UNIT\nimport pkg.util as u\n\n"
    got = imported_definitions("pkg/main.py", head + "u.other()\nscale(c)\nx = obj.u.helper + Circle\n", None, "", mods)
    names = [d.text.split("(")[0].split(":")[0].split(" = ")[0].split()[-1] for _, d in got]
    # nearest use first: Circle, scale, then u.other; `obj.u.helper` is an attribute of obj, not of the module u
    assert names[:3] == ["Circle", "scale", "other"] and "helper" not in names and names[3:] == ["UNIT"]


def test_the_name_being_typed_comes_first():
    c = collector({"pkg/shapes.py": SHAPES, "pkg/main.py": MAIN})
    snips = c.snippets(uri("pkg/main.py"), "from .shapes import Circle, scale\n\nx = sca", 40, words)
    assert min(snips, key=lambda s: s.rank).text.startswith("def scale(")


def test_chunks_are_ranked_by_jaccard_similarity():
    near = "".join(f"def handler_{i}(request, response):\n    return route(request, response, {i})\n"
                   for i in range(30))
    far = "".join(f"matrix_{i} = numpy.zeros(({i}, {i}))\n" for i in range(60))
    c = collector({"near.py": near, "far.py": far, "f.py": ""})
    prefix = "def serve(request, response):\n    return route(request, "
    snips = c.snippets(uri("f.py"), prefix, 100, words)
    assert snips and {s.path for s in snips} == {"near.py"} and all(s.kind == "chunk" for s in snips)


@pytest.mark.parametrize("budget", [1, 20, 60, 150, 400, 2000])
def test_budget_respected(budget):
    big = "".join(f"def handler_{i}(request):\n    return route(request, {i})\n" for i in range(200))
    c = collector({"pkg/shapes.py": SHAPES, "pkg/util.py": UTIL, "pkg/big.py": big, "pkg/main.py": MAIN})
    c.update(uri("pkg/big.py"), "pkg/big.py", big + "x = 1\n", [(400, 400, 401)])
    c.refresh()
    snips = c.snippets(uri("pkg/main.py"), MAIN + "route(request, handler_3(", budget, words)
    assert sum(words(f"{s.path}\n{s.text}") for s in snips) <= budget
    assert len(snips) >= (budget >= 150)


def test_order_is_stable_while_typing():
    """Chosen by priority, placed by (path, line): typing in F does not move a snippet, so its KV stays cached."""
    near = "".join(f"def handler_{i}(request, response):\n    return route(request, response, {i})\n"
                   for i in range(90))
    c = collector({"pkg/shapes.py": SHAPES, "pkg/util.py": UTIL, "pkg/near.py": near, "pkg/main.py": MAIN})
    base, typed = MAIN + "route(request, response, handler_1(", "request, response)\n    x = handler_2(request"
    seen = []
    for k in range(len(typed) + 1):
        text = base + typed[:k]
        c.update(uri("pkg/main.py"), "pkg/main.py", text, [(6, 6, 6)])
        snips = c.snippets(uri("pkg/main.py"), text, 300, words)
        assert [(s.path, s.start_line) for s in snips] == sorted((s.path, s.start_line) for s in snips)
        seen.append([(s.path, s.start_line, s.text) for s in snips])
    assert len({repr(s) for s in seen}) == 1 and {p for p, _, _ in seen[0]} == {"pkg/near.py", "pkg/shapes.py"}
    ranks = [s.rank for s in c.snippets(uri("pkg/main.py"), text, 300, words)]
    assert sorted(ranks) == list(range(len(ranks))) and ranks != sorted(ranks)  # placed by path, not by rank


def test_a_chosen_chunk_stays_through_near_ties():
    """Hysteresis: a chunk chosen for F last time keeps it while another is only slightly closer."""
    common = " ".join(f"x{i}" for i in range(10))
    docs = {"a.py": common + " a1 a2 a3\n", "b.py": common + " b1 b2 b3\n", "f.py": ""}
    c = collector(docs)
    assert [s.path for s in c.snippets(uri("f.py"), common + " a1\n", 20, words)] == ["a.py"]
    assert [s.path for s in c.snippets(uri("f.py"), common + " b1\n", 20, words)] == ["a.py"]
    assert [s.path for s in collector(docs).snippets(uri("f.py"), common + " b1\n", 20, words)] == ["b.py"]


def test_lru_bound_on_documents_and_characters():
    c = collector({f"m{i}.py": f"value_{i} = {i}\n" for i in range(5)}, max_docs=3)
    assert c.documents() == 3
    snips = c.snippets(uri("m4.py"), "value_0 + value_1 + value_2 + value_3 + ", 500, words)
    assert {s.path for s in snips} == {"m2.py", "m3.py"}  # m0, m1 were evicted (least recently used)
    c = collector({"a.py": "a = 1\n" * 100, "b.py": "b = 1\n" * 100, "c.py": "c = 1\n"}, max_total_chars=1000)
    assert c.documents() == 2


def test_the_current_file_is_never_context():
    text = "".join(f"def handler_{i}(request):\n    return route(request, {i})\n" for i in range(50))
    c = collector({"f.py": text, "copy/f.py": text})
    c.update("untitled:1", "f.py", text)  # the same path open twice
    c.refresh()
    assert all(s.path == "copy/f.py" for s in c.snippets(uri("f.py"), text, 2000, words))
    other = c.snippets("untitled:1", text, 2000, words)
    assert other and all(s.path == "copy/f.py" for s in other)
    alone = collector({"f.py": text})
    assert alone.snippets(uri("f.py"), text, 2000, words) == []


def test_near_duplicates_are_evicted():
    text = "".join(f"def handler_{i}(request):\n    return route(request, {i})\n" for i in range(20))
    c = collector({"a.py": text, "b.py": text, "f.py": ""})
    snips = c.snippets(uri("f.py"), "def handler(request):\n    return route(request, ", 5000, words)
    assert len(snips) == 1


def test_edits_are_tracked_shifted_and_merged():
    g = "".join(f"line_{i} = {i}\n" for i in range(100))
    c = collector({"g.py": g, "f.py": "x = 1\n"})
    g2 = g.replace("line_50 = 50", "line_50 = compute_total(50)")
    c.update(uri("g.py"), "g.py", g2, [(50, 50, 50)])
    g3 = "import os\nimport sys\n" + g2  # two lines inserted above: the edit moves down with its text
    c.update(uri("g.py"), "g.py", g3, [(0, 0, 2)])
    c.update(uri("f.py"), "f.py", "x = 2\n", [(0, 0, 0)])  # F's own edits are no context for F
    edits = [s for s in c.snippets(uri("f.py"), "x = 2\n", 2000, words) if s.kind == "edit"]
    assert [(s.start_line, s.end_line) for s in edits] == [(1, 5), (51, 55)]
    assert "line_50 = compute_total(50)" in edits[1].text
    c.update(uri("g.py"), "g.py", g3.replace("line_51 = 51", "line_51 = 0"), [(53, 53, 53)])  # next to it: merged
    edits = [s for s in c.snippets(uri("f.py"), "x = 2\n", 2000, words) if s.kind == "edit"]
    assert [(s.start_line, s.end_line) for s in edits] == [(1, 5), (51, 56)]
    c.close(uri("g.py"))
    assert c.snippets(uri("f.py"), "x = 2\n", 2000, words) == []


def test_indexing_is_incremental_and_requests_never_parse(monkeypatch):
    c = collector({"pkg/shapes.py": SHAPES, "pkg/util.py": UTIL})
    assert c.refresh() == 0  # nothing changed
    c.update(uri("pkg/main.py"), "pkg/main.py", MAIN)
    assert c.pending() == 1 and c.pending(skip=uri("pkg/main.py")) == 0
    assert c.refresh(skip=uri("pkg/main.py")) == 0 and c.refresh() == 1

    def no_parse(*a, **k):
        raise AssertionError("a request parsed a document")

    monkeypatch.setattr(crossfile, "build_index", no_parse)
    monkeypatch.setattr(crossfile, "python_defs", no_parse)
    assert c.snippets(uri("pkg/main.py"), MAIN, 512)
    c.update(uri("pkg/util.py"), "pkg/util.py", UTIL + "def fresh(): ...\n")  # not indexed yet: the last index serves
    assert any("helper" in s.text for s in c.snippets(uri("pkg/main.py"), MAIN + "u.", 512))


def test_class_summary_from_ast_index():
    idx = build_index("pkg/shapes.py", SHAPES)
    assert set(idx.defs) == {"UNIT", "Circle", "scale"} and idx.module == ("pkg", "shapes")
    assert idx.defs["UNIT"].text == "UNIT = 1.0"


# -- the prompt ----------------------------------------------------------------------------------------------------

CTX = [Snippet(path="pkg/b.py", text="def beta():\n    ...", start_line=9, end_line=10, rank=1),
       Snippet(path="pkg/a.py", text="ALPHA = 1", start_line=3, end_line=3, rank=0)]


def test_repo_level_layout_when_the_model_has_the_tokens(tokenizer):  # noqa: F811
    svc, _ = service(tokenizer, header=True)
    m = svc.meta
    req = CompletionRequest(prefix="import os\n", path="pkg/main.py", repo_name="proj", context=CTX)
    ids = svc.plan_prompt(req).ids
    assert ids[0] == m.repo_name_id and ids.count(m.file_sep_id) == 3
    seps = [i for i, t in enumerate(ids) if t == m.file_sep_id]
    assert tokenizer.decode(ids[1 : seps[0]]) == "proj"
    assert tokenizer.decode(ids[seps[0] + 1 : seps[1]]) == "pkg/a.py\nALPHA = 1\n"
    assert tokenizer.decode(ids[seps[1] + 1 : seps[2]]) == "pkg/b.py\ndef beta():\n    ...\n"
    assert tokenizer.decode(ids[seps[2] + 1 :]) == "pkg/main.py\nimport os"
    without = svc.plan_prompt(CompletionRequest(prefix="import os\n", path="pkg/main.py", repo_name="proj")).ids
    assert ids[seps[2] :] == without[without.index(m.file_sep_id) :]


def test_comment_layout_without_repo_tokens(tokenizer):  # noqa: F811
    svc, _ = service(tokenizer)
    plan = svc.plan_prompt(CompletionRequest(prefix="import os\nx = 1\n", path="pkg/main.py", context=CTX))
    assert tokenizer.decode(plan.ids) == ("# path: pkg/a.py\n# ALPHA = 1\n# path: pkg/b.py\n# def beta():\n#     ...\n"
                                          "import os\nx = 1")
    ts = svc.plan_prompt(CompletionRequest(prefix="let x = 1;\n", path="web/app.ts", context=CTX[1:]))
    assert tokenizer.decode(ts.ids).startswith("// path: pkg/a.py\n// ALPHA = 1\nlet x")


def test_context_comes_on_top_of_the_window_while_the_model_has_room(tokenizer):  # noqa: F811
    svc, _ = service(tokenizer, header=True)
    m = svc.meta
    doc = "".join(f"value_{i} = compute({i})\n" for i in range(300))
    big = [Snippet(path=f"m{i}.py", text=doc[: 100 * (i + 1)], start_line=1, end_line=9, rank=i) for i in range(4)]
    alone = svc.prompts.plan(CompletionRequest(prefix=doc, path="f.py", repo_name="r", max_prompt_tokens=512), 4096)
    req = CompletionRequest(prefix=doc, path="f.py", repo_name="r", max_prompt_tokens=512, context=big)
    roomy = svc.prompts.plan(req, 4096)  # room for all of it: the current file's window is the one it has alone
    assert roomy.ids.count(m.file_sep_id) == 5 and len(roomy.ids) > 512
    last = len(roomy.ids) - roomy.ids[::-1].index(m.file_sep_id) - 1  # the current file's <file_sep>
    assert roomy.ids[last:] == alone.ids[alone.ids.index(m.file_sep_id) :]
    assert roomy.window_start == alone.window_start
    tight = svc.prompts.plan(req, 512 + 64 + 8)  # no room beyond maxPromptTokens: at most half of the prompt
    assert len(tight.ids) <= 512
    files = tokenizer.decode(tight.ids)  # ranks 2 and 3 are dropped, 0 and 1 keep their place
    assert "m0.py" in files and "m1.py" in files and "m2.py" not in files and "m3.py" not in files
    assert tight.ids.count(m.file_sep_id) == 3 and tight.window_start > alone.window_start


def test_the_cold_short_window_leaves_the_context_out(tokenizer):  # noqa: F811
    svc, _ = service(tokenizer, header=True)
    req = CompletionRequest(prefix="import os\nx = 1\n" * 40, path="f.py", repo_name="r", cold_prompt_tokens=64,
                            context=CTX)
    plan, cold = svc.plan_for_cache(req)
    assert cold and "pkg/a.py" not in tokenizer.decode(plan.ids)
    assert "pkg/a.py" in tokenizer.decode(svc.plan_prompt(req).ids)  # the full prompt, prefilled after it, has it


def test_new_context_is_prefilled_aside_and_then_serves_the_next_request(tiny_bundle):
    """A changed context would invalidate the whole file's K/V after it; warm_aside fills a spare slot while the
    document's slot keeps the old prompt, then swaps, so the request with the new context evaluates only a few
    tokens. Cancelled, it leaves the document's slot alone."""
    import threading

    from runtime.complete import CompletionRequest, CompletionService
    from runtime.crossfile import Snippet

    svc = CompletionService.load(str(tiny_bundle), kv_slots=4)
    prefix = "def area(r):\n    return 3.14 * r * r\n\n\ndef perimeter(r):\n    return "
    old = CompletionRequest(prefix=prefix, doc_key="d", max_new_tokens=4,
                            context=[Snippet(path="a.py", text="x = 1\n", kind="chunk")])
    new = msgspec.structs.replace(old, context=[Snippet(path="b.py", text="def circle(r):\n    pass\n", kind="chunk")])
    first = svc.complete(old)
    stopped = threading.Event()
    stopped.set()
    assert not svc.warm_aside(new, stopped)
    assert svc.complete(msgspec.structs.replace(old, prefix=prefix + "2")).reused_tokens >= first.prompt_tokens - 4
    assert svc.warm_aside(new)
    res = svc.complete(msgspec.structs.replace(new, prefix=prefix + "2 "))
    assert res.prompt_tokens - res.reused_tokens <= 4 and res.context == new.context
