"""What a caller asks of the completion service and what it gets back: plain strings in, a suggestion out."""

from __future__ import annotations

from typing import Literal

import msgspec

from runtime.crossfile import Snippet

Mode = Literal["line", "block"]


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
    stop_reason: str = "eos"  # eos|stop|max_tokens|repetition|cancelled|cached|skipped
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
    backend: str = "local"  # who wrote the text: "local" (the ONNX decoder) or a remote dialect (openai-raw, ...)
    context: list[Snippet] = []  # the other files' snippets the prompt held (empty: cached, skipped, or none fit)
