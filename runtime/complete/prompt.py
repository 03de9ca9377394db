"""The prompt plan: a request -> the token ids the model sees, and the text it must write first.

- `choose_window_start`: the prompt is a window of the prefix whose start sits on a line boundary and moves only
  in large jumps, so consecutive keystrokes share every prompt token but the last few (KV reuse in the Decoder).
- `split_backoff`: the prompt ends on a natural token boundary (trailing spaces mid-line, or newline + indentation at
  a line start, are backed off); the backed-off text is the forced prefix of the answer (token healing in
  runtime.engine.generate) and is stripped from the completion. Measured on the default model: exact match
  5% -> 19% (issue 4).
- `PromptPlanner.plan`: header and cross-file context, the window, the FIM layout for FIM models. Only bounded
  character windows around the cursor are ever tokenized, whatever the document's size.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import msgspec

from runtime.complete.request import CompletionRequest
from runtime.crossfile import Snippet, as_comments, by_path
from runtime.header import header_path, header_repo

MIDDLE_MAX_TOKENS = 96  # FIM: lines typed since the middle started stay after <|fim_middle|> up to this many tokens
MIDDLE_LINES = 4  # a middle (re)starts this many lines above the cursor line, in at most half of MIDDLE_MAX_TOKENS:
# recent lines right before the answer, not on the far side of the suffix (30 positions of bench/quality.py,
# Qwen2.5-Coder: exact 40.0% with the cursor line alone after <|fim_middle|>, 50.0% with 4 lines before it)
MIDDLE_RIPE_TOKENS = MIDDLE_MAX_TOKENS * 3 // 4  # a middle this full is restarted aside, in idle time (see middle_ripe)
WINDOW_REFILL_FRACTION = 0.75  # after a jump the window holds 3/4 of max tokens: ~1/4 of slack before the next jump
WINDOW_SHRINK_FRACTION = 0.5  # a window below half of max (cursor moved up, text deleted) is refilled
_SCAN_CHARS_PER_TOKEN = 12  # generous chars/token bound: only this much text is ever tokenized to place the start
REMEMBERED_WINDOWS = 64  # documents whose window start is remembered (LRU)

# ---------------------------------------------------------------------------------------------------------------
# Where the window starts, where it ends


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
# The plan


class PromptPlan(msgspec.Struct, kw_only=True):
    """The token ids sent to the model and how to read its output back."""

    ids: list[int]
    backoff: str = ""  # text cut from the prompt end: the forced prefix of the answer, stripped from it
    lookup_ids: list[int] = []  # tokens prompt-lookup speculation may copy from (prompt + suffix)
    fim: bool = False
    window_start: int = 0
    middle_start: int = 0  # FIM: where the middle after <|fim_middle|> starts in the prefix
    context: list[Snippet] = []  # the snippets of req.context the prompt holds (some may not fit)



def visible_chars(req: CompletionRequest) -> int:
    """How much of the prefix any prompt for `req` can contain (a plan reads no further back)."""
    return max(4096, req.max_prompt_tokens * _SCAN_CHARS_PER_TOKEN + 1)


def control_token_ids(meta, tokenizer) -> list[int]:
    """End of suggestion: the model's end tokens, and every special (control) token of its vocabulary --
    `<|endoftext|>`, `<|fim_pad|>`, `<|file_sep|>`, `<|im_end|>` ... never belong in code."""
    ids = list(meta.eos_ids or [])
    for extra in (meta.fim_prefix_id, meta.fim_suffix_id, meta.fim_middle_id, meta.fim_pad_id, meta.file_sep_id,
                  meta.repo_name_id):
        if extra is not None and extra not in ids:
            ids.append(extra)
    special = getattr(tokenizer, "get_added_tokens_decoder", dict)()
    ids += sorted(i for i, tok in special.items() if getattr(tok, "special", False) and i not in ids)
    return ids


class PromptPlanner:
    """Prompts for one model (its tokenizer and special tokens), and each document's window start, remembered so
    the window moves in jumps."""

    def __init__(self, meta, tokenizer, stop_ids: list[int]):
        self.meta, self.tokenizer, self.stop_ids = meta, tokenizer, stop_ids
        self._window_starts: OrderedDict[str, int] = OrderedDict()
        self._middle_starts: OrderedDict[str, int] = OrderedDict()

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids) if text else []

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def plan(self, req: CompletionRequest, max_context: int, remember: bool = True,
             restart_middle: bool = False) -> PromptPlan:
        """Token ids for `req` in a context of `max_context` tokens.

        Plain models: [bos] [header] window-of-prefix.
        FIM models (PSM, as trained; the layout llama.cpp's /infill gives llama.vscode's `prompt` field):
            [header] <|fim_prefix|> lines above the middle <|fim_suffix|> suffix <|fim_middle|> middle so far
        The middle starts a few lines above the cursor line and stays put while the user types on and below it (see
        _middle_start): as the start of the middle the model writes, the recent and typed text sits after
        <|fim_middle|>, next to the answer, and everything before it stays the same, so only the typed characters
        are evaluated (KV reuse) -- at a new line too, where moving the line into the prefix would re-evaluate the
        whole suffix after it.

        The end backs off to a natural token boundary (trailing spaces, indentation, a cursor that cuts a token); the
        backed-off text is the forced prefix of the answer (token healing) and is stripped from the completion.
        `remember`: keep the window start for the document's next request (not for a one-off short window);
        `restart_middle`: start the middle afresh (a plan prefilled aside, `adopt`ed when it is all in)."""
        m = self.meta
        bos = [m.bos_id] if getattr(m, "add_bos", False) and m.bos_id is not None else []
        suffix_room = req.max_suffix_tokens + 3 if m.has_fim else 0
        room = max_context - req.max_new_tokens - suffix_room - 8  # the whole prompt's, in the model's context
        header = self._header_ids(req)
        context, head = self._context_ids(req, header, room)
        head = bos + head
        # the context comes on top of maxPromptTokens while the model has room for it: it never shrinks the window
        budget = max(16, min(req.max_prompt_tokens - len(bos) - len(header), room - len(head)))
        start = self._window_start(req, budget, remember)
        if m.has_fim:
            cut = self._middle_start(req, start, remember, restart_middle)
            line = req.prefix[cut:]
            text = line.rstrip(" \t")
            body, backoff = self._heal_last_token(self.encode(text), text, line[len(text):])
            suffix_ids = self.encode(req.suffix[: req.max_suffix_tokens * _SCAN_CHARS_PER_TOKEN])[: req.max_suffix_tokens]
            ids = (head + [m.fim_prefix_id] + self.encode(req.prefix[start:cut]) + [m.fim_suffix_id] + suffix_ids
                   + [m.fim_middle_id] + body)
            return PromptPlan(ids=ids, backoff=backoff, fim=True, lookup_ids=ids, window_start=start, middle_start=cut,
                              context=context)
        window = req.prefix[start:]
        text, backoff = split_backoff(window)
        body = self.encode(text)
        if not body:  # nothing natural before the cursor: keep the raw window
            text, backoff = window, ""
            body = self.encode(text)
        body, backoff = self._heal_last_token(body, text, backoff)
        ids = head + body
        suffix_ids = self.encode(req.suffix[: req.max_suffix_tokens * _SCAN_CHARS_PER_TOKEN])[: req.max_suffix_tokens]
        return PromptPlan(ids=ids, backoff=backoff, lookup_ids=ids + suffix_ids, window_start=start, context=context)

    def forget(self, doc_key: str) -> None:
        self._window_starts.pop(doc_key, None)
        self._middle_starts.pop(doc_key, None)

    def _middle_start(self, req: CompletionRequest, start: int, remember: bool, restart: bool = False) -> int:
        """Where a FIM prompt's middle starts (choose_middle_start), remembered per document like the window start."""
        prev = None if restart else self._middle_starts.get(req.doc_key)
        cut = choose_middle_start(req.prefix, start, prev, self.count_tokens)
        if remember:
            remember_offset(self._middle_starts, req.doc_key, cut)
        return cut

    def middle_ripe(self, req: CompletionRequest) -> bool:
        """The document's middle holds more than MIDDLE_RIPE_TOKENS of lines above the cursor line: a few lines more
        and a keystroke's request would restart it, evaluating the whole suffix again (bench/lsp_typing.py: 359
        tokens, 670-850 ms, the slowest pause of a run). Restarted aside in idle time first, it costs no keystroke."""
        prev = self._middle_starts.get(req.doc_key)
        line_start = req.prefix.rfind("\n") + 1
        return (self.meta.has_fim and prev is not None and prev < line_start
                and self.count_tokens(req.prefix[prev:line_start]) > MIDDLE_RIPE_TOKENS)

    def adopt(self, doc_key: str, plan: PromptPlan) -> None:
        """`plan`'s window and middle become the document's: its prompt, prefilled aside, took the slot's place."""
        remember_offset(self._window_starts, doc_key, plan.window_start)
        if plan.fim:
            remember_offset(self._middle_starts, doc_key, plan.middle_start)

    def _context_ids(self, req: CompletionRequest, header: list[int], room: int) -> tuple[list[Snippet], list[int]]:
        """The header with `req.context` before the current file, as each model was trained: repo-level tokens
        `<|repo_name|>NAME<|file_sep|>path\\ntext\\n`... then the current file's `<|file_sep|>path\\n`; without them
        the snippets as comments (`# path: x.py`, each line commented) above the window. The context is not counted
        in maxPromptTokens: it takes the model's room left after a full window (`room`: what the whole prompt may
        hold), and at least half of the prompt when there is less (the window shrinks then). Over that, snippets of
        the highest rank (least wanted) are dropped first; the others keep their place. Returns (the snippets placed,
        the ids)."""
        m = self.meta
        snippets = list(req.context)
        window = min(req.max_prompt_tokens, room)
        limit = max(room - window, window // 2)
        while snippets:
            if not header:
                ids = self.encode(as_comments(snippets, req.path))
            else:
                ids = []
                for path, text in by_path(snippets):
                    ids += [m.file_sep_id] + self.encode(f"{path}\n{text}\n")
            if len(ids) <= limit:
                at = header.index(m.file_sep_id) if header else 0
                return snippets, header[:at] + ids + header[at:]
            snippets.remove(max(snippets, key=lambda s: s.rank))
        return [], header

    def _header_ids(self, req: CompletionRequest) -> list[int]:
        """Repo-level header `<|repo_name|>NAME\\n<|file_sep|>PATH\\n` (Qwen2.5-Coder's training layout, also what
        llama.cpp's /infill writes) when the vocabulary has both tokens; SmolLM2: +~2 points exact match."""
        m = self.meta
        if m.repo_name_id is None or m.file_sep_id is None or not req.path:
            return []
        repo, path = header_repo(req.repo_name), header_path(req.path)
        repo_line = repo + "\n" if m.has_fim else repo  # Qwen2.5-Coder: a line each; StarCoder2/SmolLM2: no newline
        return [m.repo_name_id] + self.encode(repo_line) + [m.file_sep_id] + self.encode(path + "\n")

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
        if remember:
            remember_offset(self._window_starts, req.doc_key, start)
        return start

    def _heal_last_token(self, body: list[int], text: str, backoff: str) -> tuple[list[int], str]:
        """Token healing: the cursor may cut a token ("items.extend(va|"); give the last token back and let the
        model choose one that starts with its text, so "va" can become "values" instead of ending a word."""
        if backoff or len(body) < 2:
            return body, backoff
        last = self.tokenizer.decode([body[-1]], skip_special_tokens=False)
        if last and text.endswith(last) and body[-1] not in self.stop_ids:
            return body[:-1], last
        return body, backoff


def choose_middle_start(prefix: str, start: int, prev: int | None, count_tokens: Callable[[str], int]) -> int:
    """Where a FIM prompt's middle starts: the document's last middle start `prev` while it is still a line start at
    or above the cursor line, inside the window (from `start`), and the text from it to the cursor line is at most
    MIDDLE_MAX_TOKENS; else (a cold request, a jump elsewhere, or a middle grown long: then the suffix is evaluated
    once more) the highest of the MIDDLE_LINES line starts above the cursor line whose lines take at most half of
    MIDDLE_MAX_TOKENS (room to type), after the window start (the prefix keeps a line)."""
    line_start = max(start, prefix.rfind("\n") + 1)
    keep = (prev is not None and start <= prev <= line_start and (prev == 0 or prefix[prev - 1] == "\n")
            and (prev == line_start or count_tokens(prefix[prev:line_start]) <= MIDDLE_MAX_TOKENS))
    cut = prev if keep else line_start
    if not keep:
        for _ in range(MIDDLE_LINES):
            up = prefix.rfind("\n", 0, max(cut - 1, 0)) + 1 if cut > 0 else -1
            if up <= start or count_tokens(prefix[up:line_start]) > MIDDLE_MAX_TOKENS // 2:
                break
            cut = up
    return cut  # type: ignore[return-value]


def remember_offset(starts: OrderedDict[str, int], doc_key: str, offset: int) -> None:
    """Keep a document's offset, the REMEMBERED_WINDOWS most recent documents only (LRU)."""
    starts[doc_key] = offset
    starts.move_to_end(doc_key)
    while len(starts) > REMEMBERED_WINDOWS:
        starts.popitem(last=False)
