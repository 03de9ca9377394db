"""FIM prompt templates for servers that take a raw prompt (vLLM, SGLang, TGI, llama-cpp-python's server).

Each code model was trained on its own fill-in-the-middle layout; a server without server-side FIM (`/infill`,
`suffix`) completes whatever string we send, so we write the model's layout ourselves. The cursor line goes after the
middle marker (as llama.cpp's /infill `prompt` field and llama.vscode do): while the user types on a line, everything
up to the middle marker stays byte-identical, so a server's prefix cache re-evaluates only the typed characters.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from runtime.crossfile import comment_prefix

RepoLayout = Literal["qwen", "starcoder2", "none"]


class PromptParts(msgspec.Struct, frozen=True, kw_only=True):
    """What a completion request knows, before any dialect shapes it.

    `path` is relative to the repository root; `extra` holds (filename, text) snippets of other files, most wanted
    first. Budgeting (how much prefix/suffix/extra to send) is the caller's job: these parts are sent as given.
    """

    prefix: str
    suffix: str = ""
    path: str | None = None
    repo: str | None = None
    extra: list[tuple[str, str]] = []
    middle_from: int | None = None  # where in `prefix` the text after the middle marker starts (None: the cursor line)


class FimTemplate(msgspec.Struct, frozen=True, kw_only=True):
    """A model family's FIM markers. `special` lists every control-token text of the family: none may reach the
    editor, so the stream is cut at the first one (servers usually drop special tokens, not always)."""

    name: str
    prefix: str
    suffix: str
    middle: str
    repo_layout: RepoLayout = "none"
    repo_name: str = ""
    file_sep: str = ""
    line_after_middle: bool = True
    special: tuple[str, ...] = ()


FIM_TEMPLATES: dict[str, FimTemplate] = {
    t.name: t
    for t in (
        # Qwen2.5-Coder technical report, repo-level layout: <|repo_name|>NAME\n<|file_sep|>path\ntext\n...
        FimTemplate(name="qwen2.5-coder", prefix="<|fim_prefix|>", suffix="<|fim_suffix|>", middle="<|fim_middle|>",
                    repo_layout="qwen", repo_name="<|repo_name|>", file_sep="<|file_sep|>",
                    special=("<|endoftext|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|fim_pad|>",
                             "<|repo_name|>", "<|file_sep|>", "<|im_start|>", "<|im_end|>")),
        # StarCoder2 paper: <repo_name>NAME<file_sep>path\ntext ... <file_sep><fim_prefix>path\npre<fim_suffix>...
        FimTemplate(name="starcoder", prefix="<fim_prefix>", suffix="<fim_suffix>", middle="<fim_middle>",
                    repo_layout="starcoder2", repo_name="<repo_name>", file_sep="<file_sep>",
                    special=("<|endoftext|>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>",
                             "<repo_name>", "<file_sep>", "<filename>", "<gh_stars>")),
        # Code Llama paper (PSM): "<PRE> {prefix} <SUF>{suffix} <MID>"; SentencePiece adds the leading space of the
        # middle, so the cursor line stays in the prefix rather than after <MID>.
        FimTemplate(name="codellama", prefix="<PRE> ", suffix=" <SUF>", middle=" <MID>", line_after_middle=False,
                    special=("<PRE>", "<SUF>", "<MID>", "<EOT>", "</s>")),
        # DeepSeek-Coder README: <｜fim▁begin｜>pre<｜fim▁hole｜>suf<｜fim▁end｜> (full-width bars, U+2581)
        FimTemplate(name="deepseek-coder", prefix="<｜fim▁begin｜>", suffix="<｜fim▁hole｜>", middle="<｜fim▁end｜>",
                    special=("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "<｜end▁of▁sentence｜>",
                             "<｜begin▁of▁sentence｜>")),
    )
}

# Markers no code contains, cut from every dialect's output (server-side FIM too: we do not know its template).
# Code Llama's <PRE>/<MID> are left out: they could be text (HTML); they are cut when that template is in use.
DISTINCTIVE_MARKERS: tuple[str, ...] = tuple(dict.fromkeys(
    m for name in ("qwen2.5-coder", "starcoder", "deepseek-coder") for m in FIM_TEMPLATES[name].special))


def template_for_model(model: str | None) -> str | None:
    """The FIM template a model name points to (`Qwen/Qwen2.5-Coder-7B`, `bigcode/starcoder2-3b`,
    `codellama/CodeLlama-7b-hf`, `deepseek-coder-6.7b-base`...), None when it names no family we know."""
    if not model:
        return None
    name = model.lower().replace("_", "-")
    if "qwen" in name and "coder" in name:
        return "qwen2.5-coder"
    if "starcoder" in name or "smollm" in name:
        return "starcoder"
    if "codellama" in name or "code-llama" in name:
        return "codellama"
    if "deepseek" in name and "coder" in name:
        return "deepseek-coder"
    return None


def split_cursor_line(prefix: str, middle_from: int | None = None) -> tuple[str, str]:
    """(what goes before the suffix, what goes after the middle marker): the cursor line so far, or from
    `middle_from` (a line start a few lines above it, as the local prompt does: runtime.complete.prompt)."""
    cut = prefix.rfind("\n") + 1 if middle_from is None else min(max(middle_from, 0), len(prefix))
    return prefix[:cut], prefix[cut:]


def as_comments(extra: list[tuple[str, str]], path: str | None) -> str:
    """Snippets as line comments (`# path: x.py`, each line commented) for layouts without repo-level tokens."""
    c = comment_prefix(path)
    return "".join(f"{c} path: {name}\n" + "".join(f"{c} {ln}".rstrip() + "\n" for ln in text.split("\n"))
                   for name, text in extra)


def _with_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def render_fim(t: FimTemplate, parts: PromptParts) -> str:
    """The raw prompt for `t`: stable parts first (repo header, snippets, lines above), the cursor line last.

    The repo-level layout is used when the file's path is known (as the local engine does); otherwise snippets go
    above the prefix as comments."""
    above, line = split_cursor_line(parts.prefix, parts.middle_from) if t.line_after_middle else (parts.prefix, "")
    repo = parts.repo or "repo"
    if t.repo_layout == "qwen" and parts.path:
        head = f"{t.repo_name}{repo}\n" + "".join(f"{t.file_sep}{n}\n{_with_newline(x)}" for n, x in parts.extra)
        return f"{head}{t.file_sep}{parts.path}\n{t.prefix}{above}{t.suffix}{parts.suffix}{t.middle}{line}"
    if t.repo_layout == "starcoder2" and parts.path:
        head = f"{t.repo_name}{repo}" + "".join(f"{t.file_sep}{n}\n{_with_newline(x)}" for n, x in parts.extra)
        return f"{head}{t.file_sep}{t.prefix}{parts.path}\n{above}{t.suffix}{parts.suffix}{t.middle}{line}"
    comments = as_comments(parts.extra, parts.path)
    return f"{t.prefix}{comments}{above}{t.suffix}{parts.suffix}{t.middle}{line}"


class MarkerCutter:
    """Cuts a stream of text pieces at the first marker (a FIM/special token text or a stop string), even when the
    marker arrives split across pieces: the tail that could start a marker is held back until it cannot."""

    def __init__(self, markers: tuple[str, ...] | list[str]):
        self.markers = tuple(m for m in dict.fromkeys(markers) if m)
        self._held = ""
        self.stopped = False

    def push(self, piece: str) -> str:
        """The text that is safe to show now; sets `stopped` when a marker was found (nothing after it counts)."""
        if self.stopped:
            return ""
        text = self._held + piece
        cut = min((i for i in (text.find(m) for m in self.markers) if i >= 0), default=-1)
        if cut >= 0:
            self._held, self.stopped = "", True
            return text[:cut]
        keep = 0
        for m in self.markers:
            for k in range(min(len(m) - 1, len(text)), keep, -1):
                if text.endswith(m[:k]):
                    keep = k
                    break
        self._held = text[len(text) - keep:] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """What was held back, at the end of the stream (no marker followed it)."""
        held, self._held = self._held, ""
        return "" if self.stopped else held
