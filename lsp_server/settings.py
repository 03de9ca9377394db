"""Server settings: one fully defaulted msgspec Struct under the "waferline" section.

Read from `initializationOptions` and `workspace/didChangeConfiguration` (pushed settings, or pulled with
`workspace/configuration`). Each field is validated on its own: an invalid value is reported (the caller shows it
with window/showMessage) and that field keeps its previous/default value, so one typo never disables the server
(jedi-language-server's initialization_options.py does the same).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

SECTION = "waferline"


class Settings(msgspec.Struct, rename="camel", kw_only=True):
    """Everything configurable; JSON names are camelCase (`maxNewTokens`)."""

    model: str = "smollm2-135m"  # runtime.models.DEFAULT_MODEL; a name or a bundle path
    max_new_tokens: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 64
    max_prompt_tokens: Annotated[int, msgspec.Meta(ge=16, le=32768)] = 1024
    temperature: Annotated[float, msgspec.Meta(ge=0.0, le=2.0)] = 0.0
    mode: Literal["line", "block"] = "line"
    hardware: Literal["wse2", "wse3"] = "wse3"
    enabled: bool = True
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    threads: Annotated[int, msgspec.Meta(ge=1, le=64)] = 2
    max_context: Annotated[int, msgspec.Meta(ge=64, le=32768)] = 2048


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
        current[name] = getattr(one, name)
    return Settings(**current), errors


FIELD_NAMES_REV = {v: k for k, v in FIELD_NAMES.items()}


def _short(exc: Exception) -> str:
    msg = str(exc)
    return msg.split(" - at ")[0]


def to_json(settings: Settings) -> dict[str, Any]:
    return msgspec.to_builtins(settings)
