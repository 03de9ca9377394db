"""The editor configs we hand to users name only settings the server knows, and parse.

The server ignores unknown keys (clients share the section with their own settings), so a typo in a
config would otherwise fail silently. Checked for the VS Code manifest, Neovim, eglot and Helix.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from lsp_server.settings import FIELD_NAMES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "configs"
MANIFEST = HERE.parent.parent / "vscode-client" / "package.json"
SERVER_KEYS = set(FIELD_NAMES)  # camelCase JSON names
CLIENT_ONLY = {"server.pythonPath", "server.command", "trace.server"}  # VS Code client only; never sent


def test_vscode_settings_are_server_settings():
    properties = json.loads(MANIFEST.read_text())["contributes"]["configuration"]["properties"]
    keys = {k.removeprefix("waferline.") for k in properties} - CLIENT_ONLY
    assert keys <= SERVER_KEYS, keys - SERVER_KEYS
    assert keys == SERVER_KEYS, f"not settable from VS Code: {SERVER_KEYS - keys}"


def test_neovim_init_options():
    text = (CONFIGS / "neovim.lua").read_text()
    block = re.search(r"init_options\s*=\s*\{([^}]*)\}", text)
    assert block, "no init_options in neovim.lua"
    keys = set(re.findall(r"(\w+)\s*=", block.group(1)))
    assert keys and keys <= SERVER_KEYS, keys - SERVER_KEYS
    assert "vim.lsp.enable('waferline')" in text


def test_eglot_initialization_options():
    text = (CONFIGS / "eglot.el").read_text()
    block = re.search(r":initializationOptions\s*\(([^)]*)\)", text)
    assert block, "no :initializationOptions in eglot.el"
    keys = set(re.findall(r":(\w+)", block.group(1)))
    assert keys and keys <= SERVER_KEYS, keys - SERVER_KEYS
    assert text.count("(") == text.count(")"), "unbalanced parentheses"


def test_helix_languages_toml():
    config = tomllib.loads((CONFIGS / "helix-languages.toml").read_text())
    server = config["language-server"]["waferline"]
    assert server["command"] == "waferline" and server["args"] == ["serve"]
    assert set(server["config"]) <= SERVER_KEYS, set(server["config"]) - SERVER_KEYS
    assert all("waferline" in lang["language-servers"] for lang in config["language"])
