"""Completion service: document text -> prompt -> generate -> post-processed suggestion.

No LSP here (DESIGN.md): callers hand in plain strings (prefix before the cursor, suffix after it) and get a
`CompletionResult` back. The pieces, each a pure function with golden tests:

- `choose_window_start`: the prompt is a window of the prefix whose start sits on a line boundary and moves only
  in large jumps, so consecutive keystrokes share every prompt token but the last few (KV reuse in the Decoder).
- `split_backoff`: for a model without FIM the prompt ends on a natural token boundary (trailing spaces mid-line,
  or newline + indentation at a line start, are backed off); the backed-off text is the forced prefix of what
  runtime.engine.generate writes (token healing) and is stripped from the completion. Measured on the default
  model: exact match 5% -> 19% (issue 4).
- `postprocess`: line/block stop, suffix de-duplication, whitespace/fence/prose rejection, bracket balance,
  indentation.
- `ResultCache`: repeated requests and "typing along" a shown suggestion cost no model call.
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, Literal, Sequence

import msgspec

from runtime.crossfile import Snippet, as_comments, by_path
from runtime.sequences import common_prefix_len

if TYPE_CHECKING:  # runtime.engine/bundle are imported lazily: pure helpers must work without them
    from runtime.bundle import Bundle

Mode = Literal["line", "block"]

# ---------------------------------------------------------------------------------------------------------------
# Requests and results


class CompletionRequest(msgspec.Struct, kw_only=True):
    """What the editor knows at the cursor; `doc_key` keys per-document window state (e.g. the URI)."""

    prefix: str
    suffix: str = ""
    doc_key: str = ""
    path: str | None = None  # workspace-relative path, for the `<file_sep>` header
    repo_name: str | None = None  # workspace folder name, for the `<repo_name>` header
    mode: Mode = "line"
    max_new_tokens: int = 64
    max_prompt_tokens: int = 1024
    max_suffix_tokens: int = 256  # FIM models only (llama.vscode sends 256 too)
    temperature: float = 0.0
    seed: int | None = None
    speculate: bool = True
    cold_prompt_tokens: int = 0  # > 0: when more than this must be evaluated, answer from a short window (see plan)
    context: list[Snippet] = []  # other files' snippets (runtime.crossfile), put before this one in the prompt


class CompletionResult(msgspec.Struct, kw_only=True):
    """A suggestion plus what it cost. `text` is inserted at the cursor and replaces nothing."""

    text: str
    raw_text: str = ""  # model continuation (backed-off text removed) before post-processing
    stop_reason: str = "eos"  # eos|stop|max_tokens|cancelled|cached|skipped
    skipped: str | None = None  # why the model was not called (mid-word, empty, ...)
    cached: bool = False
    prompt_tokens: int = 0
    reused_tokens: int = 0
    new_tokens: int = 0
    cpu_ms: float = 0.0
    prompt_ms: float = 0.0
    decode_ms: float = 0.0
    cpu_tokens_per_s: float = 0.0
    drafted: int = 0
    accepted: int = 0
    cold: bool = False  # answered from a short cold-start window: the caller should warm the full one


# ---------------------------------------------------------------------------------------------------------------
# Prompt window

WINDOW_REFILL_FRACTION = 0.75  # after a jump the window holds 3/4 of max tokens: ~1/4 of slack before the next jump
WINDOW_SHRINK_FRACTION = 0.5  # a window below half of max (cursor moved up, text deleted) is refilled
_SCAN_CHARS_PER_TOKEN = 12  # generous chars/token bound: only this much text is ever tokenized to place the start
COLD_SLOT = "\0cold"  # suffix of a document's second KV slot, the short cold-start window
HEADER_NAME_CHARS = 200  # a repo name or path longer than this is cut in the prompt header (a 4,000-char path)


def _line_starts(text: str, lo: int) -> list[int]:
    """Offsets >= lo that begin a line (0 or just after a newline)."""
    starts = [0] if lo == 0 else []
    i = text.find("\n", max(lo - 1, 0))
    while i != -1:
        starts.append(i + 1)
        i = text.find("\n", i + 1)
    return [s for s in starts if s >= lo and s <= len(text)]


def choose_window_start(
    prefix: str, prev_start: int | None, count_tokens: Callable[[str], int], max_tokens: int
) -> int:
    """Char offset in `prefix` where the prompt window starts.

    The start stays put while the window holds between 1/2 and all of `max_tokens`; otherwise it jumps to the
    line boundary that leaves ~3/4 of `max_tokens`, so typing evaluates only new tokens (KV reuse) and a jump
    happens once per ~max/4 tokens typed. A single line longer than the budget is cut mid-line as a last resort.
    """
    max_tokens = max(int(max_tokens), 1)
    if prev_start is not None and 0 <= prev_start <= len(prefix) and (prev_start == 0 or prefix[prev_start - 1] == "\n"):
        n = count_tokens(prefix[prev_start:])
        if n <= max_tokens and (prev_start == 0 or n >= max_tokens * WINDOW_SHRINK_FRACTION):
            return prev_start
    if count_tokens(prefix) <= max_tokens:
        return 0
    target = max(int(max_tokens * WINDOW_REFILL_FRACTION), 1)
    lo = max(0, len(prefix) - target * _SCAN_CHARS_PER_TOKEN)
    starts = _line_starts(prefix, lo)
    # count_tokens(prefix[s:]) decreases with s: binary search the first start that fits
    a, b = 0, len(starts)
    while a < b:
        m = (a + b) // 2
        if count_tokens(prefix[starts[m] :]) <= target:
            b = m
        else:
            a = m + 1
    if a < len(starts) and starts[a] < len(prefix):
        return starts[a]
    # the last line alone is over budget: cut inside it (binary search over char offsets)
    a, b = lo, len(prefix)
    while a < b:
        m = (a + b) // 2
        if count_tokens(prefix[m:]) <= target:
            b = m
        else:
            a = m + 1
    return a


# ---------------------------------------------------------------------------------------------------------------
# Natural token boundary


def split_backoff(prefix: str) -> tuple[str, str]:
    """(prompt_text, backed_off) for a prefix-only model.

    BPE never ends a token on trailing spaces mid-line ("x = " tokenizes as "x", " =", " " only at the very end)
    nor on "\\n" + indentation before code, so a prompt cut there is out of distribution. Back off to the last
    natural boundary: trailing spaces/tabs mid-line, or the newline and indentation when the cursor is at a line
    start (the text there is whitespace only).
    """
    line_start = prefix.rfind("\n") + 1
    line = prefix[line_start:]
    if line.strip(" \t") == "":
        if line_start == 0:
            return "", prefix  # whitespace-only first line: nothing natural to keep before it
        return prefix[: line_start - 1], prefix[line_start - 1 :]
    stripped = line.rstrip(" \t")
    if len(stripped) < len(line):
        cut = line_start + len(stripped)
        return prefix[:cut], prefix[cut:]
    return prefix, ""


# ---------------------------------------------------------------------------------------------------------------
# Post-processing

_WORD = re.compile(r"[A-Za-z0-9_]")
_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {")": "(", "]": "[", "}": "{"}
_PROSE_START = re.compile(
    r"^\s*(Here('s| is| are)|Sure\b|Certainly\b|Of course\b|This (code|function|will|is)\b|The (code|function|above|following)\b"
    r"|Note:|In this\b|I (will|would|have|can)\b|You can\b|Below\b|Explanation\b|Output:)",
)
_CODE_CHARS = set("()[]{}=<>+*/%@#\"'`;|&^~\\")
_BLOCK_OPENERS = (":", "{", "(", "[")


class PostContext(msgspec.Struct, kw_only=True):
    """What post-processing needs from the document around the cursor."""

    line_prefix: str  # text of the cursor's line before the cursor
    rest_of_line: str  # text of the cursor's line after the cursor
    next_lines: list[str] = []  # following lines of the suffix (a few)
    mode: Mode = "line"
    open_brackets: list[str] = []  # brackets open in the prefix, innermost last
    in_comment_or_string: bool = False
    indent_unit: str = "    "


def is_mid_word(prefix: str, suffix: str) -> bool:
    """True when the cursor touches an identifier on its right: completing there would split a word."""
    return bool(suffix) and bool(_WORD.match(suffix[0]))


def _code_brackets(code: str):
    """(index, char) of each bracket in `code` outside strings and # comments (approximate, never raises)."""
    i, n = 0, len(code)
    quote: str | None = None
    while i < n:
        c = code[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if code.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
            if c == "\n" and len(quote) == 1:
                quote = None  # unterminated single-line string: recover at the line end
        elif c == "#":
            j = code.find("\n", i)
            i = n if j == -1 else j
            continue
        elif c in "\"'":
            quote = code[i : i + 3] if code.startswith(c * 3, i) else c
            i += len(quote)
            continue
        elif c in _OPEN or c in _CLOSE:
            yield i, c
        i += 1


def scan_brackets(code: str, stack: list[str] | None = None) -> list[str]:
    """Open brackets after scanning `code` (strings and # comments skipped)."""
    stack = list(stack or [])
    for _, c in _code_brackets(code):
        if c in _OPEN:
            stack.append(c)
        elif stack and stack[-1] == _CLOSE[c]:
            stack.pop()
    return stack


def in_comment_or_string(prefix_window: str) -> bool:
    """Is the cursor inside a # comment or an open triple-quoted string (docstring)? Prose is fine there."""
    line = prefix_window[prefix_window.rfind("\n") + 1 :]
    quote = None
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "#" or line.startswith("//", i):
            return True
    return prefix_window.count('"""') % 2 == 1 or prefix_window.count("'''") % 2 == 1


def detect_indent_unit(text: str) -> str:
    """The document's indentation unit: a tab, or the smallest run of leading spaces seen (default 4)."""
    tabs = spaces = 0
    best = 0
    for line in text.splitlines()[-400:]:
        if line.startswith("\t"):
            tabs += 1
        elif line.startswith(" ") and line.strip():
            spaces += 1
            n = len(line) - len(line.lstrip(" "))
            if n and (best == 0 or n < best):
                best = n
    if tabs > spaces:
        return "\t"
    return " " * (best if 2 <= best <= 8 else 4)


def make_post_context(prefix: str, suffix: str, mode: Mode, window_chars: int = 4000) -> PostContext:
    """Build the post-processing context from the text on both sides of the cursor."""
    window = prefix[-window_chars:]
    line_prefix = prefix[prefix.rfind("\n") + 1 :]
    nl = suffix.find("\n")
    rest = suffix if nl == -1 else suffix[:nl]
    next_lines = [] if nl == -1 else suffix[nl + 1 :].split("\n", 8)[:8]
    cut = window.find("\n") + 1 if len(prefix) > window_chars else 0  # scan from a line start
    return PostContext(
        line_prefix=line_prefix,
        rest_of_line=rest,
        next_lines=next_lines,
        mode=mode,
        open_brackets=scan_brackets(window[cut:]),
        in_comment_or_string=in_comment_or_string(window),
        indent_unit=detect_indent_unit(window),
    )


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def looks_like_prose(line: str) -> bool:
    """A chat-style sentence rather than code: a known opener, or 5+ plain words with no code punctuation."""
    s = line.strip()
    if not s:
        return False
    if _PROSE_START.match(s):
        return True
    words = s.split()
    if len(words) < 5 or any(c in _CODE_CHARS for c in s):
        return False
    plain = [w.strip(".,;:!?") for w in words]
    return all(w.isalpha() for w in plain) and s[0].isupper() and s[-1] in ".!?"


def _strip_rest_overlap(first: str, rest: str) -> str:
    """Remove the longest tail of `first` that the text after the cursor already provides (e.g. `)` or `):`)."""
    rest = rest.rstrip()
    if not rest:
        return first
    body = first.rstrip()
    for k in range(min(len(body), len(rest)), 0, -1):
        if rest.startswith(body[-k:]):
            return body[:-k]
    return first


def _reserved_closers(stack: list[str], rest: str) -> list[str]:
    """The prefix's open brackets minus those the text after the cursor will close."""
    stack = list(stack)
    own: list[str] = []
    for c in rest:
        if c in _OPEN:
            own.append(c)
        elif c in _CLOSE:
            if own:
                own.pop()
            elif stack and stack[-1] == _CLOSE[c]:
                stack.pop()
    return stack


def _cut_unbalanced(text: str, stack: list[str]) -> str:
    """Cut before the first closer that has no matching opener (the model closed something it didn't open)."""
    stack = list(stack)
    for i, c in _code_brackets(text):
        if c in _OPEN:
            stack.append(c)
        elif not stack or stack[-1] != _CLOSE[c]:
            return text[:i]
        else:
            stack.pop()
    return text


def _width(line: str) -> int:
    """Indent width, a tab counting as 4 columns (after _normalize_indent tabs and spaces never mix)."""
    return len(line[: _indent_of(line)].expandtabs(4))


def _normalize_indent(lines: list[str], unit: str) -> list[str]:
    """Lines after the first get the document's indentation style (tabs vs spaces)."""
    out = lines[:1]
    for ln in lines[1:]:
        n = _indent_of(ln)
        lead = ln[:n]
        if unit == "\t" and "    " in lead:
            lead = lead.replace("    ", "\t")
        elif unit != "\t" and "\t" in lead:
            lead = lead.replace("\t", unit)
        out.append(lead + ln[n:])
    return out


def block_end(lines: list[str], line_prefix: str) -> int | None:
    """Index of the first completion line that leaves the block being written, else None.

    Base indent = the cursor line's. Cursor at a statement start (only indentation before it): the completion is
    the rest of the enclosing block, ended by the first line indented less. Cursor mid-line: the block is the one
    this line opens or continues: deeper lines are its body, the first line back at the base ends it (a closing
    bracket there is kept)."""
    first_full = line_prefix + (lines[0] if lines else "")
    base = _width(first_full) if first_full.strip() else len(line_prefix.expandtabs(4))
    at_statement_start = line_prefix.strip() == ""
    for i in range(1, len(lines)):
        line = lines[i]
        if not line.strip():
            continue
        w = _width(line)
        if w < base:
            return i
        if w > base or at_statement_start:
            continue
        return i + 1 if line.strip()[0] in "}])" else i
    return None


def postprocess(text: str, ctx: PostContext) -> str:
    """Turn a raw model continuation into what is shown at the cursor ("" = show nothing).

    Rules, in order (each has golden tests in tests/test_completion_postprocess.py):
    1. markdown fence: cut at ``` ; 2. line mode: first line only; block mode: up to the end of the block;
    3. never repeat the suffix: drop the tail the rest of the line already has, and cut at a line equal to the
    next line of the suffix; 4. balance brackets: cut at a closer with no opener (the prefix's open brackets
    count, minus those the rest of the line closes); 5. keep indentation: no extra indent on a first line typed
    after indentation, the document's indent unit for tabs/spaces; 6. drop prose outside comments/strings;
    7. drop whitespace-only output.
    """
    if not text:
        return ""
    text = text.replace("\r\n", "\n")
    fence = text.find("```")
    if fence != -1:
        text = text[:fence]
    lines = _normalize_indent(text.split("\n"), ctx.indent_unit)
    if ctx.line_prefix.strip() == "" and ctx.line_prefix:
        lines[0] = lines[0].lstrip(" \t")  # the user already typed the indentation
    if ctx.mode == "line":
        lines = lines[:1]
    else:
        end = block_end(lines, ctx.line_prefix)
        if end is not None:
            lines = lines[:end]
    # never repeat the code below
    nxt = next((ln.strip() for ln in ctx.next_lines if ln.strip()), "")
    if nxt and len(nxt) >= 2:
        for i in range(1, len(lines)):
            if lines[i].strip() == nxt:
                lines = lines[:i]
                break
    if len(lines) == 1:
        lines[0] = _strip_rest_overlap(lines[0], ctx.rest_of_line)
    elif ctx.rest_of_line.strip():
        # multi-line insertion before existing text on the line: its tail must not duplicate that text
        lines[-1] = _strip_rest_overlap(lines[-1], ctx.rest_of_line)
    out = _cut_unbalanced("\n".join(lines), _reserved_closers(ctx.open_brackets, ctx.rest_of_line))
    out_lines = out.rstrip("\n").split("\n")
    keep_tail = bool(ctx.rest_of_line.strip())  # "x " before existing text may be meant: keep the last line's spaces
    out = "\n".join(
        ln if (keep_tail and i == len(out_lines) - 1) else ln.rstrip(" \t") for i, ln in enumerate(out_lines)
    )
    if not out.strip():
        return ""
    if not ctx.in_comment_or_string:
        first = next((ln for ln in out.split("\n") if ln.strip()), "")
        if looks_like_prose(first):
            return ""
    return out


# ---------------------------------------------------------------------------------------------------------------
# Result cache


class _CacheEntry(msgspec.Struct):
    prefix_tail: str  # the last `tail_chars` of the prefix: all of it a prompt can see
    prefix_len: int
    suffix_head: str
    options: tuple
    text: str


class ResultCache:
    """A small LRU of shown suggestions.

    Besides exact repeats it serves "typing along": when the new prefix is an old prefix plus characters that the
    old suggestion starts with, the rest of that suggestion is still right and costs no model call. Entries keep
    only the tail of the prefix that a prompt can see (`tail_chars`), never the whole document: 32 entries of a
    20 MB file would otherwise hold 640 MB.
    """

    SUFFIX_CHARS = 256

    def __init__(self, size: int = 32):
        self.size = size
        self._entries: OrderedDict[str, _CacheEntry] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(tail: str, length: int, suffix_head: str, options: tuple) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(repr((options, length)).encode())
        h.update(b"\0")
        h.update(suffix_head.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
        h.update(tail.encode("utf-8", "surrogatepass"))
        return h.hexdigest()

    def get(self, prefix: str, suffix: str, options: tuple, tail_chars: int = 1 << 15) -> str | None:
        suffix_head = suffix[: self.SUFFIX_CHARS]
        key = self._key(prefix[-tail_chars:], len(prefix), suffix_head, options)
        with self._lock:
            e = self._entries.get(key)
            if e is not None:
                self._entries.move_to_end(key)
                return e.text
            for e in reversed(self._entries.values()):
                if e.options != options or e.suffix_head != suffix_head or not e.text:
                    continue
                start = e.prefix_len - len(e.prefix_tail)
                if len(prefix) > e.prefix_len and prefix.startswith(e.prefix_tail, start):
                    typed = prefix[e.prefix_len :]
                    if len(typed) < len(e.text) and e.text.startswith(typed):
                        return e.text[len(typed) :]
        return None

    def put(self, prefix: str, suffix: str, options: tuple, text: str, tail_chars: int = 1 << 15) -> None:
        suffix_head = suffix[: self.SUFFIX_CHARS]
        tail = prefix[-tail_chars:]
        key = self._key(tail, len(prefix), suffix_head, options)
        with self._lock:
            self._entries[key] = _CacheEntry(tail, len(prefix), suffix_head, options, text)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# ---------------------------------------------------------------------------------------------------------------
# The service


class _StopFlag:
    """Duck-typed threading.Event for generate(): set by the caller's cancel Event or by our own stop rule."""

    def __init__(self, outer: threading.Event | None):
        self.outer = outer
        self.stopped = False

    def is_set(self) -> bool:
        return self.stopped or (self.outer is not None and self.outer.is_set())

    def set(self) -> None:
        self.stopped = True

    def wait(self, timeout: float | None = None) -> bool:  # present for Event compatibility
        return self.is_set()


class PromptPlan(msgspec.Struct, kw_only=True):
    """The token ids sent to the model and how to read its output back."""

    ids: list[int]
    backoff: str = ""  # text removed from the prompt end, to be regenerated first and stripped
    lookup_ids: list[int] = []  # tokens prompt-lookup speculation may copy from (prompt + suffix)
    fim: bool = False
    window_start: int = 0


class CompletionService:
    """One model, one KV cache, one caller at a time (the LSP server runs it in a single worker thread)."""

    def __init__(self, bundle: "Bundle", decoder, *, cache_size: int = 32):
        self.bundle = bundle
        self.meta = bundle.meta
        self.tokenizer = bundle.tokenizer
        self.decoder = decoder
        self.cache = ResultCache(cache_size)
        self._window_starts: OrderedDict[str, int] = OrderedDict()
        self.max_context = int(getattr(decoder, "max_context", 0) or getattr(self.meta, "context_length", 2048) or 2048)

    @classmethod
    def load(cls, model: str, *, threads: int = 2, max_context: int = 2048, kv_slots: int = 4) -> "CompletionService":
        """Resolve a model name or path, load its bundle, open a Decoder with `kv_slots` document caches.
        Raises runtime.errors.WaferlineError."""
        from runtime.bundle import load_bundle
        from runtime.engine import Decoder
        from runtime.models import resolve_model

        bundle = load_bundle(resolve_model(model))
        decoder = Decoder(bundle, threads=threads, max_context=max_context, max_slots=kv_slots)
        svc = cls(bundle, decoder)
        svc.max_context = max_context
        return svc

    # -- tokens ---------------------------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids) if text else []

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    @property
    def has_fim(self) -> bool:
        m = self.meta
        return None not in (m.fim_prefix_id, m.fim_suffix_id, m.fim_middle_id)

    def _header_ids(self, req: CompletionRequest) -> list[int]:
        """Repo-level header `<|repo_name|>NAME\\n<|file_sep|>PATH\\n` (Qwen2.5-Coder's training layout, also what
        llama.cpp's /infill writes) when the vocabulary has both tokens; SmolLM2: +~2 points exact match."""
        m = self.meta
        if m.repo_name_id is None or m.file_sep_id is None or not req.path:
            return []
        repo = (req.repo_name or "repo")[:HEADER_NAME_CHARS]
        path = req.path if len(req.path) <= HEADER_NAME_CHARS else "..." + req.path[-HEADER_NAME_CHARS:]
        repo_line = repo + "\n" if self.has_fim else repo  # Qwen2.5-Coder: a line each; StarCoder2/SmolLM2: no newline
        return [m.repo_name_id] + self.encode(repo_line) + [m.file_sep_id] + self.encode(path + "\n")

    def _context_ids(self, req: CompletionRequest) -> list[int]:
        """The header with `req.context` before the current file, as each model was trained: repo-level tokens
        `<|repo_name|>NAME<|file_sep|>path\\ntext\\n`... then the current file's `<|file_sep|>path\\n`; without them
        the snippets as comments (`# path: x.py`, each line commented) above the window. At most half the prompt
        budget: snippets of the highest rank (least wanted) are dropped first, the others keep their place."""
        header, m = self._header_ids(req), self.meta
        snippets = list(req.context)
        limit = min(req.max_prompt_tokens, self.max_context - req.max_new_tokens) // 2
        while snippets:
            if not header:
                ids = self.encode(as_comments(snippets, req.path))
            else:
                ids = []
                for path, text in by_path(snippets):
                    ids += [m.file_sep_id] + self.encode(f"{path}\n{text}\n")
            if len(ids) <= limit:
                at = header.index(m.file_sep_id) if header else 0
                return header[:at] + ids + header[at:]
            snippets.remove(max(snippets, key=lambda s: s.rank))
        return header

    def plan_for_cache(self, req: CompletionRequest) -> tuple[PromptPlan, bool]:
        """The full plan in the document's KV slot, or -- when its uncached part is over `req.cold_prompt_tokens` --
        a short-window plan in the document's cold slot, which answers within the cold-start latency; True then.
        Leaves the slot it planned for current."""
        full = self.plan_prompt(req)
        short = self._cold_plan(req, full)
        return (full, False) if short is None else (short, True)

    def _cold_plan(self, req: CompletionRequest, full: PromptPlan) -> PromptPlan | None:
        """Makes the document's slot current; when more than `req.cold_prompt_tokens` of `full` are not in it, the
        short-window plan (3/4 of that budget before the cursor, 1/4 after) with the document's cold slot current.
        The short window has a slot of its own, so prefilling the full window in the background never evicts it,
        and it is not remembered as the window start."""
        self._use_slot(req.doc_key)
        cached = common_prefix_len(getattr(self.decoder, "tokens", []), full.ids)
        if req.cold_prompt_tokens <= 0 or len(full.ids) - cached <= req.cold_prompt_tokens:
            return None
        short = msgspec.structs.replace(req, max_prompt_tokens=max(16, req.cold_prompt_tokens * 3 // 4),
                                        max_suffix_tokens=min(req.max_suffix_tokens, req.cold_prompt_tokens // 4))
        self._use_slot(req.doc_key + COLD_SLOT)
        return self.plan_prompt(short, remember=False)

    def plan_prompt(self, req: CompletionRequest, remember: bool = True) -> PromptPlan:
        """Token ids for `req`.

        Plain models: [bos] [header] window-of-prefix.
        FIM models (PSM, as trained; the layout llama.cpp's /infill gives llama.vscode's `prompt` field):
            [header] <|fim_prefix|> lines above the cursor line <|fim_suffix|> suffix <|fim_middle|> cursor line so far
        The cursor line's text sits after <|fim_middle|>, as the start of the middle the model writes: while the user
        types on a line everything before it stays the same, so only the typed characters are evaluated (KV reuse).

        The end backs off to a natural token boundary (trailing spaces, indentation, a cursor that cuts a token); the
        backed-off text is regenerated first under a constraint (token healing) and stripped from the completion.
        Only bounded character windows around the cursor are ever tokenized, whatever the document's size."""
        m = self.meta
        head = ([m.bos_id] if getattr(m, "add_bos", False) and m.bos_id is not None else []) + self._context_ids(req)
        suffix_room = req.max_suffix_tokens + 3 if self.has_fim else 0
        budget = max(16, min(req.max_prompt_tokens, self.max_context - req.max_new_tokens - suffix_room - 8) - len(head))
        start = self._window_start(req, budget, remember)
        if self.has_fim:
            cut = max(start, req.prefix.rfind("\n") + 1)
            line = req.prefix[cut:]
            text = line.rstrip(" \t")
            body, backoff = self._heal_last_token(self.encode(text), text, line[len(text):])
            suffix_ids = self.encode(req.suffix[: req.max_suffix_tokens * _SCAN_CHARS_PER_TOKEN])[: req.max_suffix_tokens]
            ids = (head + [m.fim_prefix_id] + self.encode(req.prefix[start:cut]) + [m.fim_suffix_id] + suffix_ids
                   + [m.fim_middle_id] + body)
            return PromptPlan(ids=ids, backoff=backoff, fim=True, lookup_ids=ids, window_start=start)
        window = req.prefix[start:]
        text, backoff = split_backoff(window)
        body = self.encode(text)
        if not body:  # nothing natural before the cursor: keep the raw window
            text, backoff = window, ""
            body = self.encode(text)
        body, backoff = self._heal_last_token(body, text, backoff)
        ids = head + body
        suffix_ids = self.encode(req.suffix[: req.max_suffix_tokens * _SCAN_CHARS_PER_TOKEN])[: req.max_suffix_tokens]
        return PromptPlan(ids=ids, backoff=backoff, lookup_ids=ids + suffix_ids, window_start=start)

    def _heal_last_token(self, body: list[int], text: str, backoff: str) -> tuple[list[int], str]:
        """Token healing: the cursor may cut a token ("items.extend(va|"); give the last token back and let the
        model choose one that starts with its text, so "va" can become "values" instead of ending a word."""
        if backoff or len(body) < 2:
            return body, backoff
        last = self.tokenizer.decode([body[-1]], skip_special_tokens=False)
        if last and text.endswith(last) and body[-1] not in self.stop_ids:
            return body[:-1], last
        return body, backoff

    def _window_start(self, req: CompletionRequest, budget: int, remember: bool = True) -> int:
        """Where the prefix window starts (absolute offset), remembered per document so it moves in jumps.

        Only the last budget x _SCAN_CHARS_PER_TOKEN characters (from a line start) are looked at: a 20 MB document
        costs what a small one does."""
        base = max(0, len(req.prefix) - budget * _SCAN_CHARS_PER_TOKEN)
        if base:
            nl = req.prefix.find("\n", base)
            base = nl + 1 if nl != -1 else base
        view = req.prefix[base:]
        prev = self._window_starts.get(req.doc_key)
        rel = choose_window_start(view, None if prev is None or prev < base else prev - base, self.count_tokens, budget)
        start = base + rel
        if not remember:
            return start
        self._window_starts[req.doc_key] = start
        self._window_starts.move_to_end(req.doc_key)
        while len(self._window_starts) > 64:
            self._window_starts.popitem(last=False)
        return start

    # -- completion ----------------------------------------------------------------------------------------------

    @staticmethod
    def _visible_chars(req: CompletionRequest) -> int:
        """How much of the prefix any prompt for `req` can contain (plan_prompt reads no further back)."""
        return max(4096, req.max_prompt_tokens * _SCAN_CHARS_PER_TOKEN + 1)

    def _options_key(self, req: CompletionRequest) -> tuple:
        """Everything besides the text that changes the answer: a different context is a different prompt."""
        context = hash(tuple((s.path, s.text) for s in req.context))
        return (req.mode, req.max_new_tokens, req.max_prompt_tokens, round(req.temperature, 4), req.seed, req.path, context)

    def complete(self, req: CompletionRequest, cancel: threading.Event | None = None) -> CompletionResult:
        """Suggest text for the cursor. Never raises on model output; a set `cancel` ends decoding at the next token."""
        t0 = time.perf_counter()
        if is_mid_word(req.prefix, req.suffix):
            return CompletionResult(text="", stop_reason="skipped", skipped="mid-word")
        if not req.prefix.strip():
            return CompletionResult(text="", stop_reason="skipped", skipped="empty-prefix")
        okey = self._options_key(req)
        if req.temperature == 0.0:
            hit = self.cache.get(req.prefix, req.suffix, okey, self._visible_chars(req))
            if hit is not None:
                return CompletionResult(
                    text=hit, raw_text=hit, stop_reason="cached", cached=True, cpu_ms=(time.perf_counter() - t0) * 1e3
                )
        res = self._run_model(req, cancel, t0)
        if res.stop_reason != "cancelled" and req.temperature == 0.0:
            self.cache.put(req.prefix, req.suffix, okey, res.text, self._visible_chars(req))
        return res

    @functools.cached_property
    def stop_ids(self) -> list[int]:
        """End of suggestion: the model's end tokens, and every special (control) token of its vocabulary --
        `<|endoftext|>`, `<|fim_pad|>`, `<|file_sep|>`, `<|im_end|>` ... never belong in code."""
        m = self.meta
        ids = list(m.eos_ids or [])
        for extra in (m.fim_prefix_id, m.fim_suffix_id, m.fim_middle_id, m.fim_pad_id, m.file_sep_id, m.repo_name_id):
            if extra is not None and extra not in ids:
                ids.append(extra)
        special = getattr(self.tokenizer, "get_added_tokens_decoder", dict)()
        ids += sorted(i for i, tok in special.items() if getattr(tok, "special", False) and i not in ids)
        return ids

    def _use_slot(self, doc_key: str) -> None:
        use = getattr(self.decoder, "use_slot", None)  # test doubles have one cache
        if use is not None:
            use(doc_key)

    def warm(self, req: CompletionRequest, cancel: threading.Event | None = None, chunk: int = 64,
             at_cursor: bool = True) -> int:
        """Prefill the part of `req`'s prompt that stays put while the user types there into the document's KV slot,
        so the request that follows evaluates only what is new: through `<|fim_middle|>` when the cursor is known
        (`at_cursor`), else only the header and the lines above it (a file just opened). Small chunks: a real
        request cancels this within one chunk. Returns the tokens now cached."""
        if not req.prefix.strip():
            return 0
        full = self.plan_prompt(req)
        if at_cursor and req.cold_prompt_tokens > 0:
            short = self._cold_plan(req, full)
            if short is not None:  # first the short window a request would use right now (its own slot)
                self._prefill_stable(short, at_cursor, cancel, chunk)
        self._use_slot(req.doc_key)
        return self._prefill_stable(full, at_cursor, cancel, chunk)

    def _prefill_stable(self, plan: PromptPlan, at_cursor: bool, cancel: threading.Event | None, chunk: int) -> int:
        stable = plan.ids
        if plan.fim:
            stop_at = self.meta.fim_middle_id if at_cursor else self.meta.fim_suffix_id
            stable = plan.ids[: plan.ids.index(stop_at) + (1 if at_cursor else 0)]
        if stable and not (cancel is not None and cancel.is_set()):
            self.decoder.prefill(stable, chunk=chunk, cancel=cancel)
        return common_prefix_len(getattr(self.decoder, "tokens", []), stable)

    def forget(self, doc_key: str) -> None:
        """A closed document: drop its KV slots and window state."""
        self._window_starts.pop(doc_key, None)
        drop = getattr(self.decoder, "drop_slot", None)
        if drop is not None:
            drop(doc_key)
            drop(doc_key + COLD_SLOT)

    def _run_model(self, req: CompletionRequest, cancel: threading.Event | None, t0: float) -> CompletionResult:
        """Plan, generate with the backed-off text as forced prefix (token healing), post-process."""
        from runtime.engine import GenerateOptions, generate

        plan, cold = self.plan_for_cache(req)  # leaves the slot it planned for current
        ctx = make_post_context(req.prefix, req.suffix, req.mode)
        stop = _StopFlag(cancel)
        reused = common_prefix_len(getattr(self.decoder, "tokens", []), plan.ids)
        streamed: list[str] = []

        def on_text(piece: str) -> None:
            streamed.append(piece)
            if req.mode == "block":  # watch the text as it streams and stop at the end of the block
                lines = _normalize_indent("".join(streamed).split("\n"), ctx.indent_unit)
                if len(lines) > 2 and block_end(lines[:-1], ctx.line_prefix) is not None:
                    stop.set()

        opts = GenerateOptions(
            max_new_tokens=max(1, min(req.max_new_tokens, self.max_context - len(plan.ids) - 2)),
            temperature=req.temperature,
            seed=req.seed,
            stop_token_ids=self.stop_ids,
            stop_strings=["\n"] if req.mode == "line" else ["```", "\n\n\n"],
            speculate=req.speculate,
            forced_prefix=plan.backoff,
            # line mode: a healed token past the line end leaves nothing to write; block mode: a healed run of blank
            # lines ("\n\n\n") comes before the block, it does not end it
            stop_in_forced=req.mode == "line",
        )
        gen = generate(self.decoder, plan.ids, opts, cancel=stop, on_text=on_text, lookup_ids=plan.lookup_ids)
        if plan.backoff and not gen.forced_ids:  # cancelled while healing, or no tokens spell the backed-off text
            reason = "cancelled" if gen.stop_reason == "cancelled" else "stop"
            return self._nothing("", reason, t0, len(plan.ids), reused)
        if req.mode == "line" and "\n" in gen.forced_text:  # the healed token ends the line: nothing left to write
            return self._nothing(gen.forced_text, "stop", t0, len(plan.ids), reused, len(gen.forced_ids))
        new_ids = gen.forced_ids + gen.token_ids
        full = self.decode(new_ids)
        raw = full[len(plan.backoff) :] if full.startswith(plan.backoff) else ""
        reason = gen.stop_reason
        if reason == "cancelled" and stop.stopped and not (cancel is not None and cancel.is_set()):
            reason = "stop"  # our block-end rule, not the caller
        return CompletionResult(
            text="" if reason == "cancelled" else postprocess(raw, ctx),
            raw_text=raw,
            stop_reason=reason,
            prompt_tokens=len(plan.ids),
            reused_tokens=min(reused, len(plan.ids)),
            new_tokens=len(new_ids),
            cpu_ms=(time.perf_counter() - t0) * 1e3,
            prompt_ms=gen.prompt_s * 1e3,
            decode_ms=gen.decode_s * 1e3,
            cpu_tokens_per_s=gen.decode_tokens_per_s,
            drafted=gen.drafted,
            accepted=gen.accepted,
            cold=cold,
        )

    @staticmethod
    def _nothing(raw: str, reason: str, t0: float, prompt_tokens: int, reused: int,
                 new_tokens: int = 0) -> CompletionResult:
        """An empty suggestion after the prompt was evaluated (no decode timings)."""
        return CompletionResult(
            text="",
            raw_text=raw,
            stop_reason=reason,
            prompt_tokens=prompt_tokens,
            reused_tokens=min(reused, prompt_tokens),
            new_tokens=new_tokens,
            cpu_ms=(time.perf_counter() - t0) * 1e3,
        )
