"""Checks for values a user hands us (flags, metadata, small files), made before anything is sized by them.

A value no real model or machine has (10^6 layers, a 10^12-wide FFN, 100000 threads, /dev/zero as a config file)
must be refused in one line, not found out by exhausting memory or crashing inside a native library.
"""

from __future__ import annotations

import argparse
import math
import os
import stat
from typing import Callable

from .errors import WaferlineError

MAX_LAYERS = 1000
MAX_DIM = 1 << 20  # any width: d_model, d_ff, heads, head_dim, vocabulary
MAX_CONTEXT = 1 << 24
MAX_EXPERTS = 4096  # routed experts per layer (published MoE models: 8..384)

# ArchSpec / BundleMeta field -> (lowest, highest); head_dim 0 means d_model // n_heads
ARCH_LIMITS: dict[str, tuple[int, int]] = {
    "n_layers": (1, MAX_LAYERS),
    "d_model": (1, MAX_DIM),
    "n_heads": (1, MAX_DIM),
    "n_kv_heads": (1, MAX_DIM),
    "head_dim": (0, MAX_DIM),
    "d_ff": (1, MAX_DIM),
    "vocab_size": (1, MAX_DIM),
    "context_length": (1, MAX_CONTEXT),
    "n_experts": (0, MAX_EXPERTS),
    "experts_per_token": (0, MAX_EXPERTS),
    "d_ff_expert": (0, MAX_DIM),
    "n_shared_experts": (0, MAX_EXPERTS),
    "moe_layer_step": (1, MAX_LAYERS),
}


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def int_problem(value: object, lo: int, hi: int) -> str | None:
    """Why `value` is not an integer in lo..hi, phrased to follow a name ("must be > 0 (got 0)"); None if it is."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be an integer (got {_show(value)})"
    if value < lo:
        bound = {0: "must not be negative", 1: "must be > 0"}.get(lo, f"must be at least {lo}")
        return f"{bound} (got {value})"
    if value > hi:
        return f"must be at most {hi} (got {value})"
    return None


def float_problem(value: object, lo: float, hi: float, lo_open: bool = False) -> str | None:
    """Why `value` is not a finite number in [lo, hi] ((lo, hi] if lo_open); None if it is. NaN and inf never are."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number (got {_show(value)})"
    if not math.isfinite(value):
        return f"must be finite (got {value})"
    if value < lo or (lo_open and value == lo) or value > hi:
        return f"must be in {'(' if lo_open else '['}{lo:g}, {hi:g}] (got {value:g})"
    return None


def check_arch(values: dict[str, object], origin: str, error: type[WaferlineError] = WaferlineError) -> None:
    """Refuse architecture shapes no decoder has, by ArchSpec field name, before a graph or cache is sized by them."""
    for name, (lo, hi) in ARCH_LIMITS.items():
        if name in values and (problem := int_problem(values[name], lo, hi)):
            raise error(f"{origin}: {name} {problem}")
    heads, kv = values.get("n_heads"), values.get("n_kv_heads")
    if isinstance(heads, int) and isinstance(kv, int) and heads % kv:
        raise error(f"{origin}: n_heads {heads} is not a multiple of n_kv_heads {kv}")
    experts, active = values.get("n_experts", 0), values.get("experts_per_token", 0)
    if isinstance(experts, int) and isinstance(active, int) and experts and not 1 <= active <= experts:
        raise error(f"{origin}: experts_per_token must be 1..n_experts ({experts}) for a mixture of experts (got {active})")


def read_text_file(path: str | os.PathLike, what: str, limit: int, error: type[WaferlineError] = WaferlineError) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes. Directories, devices and FIFOs are refused before
    reading (/dev/zero never ends, a FIFO blocks), and so is a file that grows past the limit while read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    except ValueError:  # a NUL inside the path
        raise error(f"cannot read {what} {_show(str(path))}: not a valid path") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise error(f"{what} {path} is {'a directory' if stat.S_ISDIR(mode) else 'not a regular file'}")
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise error(f"{what} {path} is larger than {limit // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r})") from None


# ------------------------------------------------------------------------------------------------ argparse types
def int_arg(lo: int, hi: int) -> Callable[[str], int]:
    """argparse `type=`: an integer in lo..hi."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {_show(text)}") from None
        if problem := int_problem(value, lo, hi):
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


def float_arg(lo: float, hi: float, lo_open: bool = False) -> Callable[[str], float]:
    """argparse `type=`: a finite number in [lo, hi] ((lo, hi] if lo_open)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {_show(text)}") from None
        if problem := float_problem(value, lo, hi, lo_open):
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


def utf8_arg(text: str) -> str:
    """argparse `type=`: text that is valid UTF-8 (Python hands undecodable argv bytes over as lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("must be valid UTF-8 text") from None
    return text
