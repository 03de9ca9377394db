"""lsp_server.settings.Settings is the one source of settings defaults and ranges.

The runtime defaults it shares come from the runtime; the VS Code manifest (package.json `contributes.configuration`)
and the extension's README table must say what Settings says; the extension's own fallbacks are read from that
manifest (vscode-client/src/settings.ts), so they follow.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import UnionType
from typing import Literal, Union, get_args, get_origin

import msgspec
import pytest

from lsp_server.settings import Settings
from runtime.complete import CompletionRequest
from runtime.models import DEFAULT_MODEL
from runtime.wafer.hardware import HARDWARE_PRESETS

CLIENT = Path(__file__).resolve().parent.parent / "vscode-client"
PROPERTIES = json.loads((CLIENT / "package.json").read_text(encoding="utf-8"))["contributes"]["configuration"]["properties"]
FIELDS = {f.encode_name: f for f in msgspec.structs.fields(Settings)}
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _meta(field: msgspec.structs.FieldInfo) -> tuple[type, msgspec.Meta | None]:
    """(base type, its Meta) of an Annotated[...] field, `| None` taken off (see _nullable)."""
    base, meta = field.type, None
    if _nullable(field):
        base = next(a for a in get_args(base) if a is not type(None))
    if hasattr(base, "__metadata__"):
        meta = next((m for m in base.__metadata__ if isinstance(m, msgspec.Meta)), None)
        base = get_args(base)[0]
    return base, meta


def _nullable(field: msgspec.structs.FieldInfo) -> bool:
    """`X | None`: None is "unset, the server chooses" (contextTokens: the model's budget)."""
    return get_origin(field.type) in (Union, UnionType) and type(None) in get_args(field.type)


def test_runtime_defaults_come_from_the_runtime():
    s, req = Settings(), CompletionRequest(prefix="")
    assert s.model == DEFAULT_MODEL
    assert (s.max_new_tokens, s.max_prompt_tokens, s.temperature, s.mode) == (
        req.max_new_tokens, req.max_prompt_tokens, req.temperature, req.mode)


def test_the_fim_template_choices_are_the_runtime_templates():
    from runtime.remote import FIM_TEMPLATES

    assert set(get_args(FIELDS["fimTemplate"].type)) == {"", *FIM_TEMPLATES}


def test_the_manifest_declares_every_server_setting_and_no_other():
    declared = {k.removeprefix("waferline.") for k in PROPERTIES if not k.startswith(("waferline.server.", "waferline.trace."))}
    assert declared == set(FIELDS)


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_the_manifest_says_what_settings_says(name):
    field, prop = FIELDS[name], PROPERTIES[f"waferline.{name}"]
    base, meta = _meta(field)
    assert prop["default"] == field.default, "default"
    if get_origin(base) is Literal:
        assert set(prop["enum"]) == set(get_args(base)) and prop["type"] == "string"
    elif name == "hardware":  # a preset from VS Code; a .toml path only from other editors' configs
        assert prop["enum"] == sorted(HARDWARE_PRESETS) and prop["type"] == "string"
    elif _nullable(field):
        assert prop["type"] == [JSON_TYPES[base], "null"] and "enum" not in prop
    else:
        assert prop["type"] == JSON_TYPES[base] and "enum" not in prop
    if meta is not None:
        assert (prop.get("minimum"), prop.get("maximum")) == (meta.ge, meta.le), "range"
    else:
        assert "minimum" not in prop and "maximum" not in prop


def test_the_extension_readme_table_says_what_settings_says():
    rows = dict(re.findall(r"^\| `waferline\.([\w.]+)` \| `([^`]*)` \|", (CLIENT / "README.md").read_text(encoding="utf-8"), re.MULTILINE))
    missing = set(FIELDS) - set(rows)
    assert not missing, f"not in vscode-client/README.md: {sorted(missing)}"
    for name, field in FIELDS.items():
        assert rows[name] == _shown(field.default), name


def _shown(value: object) -> str:
    """A default as the README writes it: `true`, `0`, `smollm2-135m`, `""`."""
    if value == "":
        return '""'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def test_the_snippet_budget_is_the_models_unless_set():
    from runtime import models
    from runtime.models import CATALOG

    assert Settings().snippet_budget() == CATALOG[DEFAULT_MODEL].context_tokens == 512
    assert Settings(model="smollm2-135m").snippet_budget() == 1024  # 1.50x at 1024, 1.28x at 512 (README)
    assert Settings(model="/some/bundle").snippet_budget() == 512
    assert Settings(model=str(models.bundle_dir("smollm2-135m"))).snippet_budget() == 1024  # the catalog's, as a path
    assert Settings(model="smollm2-135m", backend="llamacpp").snippet_budget() == 512  # not the local model's
    assert Settings(model="smollm2-135m", context_tokens=0).snippet_budget() == 0
