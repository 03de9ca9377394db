"""Workload: the ONNX partition and the ArchSpec path give the same subgraphs; arch presets and files."""

import json

import pytest
from onnx import helper

from runtime.arch import ArchSpec
from runtime.builder import build_graph
from runtime.wafer.errors import WaferError
from runtime.wafer.workload import (
    WEIGHT_BYTES, arch_names, load_arch, load_arch_file, workload_from_arch, workload_from_graph,
)

PRESETS = ["smollm2-135m", "qwen2.5-coder-0.5b", "llama3-8b", "llama2-13b", "codellama-34b", "llama3.1-70b",
           "llama3.1-405b", "qwen2-72b", "qwen3-235b-a22b", "gpt-oss-120b", "llama4-scout", "llama4-maverick"]


def _fields(sg):
    return (sg.name, sg.kind, sg.layer, sg.weight_params, sg.vector_params, sg.macs_per_token,
            sg.attn_macs_per_token_per_ctx, sg.kv_bytes_per_token, sg.ops, [(m.k, m.n, m.experts, m.active) for m in sg.matmuls],
            sg.n_heads, sg.n_kv_heads, sg.head_dim,
            sorted((t.name, t.kind, t.bytes_per_token) for t in sg.inputs),
            sorted((t.name, t.kind, t.bytes_per_token) for t in sg.outputs))


@pytest.mark.parametrize("name", PRESETS)
def test_graph_partition_agrees_with_arch_path(name):
    spec = load_arch(name)
    g, a = workload_from_graph(build_graph(spec)), workload_from_arch(spec)
    assert (g.n_layers, g.d_model, g.vocab_size) == (a.n_layers, a.d_model, a.vocab_size) == (spec.n_layers, spec.d_model, spec.vocab_size)
    assert [s.name for s in g.subgraphs] == ["embed"] + [f"layers.{i}.{k}" for i in range(spec.n_layers) for k in ("attn", "mlp")] + ["head"]
    for sg, sa in zip(g.subgraphs, a.subgraphs):
        assert _fields(sg) == _fields(sa)


def test_published_parameter_counts():
    # Llama 3.1 8B has 8.03 B parameters; 405B has 405.9 B (their model cards)
    assert workload_from_arch(load_arch("llama3-8b")).weight_bytes("bf16") / 2 == pytest.approx(8.03e9, rel=0.01)
    assert workload_from_arch(load_arch("llama3.1-405b")).weight_bytes("bf16") / 2 == pytest.approx(405.9e9, rel=0.01)


def test_subgraph_counts_for_one_layer():
    w = workload_from_arch(load_arch("llama3-8b"))
    attn, mlp = w.subgraphs[1], w.subgraphs[2]
    assert attn.macs_per_token == 4096 * 6144 + 4096 * 4096
    assert mlp.macs_per_token == 3 * 4096 * 14336
    assert attn.kv_bytes_per_token == 2 * 8 * 128 * 2
    assert attn.attn_macs_per_token_per_ctx == 2 * 32 * 128
    bf16, int8, int4 = (attn.weight_bytes[d] for d in ("bf16", "int8", "int4"))
    assert bf16 > int8 > int4
    assert int4 == pytest.approx(attn.weight_params * WEIGHT_BYTES["int4"] + attn.vector_params * 2, abs=1)
    hidden = [t for t in mlp.outputs if t.kind == "activation"]
    assert hidden and all(t.bytes_per_token == 4096 * 2 for t in hidden)


def test_matmulnbits_dims_are_read_from_attributes():
    spec = ArchSpec(name="t", n_layers=1, d_model=64, n_heads=4, n_kv_heads=2, d_ff=128, vocab_size=100)
    m = build_graph(spec)
    for i, node in enumerate(m.graph.node):
        if node.name == "/model/layers.0/mlp/gate_up/MatMul":
            q = helper.make_node("MatMulNBits", [node.input[0], "qweight", "scales"], list(node.output),
                                 name="/model/layers.0/mlp/gate_up/MatMulNBits", domain="com.microsoft",
                                 K=64, N=256, bits=4, block_size=32)
            m.graph.node.remove(node)
            m.graph.node.insert(i, q)
            break
    w = workload_from_graph(m)
    mlp = w.subgraphs[2]
    assert [(x.k, x.n) for x in mlp.matmuls] == [(64, 256), (128, 64)]
    assert mlp.ops["MatMulNBits"] == 1


def test_nodes_outside_the_naming_are_refused():
    m = build_graph(ArchSpec(name="t", n_layers=1, d_model=64, n_heads=4, n_kv_heads=2, d_ff=128, vocab_size=100))
    m.graph.node[3].name = "/somewhere/else/Op"
    with pytest.raises(WaferError, match="outside the"):
        workload_from_graph(m)


def test_arch_files_and_names(tmp_path):
    assert "llama3.1-8b" in arch_names() and load_arch("llama3.1-8b").d_model == 4096
    js = tmp_path / "mine.json"
    js.write_text(json.dumps({"n_layers": 2, "d_model": 128, "n_heads": 4, "n_kv_heads": 2, "d_ff": 256, "vocab_size": 1000}))
    assert load_arch_file(js).name == "mine"
    tm = tmp_path / "other.toml"
    tm.write_text('name = "x"\nn_layers = 2\nd_model = 128\nn_heads = 4\nn_kv_heads = 4\nd_ff = 256\nvocab_size = 1000\n')
    assert load_arch_file(tm).n_kv_heads == 4
    for body, needle in [('{"n_layers": 0, "d_model": 1, "n_heads": 1, "n_kv_heads": 1, "d_ff": 1, "vocab_size": 1}', "must be > 0"),
                         ('{"depth": 3}', "unknown field 'depth'"), ("{", "not valid JSON")]:
        bad = tmp_path / "bad.json"
        bad.write_text(body)
        with pytest.raises(WaferError, match=needle):
            load_arch_file(bad)
    with pytest.raises(WaferError, match="unknown architecture 'gpt-9'"):
        load_arch("gpt-9")


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_served_quantized_bundle_partitions_like_its_arch(tmp_path, arch):
    """A real bundle (MatMulNBits with block-sum columns, quantized embedding, shortlist LM head) counts as its arch."""
    import onnx

    from runtime import tiny
    from runtime.bundle import load_bundle

    b = load_bundle(tiny.make_tiny_bundle(tmp_path / arch, arch=arch))
    m = b.meta
    g = workload_from_graph(onnx.load(str(b.model_path), load_external_data=False))
    spec = ArchSpec(name="t", architecture=m.architecture, n_layers=m.n_layers, d_model=m.d_model, n_heads=m.n_heads,
                    n_kv_heads=m.n_kv_heads, head_dim=m.head_dim, d_ff=m.d_ff, vocab_size=m.vocab_size,
                    qkv_bias=m.qkv_bias, tied_embeddings=m.tied_embeddings)
    a = workload_from_arch(spec)
    for sg, sa in zip(g.subgraphs, a.subgraphs):
        assert (sg.weight_params, sg.vector_params, sg.macs_per_token, sg.kv_bytes_per_token, sg.head_dim) == \
            (sa.weight_params, sa.vector_params, sa.macs_per_token, sa.kv_bytes_per_token, sa.head_dim), sg.name
        assert [(x.k, x.n) for x in sg.matmuls] == [(x.k, x.n) for x in sa.matmuls], sg.name
