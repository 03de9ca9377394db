"""Context beyond the file: snippets of the other open documents, chosen for a cursor within a token budget.

Fed with the documents the editor has open (every tab: uri, workspace-relative path, text), their updates and the
line ranges each change touched. For a completion in file F it takes, in this priority, until the budget is spent:
1. definitions of names imported into F that resolve to an open document (`from .x import n`, `from pkg.x import n`,
   `import pkg.x as y` -> `y.n`; modules are matched to documents by path), the name being typed and the names used
   near the cursor first: signature + docstring, or a class with its attributes and method signatures (Python's
   `ast`; a line-based fallback when the file does not parse);
2. ~60-line chunks of the other documents ranked by Jaccard similarity of their identifiers with the lines before
   the cursor (a chunk chosen last time for F keeps a small bonus, so near ties do not flip while typing);
3. the ranges edited most recently in other documents.
Never F itself; near-duplicates are dropped. The chosen snippets are sorted by (path, line), not by score: their
place in the prompt does not move while the user types, so their KV stays cached.

Python's imports and definitions come from runtime.crossfile_py. Indexing (ast, chunks) happens in `refresh()`, once
per change of a document and off the request path: a request reads the last finished index of each document and
never waits. Memory: an LRU of at most `max_docs` documents, each indexed up to `max_doc_chars`, `max_total_chars`
in all (an index holds ~7x its text in Python objects, mostly the chunks' identifier sets). No LSP and no disk here.
"""

from __future__ import annotations

import keyword
import logging
import re
import threading
from collections import OrderedDict
from typing import Callable, Iterable, NamedTuple

import msgspec

from runtime.crossfile_py import (Definition, Import, Modules, imported_definitions, module_of, parse_imports,
                                  python_defs)

CHUNK_LINES = 60
QUERY_LINES = 30  # lines before the cursor that chunks are compared with
MIN_CHUNK_SCORE = 0.08  # Jaccard below this: unrelated text, not worth prompt tokens
STICKY = 1.25  # score bonus of a chunk chosen for the same file last time
DUP_SHARE = 0.8  # a snippet with this share of its lines already chosen is a near-duplicate
MIN_TRIM_LINES = 8  # a chunk or edit cut to fit the budget keeps at least this many lines
MIN_DEF_LINES = 2  # a definition too long for the budget left keeps its first lines (a class: header, docstring)
MIN_ROOM_TOKENS = 16  # less budget left than this: stop looking
EDIT_MARGIN, EDIT_MAX_LINES, MAX_EDITS = 2, 24, 16

log = logging.getLogger(__name__)
_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARTIAL = re.compile(r"(?:([A-Za-z_][\w.]*)\.)?([A-Za-z_]\w*)?\Z")
_STOP = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | {"self", "cls"}
_COMMENT = {".js": "//", ".jsx": "//", ".ts": "//", ".tsx": "//", ".go": "//", ".rs": "//", ".c": "//", ".h": "//",
            ".cc": "//", ".cpp": "//", ".hpp": "//", ".java": "//", ".kt": "//", ".cs": "//", ".swift": "//",
            ".scala": "//", ".dart": "//", ".php": "//", ".lua": "--", ".sql": "--", ".hs": "--"}


class Snippet(msgspec.Struct, frozen=True, kw_only=True):
    """Text of another file for the prompt. Lines are 1-based and inclusive, as an editor shows them."""

    path: str
    text: str
    start_line: int = 1
    end_line: int = 1
    kind: str = "chunk"  # definition | chunk | edit
    rank: int = 0  # order of choice (0 = most wanted): a prompt that must shrink drops the highest rank first


# ---------------------------------------------------------------------------------------------------------------
# Rendering (used by runtime.complete.prompt)


def comment_prefix(path: str | None) -> str:
    """Line-comment syntax of the current file (Python's `#` when unknown)."""
    ext = "" if not path or "." not in path.rsplit("/", 1)[-1] else "." + path.rsplit(".", 1)[-1].lower()
    return _COMMENT.get(ext, "#")


def by_path(snippets: Iterable[Snippet]) -> list[tuple[str, str]]:
    """(path, text) per file in (path, line) order, the pieces of one file joined by a `...` line: each file once."""
    out: list[tuple[str, str]] = []
    for s in sorted(snippets, key=lambda s: (s.path, s.start_line)):
        if out and out[-1][0] == s.path:
            out[-1] = (s.path, out[-1][1] + "\n...\n" + s.text)
        else:
            out.append((s.path, s.text))
    return out


def as_comments(snippets: Iterable[Snippet], path: str | None) -> str:
    """Snippets as comments for models without repo-level tokens: `# path: x.py` then each line commented."""
    c = comment_prefix(path)
    return "".join(f"{c} path: {p}\n" + "".join(f"{c} {ln}".rstrip() + "\n" for ln in text.split("\n"))
                   for p, text in by_path(snippets))


# ---------------------------------------------------------------------------------------------------------------
# Indexing one document (pure)


class Chunk(NamedTuple):
    start: int
    end: int
    text: str
    ids: frozenset[str]


class Index(NamedTuple):
    path: str
    module: tuple[str, ...] | None  # None: not a Python file
    defs: dict[str, Definition]
    imports: dict[str, Import]  # for re-exports (`from .impl import n` in a package __init__)
    chunks: list[Chunk]


def estimate_tokens(text: str) -> int:
    """Without a tokenizer: code runs ~3 characters a token in the BPE vocabularies we serve."""
    return len(text) // 3 + 1


def identifiers(text: str, canon: dict[str, str] | None = None) -> frozenset[str]:
    """Names in `text` (keywords and one-letter names say nothing); `canon` shares one string per name across a
    document's chunks (it takes an index from ~10x to ~7x its text in Python objects)."""
    words = (w for w in _ID.findall(text) if len(w) > 1 and w not in _STOP)
    return frozenset(words if canon is None else (canon.setdefault(w, w) for w in words))


def _lines(text: str) -> list[str]:
    """Lines as LSP and Python's parser count them (\\n, \\r\\n or a lone \\r ends one)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def build_index(path: str, text: str, chunk_lines: int = CHUNK_LINES) -> Index:
    lines = _lines(text)
    text = "\n".join(lines)
    module = module_of(path)
    defs = python_defs(text, lines) if module is not None else {}
    imports = {i.local: i for i in parse_imports(text)} if module is not None else {}
    chunks, canon = [], {}
    for a in range(0, len(lines), chunk_lines):
        body = "\n".join(lines[a : a + chunk_lines])
        ids = identifiers(body, canon)
        if ids:
            chunks.append(Chunk(a + 1, min(a + chunk_lines, len(lines)), body, ids))
    return Index(path, module, defs, imports, chunks)


# ---------------------------------------------------------------------------------------------------------------
# Choosing snippets within a budget


class _Picker:
    """Snippets in priority order until the budget is spent; near-duplicates of chosen lines are skipped."""

    def __init__(self, budget: int, count: Callable[[str], int]):
        self.budget, self.count, self.used = budget, count, 0
        self.chosen: list[Snippet] = []
        self.seen: set[str] = set()

    @property
    def room(self) -> int:
        return self.budget - self.used

    def add(self, path: str, lines: list[str], start: int, end: int, kind: str, min_lines: int) -> bool:
        """Choose a snippet if it is new and fits, cut to its first lines that fit (at least `min_lines`)."""
        keep = [ln.strip() for ln in lines if len(ln.strip()) > 3]  # `...`, `)` or `pass` prove no duplicate
        if not keep or sum(ln in self.seen for ln in keep) >= DUP_SHARE * len(keep):
            return False
        n = self.count(f"{path}\n" + "\n".join(lines))
        room = min(self.room, self.budget // 2) if kind == "definition" else self.room  # a big class leaves room
        while n > room:  # estimated, then checked
            k = min(len(lines) - 1, len(lines) * room // max(n, 1))
            if k < max(min_lines, 1):
                return False
            lines = lines[:k]
            end = end if kind == "definition" else start + k - 1  # a definition's summary keeps its range
            n = self.count(f"{path}\n" + "\n".join(lines))
        self.chosen.append(Snippet(path=path, text="\n".join(lines), start_line=start, end_line=end, kind=kind,
                                   rank=len(self.chosen)))
        self.used += n
        self.seen.update(ln.strip() for ln in lines)
        return True


def _query(prefix: str, n: int) -> tuple[str, str | None, str]:
    """(last n lines before the cursor without the word being typed, its `alias.` if any, the word so far)."""
    i = len(prefix)
    for _ in range(n):
        i = prefix.rfind("\n", 0, i)
        if i <= 0:
            i = 0
            break
    window = prefix[i:]
    m = _PARTIAL.search(window[-200:])
    owner, word = (m.group(1), m.group(2) or "") if m else (None, "")
    return window[: len(window) - len(word)], owner, word


# ---------------------------------------------------------------------------------------------------------------
# The collector


class _Doc:
    __slots__ = ("uri", "path", "text", "version", "index", "indexed", "lines")

    def __init__(self, uri: str, path: str, text: str):
        self.uri, self.path, self.text, self.version = uri, path, text, 0
        self.index: Index | None = None
        self.indexed = -1  # version of `index`
        self.lines: list[str] | None = None  # current text's lines, for edits (split once per version)


class ContextCollector:
    """Open documents and recent edits -> snippets for a cursor. Thread-safe: the editor's events, the indexer and
    requests may come from different threads."""

    def __init__(self, *, max_docs: int = 64, max_doc_chars: int = 2 << 20, max_total_chars: int = 8 << 20,
                 chunk_lines: int = CHUNK_LINES, query_lines: int = QUERY_LINES):
        self.max_docs, self.max_doc_chars, self.max_total_chars = max_docs, max_doc_chars, max_total_chars
        self.chunk_lines, self.query_lines = chunk_lines, query_lines
        self._docs: OrderedDict[str, _Doc] = OrderedDict()
        self._edits: list[tuple[str, int, int]] = []  # (uri, first, last): 0-based lines of the text now, newest last
        self._sticky: OrderedDict[str, frozenset] = OrderedDict()  # uri -> chunks chosen last time
        self._counts: dict[str, int] = {}
        self._counter: Callable[[str], int] | None = None
        self._lock = threading.Lock()

    # -- the editor's events -------------------------------------------------------------------------------------

    def update(self, uri: str, path: str, text: str, edits: Iterable[tuple[int, int, int]] = ()) -> None:
        """A document opened or changed. `edits`: (first line, old last line, new last line) of each change, 0-based,
        in the order applied. O(1) apart from the edits: indexing waits for `refresh()`."""
        with self._lock:
            d = self._docs.get(uri)
            if d is None:
                self._docs[uri] = d = _Doc(uri, path, text)
            elif d.text is not text or d.path != path:
                d.path, d.text, d.version, d.lines = path, text, d.version + 1, None
            self._docs.move_to_end(uri)
            for first, old_last, new_last in edits:
                self._track(uri, first, old_last, new_last)
            self._evict()

    def close(self, uri: str) -> None:
        with self._lock:
            self._docs.pop(uri, None)
            self._sticky.pop(uri, None)
            self._edits = [e for e in self._edits if e[0] != uri]

    def _track(self, uri: str, first: int, old_last: int, new_last: int) -> None:
        """Record an edit; earlier edits of the document below it shift, touching ones merge into it."""
        delta, lo, hi, keep = new_last - old_last, first, new_last, []
        for e in self._edits:
            if e[0] != uri or e[2] < first - 1:
                keep.append(e)
            elif e[1] > old_last + 1:
                keep.append((uri, e[1] + delta, e[2] + delta))
            else:
                lo, hi = min(lo, e[1]), max(hi, e[2] + delta if e[2] > old_last else hi)
        self._edits = (keep + [(uri, lo, hi)])[-MAX_EDITS:]

    def _evict(self) -> None:
        total = sum(min(len(d.text), self.max_doc_chars) for d in self._docs.values())
        while len(self._docs) > 1 and (len(self._docs) > self.max_docs or total > self.max_total_chars):
            _, d = self._docs.popitem(last=False)
            total -= min(len(d.text), self.max_doc_chars)
            self._sticky.pop(d.uri, None)
            self._edits = [e for e in self._edits if e[0] != d.uri]

    # -- indexing ------------------------------------------------------------------------------------------------

    def pending(self, skip: str | None = None) -> int:
        """Documents changed since they were last indexed (but `skip`, the one being typed in)."""
        with self._lock:
            return sum(d.indexed != d.version and d.uri != skip for d in self._docs.values())

    def refresh(self, skip: str | None = None) -> int:
        """Index every document changed since its last index but `skip` (the one being typed in: it is no context
        for itself, and re-parsing it per keystroke would be waste); parsing runs outside the lock."""
        with self._lock:
            todo = [(d, d.version, d.path, d.text) for d in self._docs.values()
                    if d.indexed != d.version and d.uri != skip]
        for d, version, path, text in todo:
            try:
                index = build_index(path, text[: self.max_doc_chars], self.chunk_lines)
            except Exception:  # noqa: BLE001 - a document we cannot index is no context; never retried unchanged
                log.exception("cannot index %s for context", path)
                index = Index(path, None, {}, {}, [])
            with self._lock:
                if self._docs.get(d.uri) is d and d.version == version:
                    d.index, d.indexed = index, version
        return len(todo)

    def documents(self) -> int:
        with self._lock:
            return len(self._docs)

    # -- a request -----------------------------------------------------------------------------------------------

    def _count(self, count: Callable[[str], int] | None) -> Callable[[str], int]:
        """Token counts, remembered per text (a snippet is counted once, not on every keystroke)."""
        fn = count or estimate_tokens
        if fn != self._counter:
            self._counter, self._counts = fn, {}
        memo = self._counts

        def counted(text: str) -> int:
            n = memo.get(text)
            if n is None:
                if len(memo) > 4096:
                    memo.clear()
                n = memo[text] = fn(text)
            return n

        return counted

    def snippets(self, uri: str, prefix: str, budget_tokens: int, count_tokens: Callable[[str], int] | None = None,
                 path: str | None = None) -> list[Snippet]:
        """Snippets for a cursor in `uri` after `prefix`, within `budget_tokens` (counted on path + text), sorted by
        (path, line). Reads the finished indexes only: documents not yet indexed are left out."""
        if budget_tokens <= 0:
            return []
        with self._lock:
            me = self._docs.get(uri)
            if me is not None:
                self._docs.move_to_end(uri)
            path = path or (me.path if me is not None else uri)
            others = [d for d in self._docs.values() if d.uri != uri and d.path != path]
            indexes = [d.index for d in others if d.index is not None]
            edits = []
            for u, first, last in reversed(self._edits):
                d = self._docs.get(u)
                if d is not None and d in others:
                    if d.lines is None:
                        d.lines = _lines(d.text[: self.max_doc_chars])
                    edits.append((d.path, d.lines, first, last))
            sticky = self._sticky.get(uri, frozenset())
            pick = _Picker(budget_tokens, self._count(count_tokens))
        if not indexes and not edits:
            return []
        window, owner, word = _query(prefix, self.query_lines)
        mods = Modules(i for i in indexes if i.module is not None)
        for index, d in imported_definitions(path, prefix, owner, word, mods) if mods.by_suffix else []:
            if pick.room < MIN_ROOM_TOKENS:
                break
            pick.add(index.path, d.text.split("\n"), d.start, d.end, "definition", MIN_DEF_LINES)
        query, scored = identifiers(window), []
        for index in indexes:
            for c in index.chunks:
                inter = len(query & c.ids)
                score = inter / (len(query) + len(c.ids) - inter) if inter else 0.0
                score *= STICKY if (index.path, c.start) in sticky else 1.0
                if score >= MIN_CHUNK_SCORE:
                    scored.append((-score, index.path, c.start, c))
        chunks = set()
        for _, p, start, c in sorted(scored, key=lambda t: t[:3]):
            if pick.room < MIN_ROOM_TOKENS:
                break
            if pick.add(p, c.text.split("\n"), start, c.end, "chunk", MIN_TRIM_LINES):
                chunks.add((p, start))
        for p, lines, first, last in edits:
            if pick.room < MIN_ROOM_TOKENS:
                break
            a = max(0, min(first, len(lines)) - EDIT_MARGIN)
            b = min(len(lines), last + EDIT_MARGIN + 1)
            a = max(a, b - EDIT_MAX_LINES)
            pick.add(p, lines[a:b], a + 1, b, "edit", MIN_TRIM_LINES)
        with self._lock:
            self._sticky[uri] = frozenset(chunks)
            self._sticky.move_to_end(uri)
            while len(self._sticky) > self.max_docs:
                self._sticky.popitem(last=False)
        return sorted(pick.chosen, key=lambda s: (s.path, s.start_line, s.end_line))
