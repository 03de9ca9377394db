"""A model bundle: the directory everything that serves or simulates reads.

    model.onnx (+ model.onnx.data)   the decoder graph, weights as external data
    tokenizer.json                   HF `tokenizers` file built from the GGUF vocabulary
    bundle.json                      BundleMeta below

Nothing reads a GGUF at serve time; a bundle is complete only once bundle.json exists (written last).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import msgspec
from tokenizers import Tokenizer

from .arch import ArchSpec
from .checks import check_arch
from .cpu import INT8_LEVELS
from .errors import ModelError
from .vocab import TokenTexts

BUNDLE_FORMAT = 1
# Which builder laid the graph out; `model pull` converts a catalog bundle of an older one again (it still loads).
# 2: the head's 4-bit picker in blocks of 128, the embedding read from the head's rows when the GGUF stores both.
# 3: the int8 layout's head held as the two 4-bit halves of an int8 table, the high half picking.
BUILDER_REVISION = 3


class BundleMeta(ArchSpec, kw_only=True):
    """Architecture (the ArchSpec fields, flat in bundle.json), special tokens and provenance of a converted model."""

    bos_id: int | None = None
    add_bos: bool = False
    eos_ids: list[int] = []
    fim_prefix_id: int | None = None
    fim_suffix_id: int | None = None
    fim_middle_id: int | None = None
    fim_pad_id: int | None = None
    file_sep_id: int | None = None
    repo_name_id: int | None = None
    source_file: str = ""
    source_sha256: str = ""
    quant: dict[str, str] = {}
    lossy: list[str] = []
    layer_weights: str = "exact"  # builder.LAYER_WEIGHTS: how the layers' projections are held
    int8_levels: int | None = None  # the int8 layout's code range (builder.int8_levels_of); None: exact layout
    max_context: int = 2048
    format: int = BUNDLE_FORMAT
    builder: int = 1  # BUILDER_REVISION of the converter that wrote it (bundles from before the field: 1)

    @property
    def int8_codes(self) -> int | None:
        """The int8 layout's code range as held (int8 bundles from before `int8_levels` was written: 8-bit codes);
        None for the exact layout."""
        return None if self.layer_weights != "int8" else self.int8_levels or INT8_LEVELS

    @property
    def has_fim(self) -> bool:
        return None not in (self.fim_prefix_id, self.fim_suffix_id, self.fim_middle_id)


@dataclass
class Bundle:
    path: Path
    meta: BundleMeta
    tokenizer: Tokenizer

    @property
    def model_path(self) -> Path:
        return self.path / "model.onnx"

    @functools.cached_property
    def token_texts(self) -> TokenTexts:
        """Each token's text, indexed for forced prefixes (token healing); built on first use."""
        return TokenTexts(self.tokenizer)


def write_meta(path: Path, meta: BundleMeta) -> None:
    (path / "bundle.json").write_bytes(msgspec.json.format(msgspec.json.encode(meta), indent=2))


def read_meta(path: Path) -> BundleMeta:
    meta_file = Path(path) / "bundle.json"
    if not meta_file.is_file():
        raise ModelError(f"{path} is not a model bundle (no bundle.json); convert a GGUF with `waferline model convert`")
    try:
        meta = msgspec.json.decode(meta_file.read_bytes(), type=BundleMeta)
    except msgspec.DecodeError as exc:
        raise ModelError(f"{meta_file} is broken: {exc}") from None
    check_arch(msgspec.structs.asdict(meta), f"{meta_file} is broken", ModelError)  # the engine sizes its KV cache by these
    return meta


def load_bundle(path: str | Path) -> Bundle:
    """Read a bundle's metadata and tokenizer; the ONNX session is the engine's business."""
    path = Path(path)
    meta = read_meta(path)
    for name in ("model.onnx", "tokenizer.json"):
        if not (path / name).is_file():
            raise ModelError(f"model bundle {path} is incomplete: {name} is missing")
    try:
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        tokenizer.encode_special_tokens = True  # "<|endoftext|>" typed in a document is text, not a control token
    except Exception as exc:  # tokenizers raises plain Exception subclasses
        raise ModelError(f"{path / 'tokenizer.json'} is broken: {exc}") from None
    return Bundle(path=path, meta=meta, tokenizer=tokenizer)
