"""How often the served model accepts its own drafted tokens, measured on the user's code: the rate the wafer
simulator's speculative decoding takes with `--acceptance measured` (no other tool has this figure).

Every completion that drafted (prompt lookup) adds its counts; the tally is written to
<cache>/acceptance/<model>.json at most every FLUSH_SECONDS (atomic replace: a crash loses at most that window, never
the file). The per-token acceptance rate is the maximum-likelihood one for "each drafted token is accepted with
probability a, verification stops at the first miss": accepted / (accepted + misses), where a miss is a verify step
that rejected a token (tokens after the first miss were never tested, so they do not count).
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path

import msgspec

FLUSH_SECONDS = 30.0
MIN_TESTED = 50  # tested draft tokens before a rate is reported as measured


class AcceptanceTally(msgspec.Struct):
    model: str
    drafted: int = 0  # draft tokens proposed
    accepted: int = 0  # draft tokens the model confirmed
    misses: int = 0  # verify steps that rejected a draft token
    completions: int = 0  # completions that drafted at all
    updated: str = ""  # UTC, ISO 8601

    @property
    def tested(self) -> int:
        return self.accepted + self.misses

    @property
    def rate(self) -> float | None:
        return self.accepted / self.tested if self.tested else None


def tally_dir(cache: Path | None = None) -> Path:
    """<cache>/acceptance; WAFERLINE_ACCEPTANCE_DIR names the folder instead (the tests use it, so their completions
    never count as the user's)."""
    from .models import cache_dir

    folder = os.environ.get("WAFERLINE_ACCEPTANCE_DIR") if cache is None else None
    return Path(folder) if folder else (cache or cache_dir()) / "acceptance"


def tally_path(model: str, cache: Path | None = None) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-._" else "_" for ch in model) or "model"
    return tally_dir(cache) / f"{safe}.json"


def read_tally(model: str, cache: Path | None = None) -> AcceptanceTally | None:
    """The stored tally of `model`, or None (never measured, or the file is unreadable: it is only a measurement)."""
    try:
        return msgspec.json.decode(tally_path(model, cache).read_bytes(), type=AcceptanceTally)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def latest_tally(cache: Path | None = None) -> AcceptanceTally | None:
    """The most recently updated tally of any model (the model the user served last)."""
    try:
        files = sorted(tally_dir(cache).glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return None
    for f in files:
        t = read_tally(f.stem, cache)
        if t is not None:
            return t
    return None


class AcceptanceLedger:
    """The running tally of one served model: add() after each completion, written every FLUSH_SECONDS."""

    def __init__(self, model: str, cache: Path | None = None, flush_seconds: float = FLUSH_SECONDS):
        self.path = tally_path(model, cache)
        self.tally = read_tally(model, cache) or AcceptanceTally(model=model)
        self.flush_seconds = flush_seconds
        self._last_flush = -flush_seconds  # the first completion writes at once: the file exists from the start
        self._dirty = False

    def add(self, drafted: int, accepted: int, misses: int) -> None:
        if drafted <= 0:
            return
        t = self.tally
        t.drafted, t.accepted, t.misses, t.completions = t.drafted + drafted, t.accepted + accepted, t.misses + misses, t.completions + 1
        self._dirty = True
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the tally (tmp file + rename). A measurement: a full disk or read-only cache is not an error."""
        if not self._dirty:
            return
        self.tally.updated = datetime.now(timezone.utc).isoformat(timespec="seconds")
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(msgspec.json.encode(self.tally))
            os.replace(tmp, self.path)
            self._dirty = False
        except OSError:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        self._last_flush = time.monotonic()
