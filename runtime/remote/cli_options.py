"""The remote-backend options of the command line, defined once: `waferline complete` (lsp_server/cli_serve.py) and
`waferline generate` (runtime/cli.py) take the same flags, named after the settings they set (README: Remote
backends)."""

from __future__ import annotations

import argparse
from typing import Any

from .backend import DIALECTS
from .fim import FIM_TEMPLATES

BACKENDS = ("local", *DIALECTS)
# flag dest -> the setting of the same meaning (lsp_server.settings.Settings, camelCase as in initializationOptions)
SETTINGS = {"backend": "backend", "endpoint": "endpoint", "remote_model": "remoteModel",
            "fim_template": "fimTemplate", "api_key_env": "apiKeyEnv"}


def add_remote_options(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("remote backend (the settings of the same names; README: Remote backends)")
    group.add_argument("--backend", choices=BACKENDS, help="local (default): the ONNX decoder here; else a server's dialect")
    group.add_argument("--endpoint", metavar="URL", help="http://127.0.0.1:8080 (llama.cpp) or http://HOST:8000/v1")
    group.add_argument("--remote-model", metavar="NAME", help="the model name the server expects")
    group.add_argument("--fim-template", choices=tuple(FIM_TEMPLATES), metavar="NAME",
                       help=f"openai-raw: the FIM template ({', '.join(FIM_TEMPLATES)}; default: from the model name)")
    group.add_argument("--api-key-env", metavar="VAR", help="the environment variable that holds the API key")
    return group


def remote_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the remote flags given on the command line set (for initializationOptions)."""
    return {setting: getattr(args, flag) for flag, setting in SETTINGS.items() if getattr(args, flag, None)}


def is_remote(args: argparse.Namespace) -> bool:
    return getattr(args, "backend", None) not in (None, "local")
