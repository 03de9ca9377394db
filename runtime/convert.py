"""GGUF -> bundle directory (model.onnx + external data, tokenizer.json, bundle.json), written atomically.

Everything is written into a sibling directory and swapped into place by runtime/bundle_store.py, which never
replaces anything but a bundle of ours and recovers from a kill at any point.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec
import onnx
from tqdm import tqdm

from .arch import ArchSpec
from .builder import SHORTLIST, Weights, build_graph, int8_levels_of, layer_weights_of, lossy_parts
from .bundle import BUILDER_REVISION, BundleMeta, write_meta
from .bundle_store import check_target, install
from .errors import GGUFError
from .gguf_source import GGUFModel, read_gguf, sha256_file
from .tokenizer_build import special_ids, tokenizer_json


def arch_spec(m: GGUFModel) -> ArchSpec:
    """The ArchSpec a GGUF's metadata describes, every number range-checked (runtime/checks.py) before it sizes
    anything: a zero head count or a 10^12-wide FFN is one GGUFError, not a crash or an exhausted memory."""
    d_model = m.int_key("embedding_length", "d_model")
    n_heads = m.int_key("attention.head_count", "n_heads")
    n_kv_heads = m.int_key("attention.head_count_kv", "n_kv_heads", n_heads)
    if n_heads % n_kv_heads:
        raise GGUFError(f"{m.path.name}: head_count {n_heads} is not a multiple of head_count_kv {n_kv_heads}")
    head_dim = m.int_key("attention.key_length", "head_dim", d_model // n_heads)
    if head_dim == 0:
        raise GGUFError(f"{m.path.name}: embedding_length {d_model} is smaller than head_count {n_heads}")
    embd = m.tensor("token_embd.weight")
    default_vocab = embd.rows if embd.rows > 1 else len(m.fields["tokenizer.ggml.tokens"])
    return ArchSpec(
        name=str(m.fields.get("general.name") or m.path.stem),
        architecture=m.arch,
        n_layers=m.int_key("block_count", "n_layers"),
        d_model=d_model,
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        head_dim=head_dim,
        d_ff=m.int_key("feed_forward_length", "d_ff"),
        vocab_size=m.int_key("vocab_size", "vocab_size", default_vocab),
        rope_theta=m.float_key("rope.freq_base", 10000.0, 0.0, 1e12),
        rms_eps=m.float_key("attention.layer_norm_rms_epsilon", 1e-5, 0.0, 1.0),
        qkv_bias=m.rules.qkv_bias and "blk.0.attn_q.bias" in m.tensors,
        tied_embeddings="output.weight" not in m.tensors,
        context_length=m.int_key("context_length", "context_length", 4096),
    )


def _expected_shapes(m: GGUFModel, spec: ArchSpec) -> dict[str, tuple[int, int]]:
    """[rows, cols] of every tensor the builder reads: weights live in the file, so matching them bounds each dim by
    the file's size (a metadata dim absurd for the file fails here, before anything is allocated)."""
    d, q, kv, ff = spec.d_model, spec.n_heads * spec.head_dim, spec.n_kv_heads * spec.head_dim, spec.d_ff
    shapes = {"token_embd.weight": (spec.vocab_size, d), "output_norm.weight": (1, d)}
    if "output.weight" in m.tensors:
        shapes["output.weight"] = (spec.vocab_size, d)
    if "rope_freqs.weight" in m.tensors:
        shapes["rope_freqs.weight"] = (1, spec.head_dim // 2)
    for i in range(spec.n_layers):
        p = f"blk.{i}."
        shapes.update({
            p + "attn_norm.weight": (1, d), p + "ffn_norm.weight": (1, d), p + "attn_q.weight": (q, d),
            p + "attn_k.weight": (kv, d), p + "attn_v.weight": (kv, d), p + "attn_output.weight": (d, q),
            p + "ffn_gate.weight": (ff, d), p + "ffn_up.weight": (ff, d), p + "ffn_down.weight": (d, ff),
        })
        if spec.qkv_bias:
            shapes.update({p + "attn_q.bias": (1, q), p + "attn_k.bias": (1, kv), p + "attn_v.bias": (1, kv)})
    return shapes


def _check_shapes(m: GGUFModel, spec: ArchSpec) -> None:
    """Fail before building on a GGUF whose tensors disagree with its own metadata."""
    for name, (rows, cols) in _expected_shapes(m, spec).items():
        t = m.tensor(name)
        if (t.rows, t.cols) != (rows, cols):
            raise GGUFError(f"{m.path.name}: {name} is {t.rows}x{t.cols}, metadata says {rows}x{cols}")
    if len(m.fields["tokenizer.ggml.tokens"]) != spec.vocab_size:
        raise GGUFError(f"{m.path.name}: tokenizer has {len(m.fields['tokenizer.ggml.tokens'])} tokens, model vocab is {spec.vocab_size}")


def bundle_meta(m: GGUFModel, spec: ArchSpec, sha256: str, lossy: list[str] | None = None,
                layer_weights: str = "exact", int8_levels: int | None = None) -> BundleMeta:
    f = m.fields
    eos = [int(f["tokenizer.ggml.eos_token_id"])] if f.get("tokenizer.ggml.eos_token_id") is not None else []
    if f.get("tokenizer.ggml.eot_token_id") is not None and int(f["tokenizer.ggml.eot_token_id"]) not in eos:
        eos.append(int(f["tokenizer.ggml.eot_token_id"]))
    quant = sorted({t.qtype.name for t in m.tensors.values()})
    return BundleMeta(
        **msgspec.structs.asdict(spec),
        bos_id=int(f["tokenizer.ggml.bos_token_id"]) if f.get("tokenizer.ggml.bos_token_id") is not None else None,
        add_bos=bool(f.get("tokenizer.ggml.add_bos_token", False)),
        eos_ids=eos,
        source_file=m.path.name,
        source_sha256=sha256,
        quant={"types": ",".join(quant)},
        lossy=lossy or [],  # what is not as the GGUF stores it (builder.lossy_parts)
        layer_weights=layer_weights,
        int8_levels=int8_levels,
        builder=BUILDER_REVISION,
        **special_ids(f),
    )


def convert(gguf_path: str | os.PathLike, out_dir: str | os.PathLike, progress: bool = True,
            head_shortlist: int = SHORTLIST, layer_weights: str = "exact") -> Path:
    """Convert a GGUF into a bundle at out_dir (replacing only a bundle of ours there). Returns out_dir.

    head_shortlist=0 scores the whole LM head exactly (slower decode, exact sampling); layer_weights "int8"
    re-quantizes the layers' projections for a faster prefill (builder.LAYER_WEIGHTS), in codes this CPU's int8 GEMM
    cannot saturate (runtime.cpu.int8_weight_levels)."""
    out_dir = Path(os.path.abspath(out_dir))
    check_target(out_dir)  # refuse before the slow part; install checks again under its lock
    m = read_gguf(gguf_path)  # validate everything a user can get wrong before showing progress or writing
    spec = arch_spec(m)
    _check_shapes(m, spec)
    tok = tokenizer_json(m.fields, m.path.name)
    steps = tqdm(total=5, desc=f"convert {m.path.name}", disable=not progress, unit="step")
    steps.update()
    sha = sha256_file(m.path)
    steps.update()
    model = build_graph(spec, Weights(m.tensors, m.rules.rope_interleaved), head_shortlist, layer_weights)
    steps.update()

    def write(tmp: Path) -> None:
        onnx.save_model(model, tmp / "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                        location="model.onnx.data", size_threshold=1024)
        steps.update()
        (tmp / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
        held = layer_weights_of(model)
        write_meta(tmp, bundle_meta(m, spec, sha, lossy_parts(model), held, int8_levels_of(model)))  # bundle.json last: its presence marks a complete bundle

    install(out_dir, write)
    steps.update()
    steps.close()
    return out_dir
