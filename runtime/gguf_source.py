"""Read a GGUF file into an architecture description plus named weight tensors, validating as we go.

The GGUF is only read at conversion time. Every problem a user can cause (not a GGUF, truncated, wrong version,
unknown architecture or quant type, missing tokenizer) becomes one GGUFError naming it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as QT

from .checks import ARCH_LIMITS, MAX_DIM, float_problem, int_problem
from .errors import GGUFError
from .quant import SUPPORTED

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)


@dataclass(frozen=True)
class ArchRules:
    """What differs between the decoder families we convert (a registry, not an elif chain)."""

    rope_interleaved: bool  # llama.cpp's GGUF keeps llama Q/K permuted for pairwise (interleaved) rope; qwen2 uses NEOX halves
    qkv_bias: bool


ARCHITECTURES: dict[str, ArchRules] = {
    "llama": ArchRules(rope_interleaved=True, qkv_bias=False),
    "qwen2": ArchRules(rope_interleaved=False, qkv_bias=True),
}


@dataclass
class Tensor:
    """One GGUF tensor with logical shape [rows, cols] (GGUF lists dims fastest-first, i.e. [cols, rows])."""

    name: str
    qtype: QT
    rows: int
    cols: int
    raw: np.ndarray  # the stored bytes or values, memory-mapped


@dataclass
class GGUFModel:
    path: Path
    arch: str
    rules: ArchRules
    fields: dict[str, object]
    tensors: dict[str, Tensor]

    def key(self, name: str, default: object = None) -> object:
        """Architecture-scoped metadata: key('block_count') reads 'llama.block_count'."""
        return self.fields.get(f"{self.arch}.{name}", default)

    def require(self, name: str) -> object:
        value = self.key(name)
        if value is None:
            raise GGUFError(f"{self.path.name}: metadata key '{self.arch}.{name}' is missing")
        return value

    def int_key(self, name: str, field: str, default: object = None) -> int:
        """An architecture integer checked against the ArchSpec field's sane range (checks.ARCH_LIMITS) before
        anything is sized by it; missing and no default: an error."""
        value = self.require(name) if default is None else self.key(name, default)
        if problem := int_problem(value, *ARCH_LIMITS[field]):
            raise GGUFError(f"{self.path.name}: metadata '{self.arch}.{name}' {problem}")
        return value  # type: ignore[return-value]

    def float_key(self, name: str, default: float, lo: float, hi: float) -> float:
        """An architecture float, finite and in (lo, hi]."""
        value = self.key(name, default)
        if problem := float_problem(value, lo, hi, lo_open=True):
            raise GGUFError(f"{self.path.name}: metadata '{self.arch}.{name}' {problem}")
        return float(value)  # type: ignore[arg-type]

    def tensor(self, name: str) -> Tensor:
        if name not in self.tensors:
            raise GGUFError(f"{self.path.name}: tensor '{name}' is missing")
        return self.tensors[name]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_header(path: Path) -> None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise GGUFError(f"cannot read {path}: {exc.strerror}") from None
    if len(head) < 8:
        raise GGUFError(f"{path.name} is not a GGUF file (only {len(head)} bytes)")
    if head[:4] != GGUF_MAGIC:
        raise GGUFError(f"{path.name} is not a GGUF file (magic {head[:4]!r}, expected b'GGUF')")
    version = int.from_bytes(head[4:8], "little")
    if version not in SUPPORTED_VERSIONS:
        raise GGUFError(f"{path.name}: GGUF version {version} is not supported (supported: 2, 3)")


def _field_value(field: gguf.ReaderField) -> object:
    try:
        return field.contents()
    except Exception:  # noqa: BLE001 - an odd field we never read must not stop the conversion
        return None


TOKEN_ID_KEYS = ("bos", "eos", "eot", "fim_pre", "fim_suf", "fim_mid", "fim_pad", "fim_sep", "fim_rep")


def _check_tokenizer(fields: dict[str, object], name: str) -> None:
    """The vocabulary's types and sizes, and every special token id inside it (an unreadable field reads as None)."""
    tokens = fields.get("tokenizer.ggml.tokens")
    if tokens is None:
        raise GGUFError(f"{name} has no tokenizer (tokenizer.ggml.tokens is missing or unreadable)")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise GGUFError(f"{name}: tokenizer.ggml.tokens must be a non-empty list of strings")
    if len(tokens) > MAX_DIM:
        raise GGUFError(f"{name}: tokenizer.ggml.tokens has {len(tokens)} tokens (at most {MAX_DIM})")
    for key, kind in (("tokenizer.ggml.merges", str), ("tokenizer.ggml.token_type", int)):
        value = fields.get(key)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, kind) for v in value)):
            raise GGUFError(f"{name}: {key} must be a list of {kind.__name__}s")
        if kind is int and value is not None and len(value) != len(tokens):
            raise GGUFError(f"{name}: {key} has {len(value)} entries for {len(tokens)} tokens")
    for key in (f"tokenizer.ggml.{k}_token_id" for k in TOKEN_ID_KEYS):
        if fields.get(key) is not None and (problem := int_problem(fields[key], 0, len(tokens) - 1)):
            raise GGUFError(f"{name}: {key} {problem}")
    add_bos = fields.get("tokenizer.ggml.add_bos_token")
    if add_bos is not None and not isinstance(add_bos, bool):
        raise GGUFError(f"{name}: tokenizer.ggml.add_bos_token must be a bool (got {add_bos!r:.40})")


def read_gguf(path: str | os.PathLike) -> GGUFModel:
    """Open and validate a GGUF; tensors stay memory-mapped."""
    path = Path(path)
    if not path.is_file():
        raise GGUFError(f"{path} does not exist")
    _check_header(path)
    try:
        reader = gguf.GGUFReader(path)
    except Exception as exc:  # noqa: BLE001 - gguf raises ValueError/IndexError/struct errors on damage
        raise GGUFError(f"{path.name} is damaged or truncated: {exc}") from None
    fields = {name: _field_value(f) for name, f in reader.fields.items()}
    arch = fields.get("general.architecture")
    if arch not in ARCHITECTURES:
        raise GGUFError(f"{path.name}: architecture '{arch}' is not supported (supported: {', '.join(ARCHITECTURES)})")
    tensors: dict[str, Tensor] = {}
    for t in reader.tensors:
        qtype = QT(t.tensor_type)
        if qtype not in SUPPORTED:
            raise GGUFError(
                f"{path.name}: tensor '{t.name}' has quant type {qtype.name}, which is not supported "
                f"(supported: {', '.join(sorted(q.name for q in SUPPORTED))})"
            )
        dims = [int(d) for d in t.shape]  # fastest-first
        cols = dims[0]
        rows = int(np.prod(dims[1:])) if len(dims) > 1 else 1
        tensors[t.name] = Tensor(t.name, qtype, rows, cols, t.data)
    _check_tokenizer(fields, path.name)
    return GGUFModel(path=path, arch=arch, rules=ARCHITECTURES[arch], fields=fields, tensors=tensors)
