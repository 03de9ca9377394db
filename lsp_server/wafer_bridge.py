"""The one place the server touches runtime.wafer: the wafer report of the served model, and what one completion
would have cost on the wafer.

Simulating takes ~0.1-3 s of Python (the default code model: ~3 s, most of it scanning placements), so a report is
computed once per (model, hardware) and cached. `warm` computes it in a child process at the lowest CPU priority: run
in a thread of the server it held the GIL for those seconds beside the first completion after a load (measured: that
completion's CPU time 3.8-4.5 s; 1.5-2.0 s with the child; 1.3-2.0 s with no report at all). `estimate` never
simulates: it prices a completion from a cached report (the prompt at the simulated prefill rate plus each new token at
the per-token latency) or says None until it exists.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import msgspec

from runtime.errors import WaferlineError
from runtime.wafer import explore_chart, plot_report, simulate_bundle

log = logging.getLogger(__name__)


class WaferUnavailable(Exception):
    """The simulator cannot simulate this model on this hardware (the message says why)."""


_lock = threading.Lock()
_reports: dict[tuple[str, str], Any] = {}
_warming: set[tuple[str, str]] = set()  # reports a child is simulating now: every completion until then asks again
_charts: dict[str, str | None] = {}  # hardware -> the explore chart's path (None: it failed; not retried)
_plot_dir: Path | None = None
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _own_dir(path: Path) -> Path | None:
    """`path` as a 0700 directory of ours, or None when it is something else (a link, another user's)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            return None
        if st.st_mode & 0o077:
            os.chmod(path, 0o700)
        return path
    except OSError:
        return None


def private_dir() -> Path:
    """Where report images go: a 0700 directory in the user cache (a fresh mkdtemp if that is not ours), never a
    predictable path in the shared temp dir where another user could plant a link."""
    global _plot_dir
    with _lock:
        if _plot_dir is None:
            import platformdirs

            _plot_dir = _own_dir(Path(platformdirs.user_cache_dir("waferline")) / "reports")
            _plot_dir = _plot_dir or Path(tempfile.mkdtemp(prefix="waferline-reports-"))
        return _plot_dir


def write_plot(report, directory: Path, hardware: str) -> Path:
    """The report's heat-map into `directory` (_write_png)."""
    return _write_png(lambda tmp: plot_report(report, tmp), directory, f"{report.model}-{Path(hardware).stem}")


def _write_png(draw, directory: Path, stem: str) -> Path:
    """Render into a fresh file in `directory`, then rename it over the final name: a link planted at that name is
    replaced, never followed."""
    final = directory / (_UNSAFE_NAME.sub("_", stem)[:120] + ".png")
    fd, tmp = tempfile.mkstemp(prefix=".plot-", suffix=".png", dir=directory)
    os.close(fd)
    try:
        draw(tmp)
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final


def explore_plot(hardware: str, plot_dir: Path) -> str | None:
    """The explore chart for this hardware (which public models reach 1,000 tok/s per user on it), drawn once per
    hardware and process: ~12 simulations, a few seconds. None when it cannot be drawn (the report still shows)."""
    with _lock:
        cached = _charts.get(hardware, "")
    if cached is None or (cached and Path(cached).is_file() and not Path(cached).is_symlink()):
        return cached  # (a chart since replaced by anything but our file is drawn again)
    path = None
    try:
        path = str(_write_png(lambda tmp: explore_chart(hardware, tmp), plot_dir, f"explore-{Path(hardware).stem}"))
    except Exception as exc:  # noqa: BLE001 - a failed picture must not lose the report
        log.warning("wafer explore chart failed: %s", exc)
    with _lock:
        _charts[hardware] = path
    return path


def _report(bundle_path: str | Path, hardware: str):
    key = (str(bundle_path), hardware)
    with _lock:
        cached = _reports.get(key)
    if cached is None:
        try:
            cached = simulate_bundle(Path(bundle_path), hardware)  # a hardware file is read safely (runtime.checks)
        except (WaferlineError, OSError, ValueError) as exc:
            cached = WaferUnavailable(f"wafer simulation failed: {exc}")  # remembered: not retried every keystroke
        with _lock:
            _reports[key] = cached
    if isinstance(cached, WaferUnavailable):
        raise cached
    return cached


def simulate(bundle_path: str | Path, hardware: str, plot_dir: str | Path | None = None) -> dict[str, Any]:
    """{report, plot_path, explore_plot_path} for the served bundle on a hardware preset or configured file; raises WaferUnavailable."""
    report = _report(bundle_path, hardware)
    plot_path = None
    directory = Path(plot_dir) if plot_dir else private_dir()
    try:
        plot_path = str(write_plot(report, directory, hardware))
    except Exception as exc:  # noqa: BLE001 - a failed picture must not lose the report
        log.warning("wafer plot failed: %s", exc)
    return {"report": msgspec.to_builtins(report), "plot_path": plot_path,
            "explore_plot_path": explore_plot(hardware, directory)}


WARM_TIMEOUT_S = 600.0  # a child that has not answered by then is stopped (at idle priority it only waits for CPU)


def warm(bundle_path: str | Path, hardware: str) -> None:
    """Simulate in an idle-priority child process (`waferline simulate --json`) if this (model, hardware) has no report
    yet; a daemon thread waits for it and caches the report (or why there is none)."""
    key = (str(bundle_path), hardware)
    with _lock:
        if key in _reports or key in _warming:
            return
        _warming.add(key)

    def run() -> None:
        try:
            report: Any = _simulate_aside(bundle_path, hardware)
        except WaferUnavailable as exc:
            log.info("%s", exc)
            report = exc
        with _lock:
            _reports.setdefault(key, report)
            _warming.discard(key)

    threading.Thread(target=run, name="wafer-report", daemon=True).start()


def _simulate_aside(bundle_path: str | Path, hardware: str):
    """The Report, simulated by a child at the lowest priority the OS offers: it takes only CPU nobody else wants."""
    from runtime.wafer.report import Report

    cmd = [sys.executable, "-m", "lsp_server.cli", "simulate", "--model", str(bundle_path), "--hardware", hardware, "--json"]
    low = ({"creationflags": subprocess.IDLE_PRIORITY_CLASS} if os.name == "nt"
           else {"preexec_fn": lambda: os.nice(19)})
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WARM_TIMEOUT_S, stdin=subprocess.DEVNULL, **low)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WaferUnavailable(f"wafer simulation failed: {exc}") from None
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise WaferUnavailable(f"wafer simulation failed: {why.removeprefix('waferline: error: ')}")
    try:
        return msgspec.json.decode(proc.stdout, type=Report)
    except msgspec.DecodeError as exc:  # (a ValidationError is one)
        raise WaferUnavailable(f"wafer simulation failed: unreadable report ({exc})") from None


def estimate(bundle_path: str | Path, hardware: str, prompt_tokens: int, new_tokens: int) -> tuple[float, float] | None:
    """(wafer_ms, wafer decode tokens/s) for one completion; None while no report is cached (or it cannot exist)."""
    with _lock:
        report = _reports.get((str(bundle_path), hardware))
    if report is None or isinstance(report, WaferUnavailable):
        return None
    prefill_s = max(prompt_tokens, 0) / report.prefill_tokens_per_s if report.prefill_tokens_per_s > 0 else 0.0
    total_s = prefill_s + report.per_token_latency_s * max(new_tokens, 0)
    return total_s * 1e3, report.decode_tokens_per_s


def reset_cache() -> None:
    with _lock:
        _reports.clear()
        _charts.clear()
