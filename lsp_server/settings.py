"""Server settings: one fully defaulted msgspec Struct under the "waferline" section.

Read from `initializationOptions` and `workspace/didChangeConfiguration` (pushed settings, or pulled with
`workspace/configuration`). Each field is validated on its own: an invalid value is reported (the caller shows it
with window/showMessage) and that field keeps its previous/default value, so one typo never disables the server
(jedi-language-server's initialization_options.py does the same).

This Struct is where the defaults live. What the runtime defaults too (the model, a request's budgets) it takes from
the runtime; the VS Code manifest and README must agree with it (tests/test_settings_sources.py), and the
extension reads its fallbacks from that manifest.
"""

from __future__ import annotations

import os
import stat
from typing import Annotated, Any, Literal

import msgspec

from runtime.complete import CompletionRequest
from runtime.models import DEFAULT_CONTEXT_TOKENS, DEFAULT_MODEL, context_tokens_for
from runtime.wafer.hardware import HARDWARE_PRESETS

SECTION = "waferline"
_REQUEST = {f.name: f.default for f in msgspec.structs.fields(CompletionRequest)}  # the runtime's request defaults


class Settings(msgspec.Struct, rename="camel", kw_only=True):
    """Everything configurable; JSON names are camelCase (`maxNewTokens`)."""

    model: str = DEFAULT_MODEL  # a name or a bundle path
    max_new_tokens: Annotated[int, msgspec.Meta(ge=1, le=1024)] = _REQUEST["max_new_tokens"]
    max_prompt_tokens: Annotated[int, msgspec.Meta(ge=16, le=32768)] = _REQUEST["max_prompt_tokens"]
    temperature: Annotated[float, msgspec.Meta(ge=0.0, le=2.0)] = _REQUEST["temperature"]
    mode: Literal["line", "block"] = _REQUEST["mode"]
    hardware: str = "wse3"  # a preset, or an absolute path to a regular .toml file (see hardware_error)
    enabled: bool = True
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    threads: Annotated[int, msgspec.Meta(ge=1, le=64)] = 2
    max_context: Annotated[int, msgspec.Meta(ge=64, le=32768)] = 2048
    # a request with more uncached prompt tokens than this answers from a short window, the full one is then
    # prefilled in the background (0 = always the full window); 384 tokens ~ 2 s of prompt at 200 tok/s
    cold_prompt_tokens: Annotated[int, msgspec.Meta(ge=0, le=32768)] = 384
    kv_slots: Annotated[int, msgspec.Meta(ge=1, le=16)] = 4  # documents whose prompt K/V stay cached (LRU)
    prefill_on_open: bool = True  # prefill a file's prompt in the background when it is opened or focused
    # put snippets of the other open files before the current one (runtime.crossfile). On: it lifts exact match on
    # cross-file lines (bench/crossfile.py --rule api, 2026-12-07: Qwen2.5-Coder 30.8% -> 40.8%, SmolLM2 11.7% ->
    # 15.0%, 17.5% at 1024 tokens) for typing p95 +8..+12% with 10 tabs (six paired runs, mean +9.4%; README)
    context: bool = True
    # their budget in prompt tokens, on top of maxPromptTokens while maxContext has room (else at most half of the
    # prompt); None: the model's (runtime.models.context_tokens_for): 512 for the default model, which gains 1.32x
    # there, 1024 for SmolLM2 (1.50x; 1.28x at 512); every token of it is decoded over at each keystroke
    context_tokens: Annotated[int, msgspec.Meta(ge=0, le=8192)] | None = None
    # where suggestions come from: the local ONNX decoder, or a remote server (runtime.remote) at `endpoint`
    backend: Literal["local", "llamacpp", "openai", "openai-raw"] = "local"
    endpoint: str = ""  # http://127.0.0.1:8080 for llama.cpp's /infill; http://host:8000/v1 for OpenAI-compatible
    remote_model: str = ""  # the model name the server expects ("" = the first it lists)
    fim_template: Literal["", "qwen2.5-coder", "starcoder", "codellama", "deepseek-coder"] = ""  # "" = from the model
    api_key_env: str = ""  # the NAME of the environment variable holding the API key: the key is never a setting
    remote_timeout_ms: Annotated[int, msgspec.Meta(ge=100, le=600000)] = 10000  # the longest silence of the server
    verify_tls: bool = True

    def snippet_budget(self) -> int:
        """contextTokens as set, else what was measured best for the local model (a remote one: the default's)."""
        if self.context_tokens is not None:
            return self.context_tokens
        return context_tokens_for(self.model) if self.backend == "local" else DEFAULT_CONTEXT_TOKENS


FIELD_NAMES = {f.encode_name: f.name for f in msgspec.structs.fields(Settings)}


def _unwrap(raw: Any) -> Any:
    """Accept {"waferline": {...}} as well as the section itself."""
    if isinstance(raw, dict) and isinstance(raw.get(SECTION), dict):
        return raw[SECTION]
    return raw


def parse_settings(raw: Any, base: Settings | None = None) -> tuple[Settings, list[str]]:
    """Merge `raw` over `base` (or defaults) field by field; return the settings and one message per bad value.

    Unknown keys are ignored (clients send their own settings in the same section, e.g. the interpreter path).
    """
    current = msgspec.structs.asdict(base or Settings())
    errors: list[str] = []
    raw = _unwrap(raw)
    if raw is None:
        return Settings(**current), errors
    if not isinstance(raw, dict):
        return Settings(**current), [f"{SECTION} settings must be an object, got {type(raw).__name__}; using defaults"]
    for key, value in raw.items():
        name = FIELD_NAMES.get(key) or (key if key in current else None)
        if name is None:
            continue
        if value is None:  # VS Code sends null for "unset": fall back to the default
            current[name] = getattr(Settings(), name)
            continue
        try:
            one = msgspec.convert({FIELD_NAMES_REV[name]: value}, Settings, strict=False)
        except msgspec.ValidationError as exc:
            default = getattr(base or Settings(), name)
            errors.append(f"{SECTION}.{FIELD_NAMES_REV[name]}: {_short(exc)} (got {value!r}); using {default!r}")
            continue
        problem = hardware_error(one.hardware) if name == "hardware" else None
        if problem is not None:
            errors.append(f"{SECTION}.hardware: {problem} (got {value!r}); using {getattr(base or Settings(), name)!r}")
            continue
        current[name] = getattr(one, name)
    return Settings(**current), errors


def hardware_error(value: str) -> str | None:
    """Why `value` cannot be the hardware setting, else None. Only the settings may name a file: over LSP,
    waferline/simulate accepts a preset or this configured file, nothing else (no /dev/zero, FIFOs, stray files)."""
    if value in HARDWARE_PRESETS:
        return None
    if not value.endswith(".toml") or not os.path.isabs(value):
        return f"expected {' or '.join(HARDWARE_PRESETS)}, or an absolute path to a .toml file"
    try:
        st = os.stat(value)
    except OSError as exc:
        return f"cannot read {value}: {exc.strerror}"
    return None if stat.S_ISREG(st.st_mode) else f"{value} is not a regular file"


FIELD_NAMES_REV = {v: k for k, v in FIELD_NAMES.items()}


def _short(exc: Exception) -> str:
    msg = str(exc)
    return msg.split(" - at ")[0]


def to_json(settings: Settings) -> dict[str, Any]:
    return msgspec.to_builtins(settings)
