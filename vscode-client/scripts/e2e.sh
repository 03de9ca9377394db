#!/usr/bin/env bash
# End-to-end test of the extension in a real VS Code (code-server + headless Chromium + playwright-core)
# against the real server and runtime on a tiny generated model.
#
#   vscode-client/scripts/e2e.sh
#
# Environment (all optional):
#   WAFERLINE_PYTHON          interpreter with waferline's dependencies (default: <repo>/.venv/bin/python)
#   WAFERLINE_E2E_ARTIFACTS   screenshots, logs, summary.json (default: <repo>/artifacts/e2e)
#   WAFERLINE_E2E_CACHE       installs of Node 24 and code-server (default: ~/.cache/waferline/e2e)
#   WAFERLINE_E2E_KEEP=1      keep the temporary workspace, profile and model
# Exits non-zero if any check fails; the last line is "e2e: N passed, N failed".
set -euo pipefail

client_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
repo_dir="$(cd "$client_dir/.." && pwd)"
python="${WAFERLINE_PYTHON:-$repo_dir/.venv/bin/python}"
artifacts="${WAFERLINE_E2E_ARTIFACTS:-$repo_dir/artifacts/e2e}"

log() { echo "[e2e.sh] $*" >&2; }

# --- the extension: dependencies, compile (extension bundle + test driver), package ---------------
cd "$client_dir"
lock_sha="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ "$(cat node_modules/.waferline-lock-sha 2>/dev/null)" != "$lock_sha" ]]; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_sha" > node_modules/.waferline-lock-sha
fi
npx tsc -p .
version="$(node -p 'require("./package.json").version')"
vsix="$client_dir/waferline-$version.vsix"
rm -f "$vsix"
npm run --silent package >&2
[[ -f "$vsix" ]] || { log "packaging did not produce $vsix"; exit 1; }

# --- Node 24, code-server, Chromium (cached) --------------------------------------------------------
eval "$("$client_dir/scripts/install-e2e-deps.sh")"

# --- the server must start before any browser does ---------------------------------------------------
[[ -x "$python" ]] || { log "no Python at $python (set WAFERLINE_PYTHON)"; exit 1; }
export PYTHONPATH="$repo_dir${PYTHONPATH:+:$PYTHONPATH}"   # works without `pip install -e .` too
"$python" -m lsp_server --help >/dev/null || { log "$python -m lsp_server --help failed"; exit 1; }

tmp="$(mktemp -d "${TMPDIR:-/tmp}/waferline-e2e.XXXXXX")"
cleanup() { if [[ "${WAFERLINE_E2E_KEEP:-0}" == 1 ]]; then log "kept $tmp"; else rm -rf "$tmp"; fi; }
trap cleanup EXIT

log "making a tiny model bundle"
"$python" -c 'import sys; from runtime.tiny import make_tiny_bundle; make_tiny_bundle(sys.argv[1])' "$tmp/tiny-model"

# --- workspace, profile ------------------------------------------------------------------------------
workspace="$tmp/workspace"
mkdir -p "$workspace/.vscode" "$tmp/user/User" "$tmp/extensions"
cat > "$workspace/main.py" <<'PY'
def add(a, b):
    """Return the sum of a and b."""
    return a + b


def subtract(a, b):
    """Return a minus b."""
    return a - b

PY
"$python" - "$workspace/.vscode/settings.json" "$python" "$tmp/tiny-model" <<'PY'
import json, sys
path, python, model = sys.argv[1:]
settings = {
    "waferline.server.pythonPath": python,
    "waferline.model": model,
    "waferline.maxNewTokens": 16,
    "waferline.logLevel": "debug",
    # Only our ghost text: no word-based or trigger-character suggest widget to steal Tab or Enter.
    "editor.inlineSuggest.enabled": True,
    "editor.quickSuggestions": {"other": False, "comments": False, "strings": False},
    "editor.suggestOnTriggerCharacters": False,
    "editor.wordBasedSuggestions": "off",
    "editor.acceptSuggestionOnEnter": "off",
    "editor.autoClosingBrackets": "never",
    "editor.autoClosingQuotes": "never",
    "files.autoSave": "off",
}
json.dump(settings, open(path, "w"), indent=2)
PY
cat > "$tmp/user/User/settings.json" <<'JSON'
{
  "workbench.startupEditor": "none",
  "workbench.tips.enabled": false,
  "workbench.secondarySideBar.defaultVisibility": "hidden",
  "workbench.welcomePage.walkthroughs.openOnInstall": false,
  "chat.disableAIFeatures": true,
  "telemetry.telemetryLevel": "off",
  "extensions.autoCheckUpdates": false,
  "extensions.autoUpdate": false,
  "update.mode": "none",
  "security.workspace.trust.enabled": false
}
JSON

log "installing $vsix"
XDG_CONFIG_HOME="$tmp/config" EXTENSIONS_GALLERY='{"serviceUrl":""}' \
  "$NODE24" "$CODE_SERVER" --user-data-dir "$tmp/user" --extensions-dir "$tmp/extensions" \
  --install-extension "$vsix" >&2

# --- drive it ------------------------------------------------------------------------------------------
rm -rf "$artifacts"; mkdir -p "$artifacts"
E2E_NODE24="$NODE24" E2E_CODE_SERVER="$CODE_SERVER" E2E_CHROMIUM="$CHROMIUM" \
E2E_WORKSPACE="$workspace" E2E_USER_DATA_DIR="$tmp/user" E2E_EXTENSIONS_DIR="$tmp/extensions" \
E2E_ARTIFACTS="$artifacts" XDG_CONFIG_HOME="$tmp/config" \
  "$NODE24" "$client_dir/out/tsc/test/e2e/e2e.js"
