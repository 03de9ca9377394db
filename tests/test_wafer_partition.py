"""The partition is executable: the tile subgraphs chained in ONNX Runtime give the fused graph's logits."""

import numpy as np
import pytest
from onnx import TensorProto, numpy_helper

from runtime.arch import ArchSpec
from runtime.builder import build_graph
from runtime.wafer.partition import check_bundle, decoder_feeds, run_fused, run_partitioned, split_model
from runtime.wafer.workload import workload_from_graph


def _random_model(spec: ArchSpec, seed: int = 0):
    """The builder's shape-only graph with random float weights: runnable without any GGUF."""
    m = build_graph(spec)
    rng = np.random.default_rng(seed)
    inits = []
    for t in m.graph.initializer:
        if t.data_location == TensorProto.EXTERNAL:
            inits.append(numpy_helper.from_array((rng.standard_normal(list(t.dims)) * 0.1).astype(np.float32), t.name))
        else:
            inits.append(t)
    del m.graph.initializer[:]
    m.graph.initializer.extend(inits)
    return m


@pytest.mark.parametrize("arch, bias", [("llama", False), ("qwen2", True)])
def test_chained_subgraphs_equal_fused_logits(arch, bias):
    spec = ArchSpec(name="tiny", architecture=arch, n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, d_ff=128,
                    vocab_size=300, context_length=64, qkv_bias=bias)
    m = _random_model(spec)
    pieces = split_model(m)
    assert [n for n, _ in pieces] == [s.name for s in workload_from_graph(m).subgraphs]
    feeds = decoder_feeds(m, [5, 17, 42, 7, 99, 3], 64)
    fused, cut = run_fused(m, feeds), run_partitioned(m, feeds)
    assert set(fused) == set(cut)
    assert np.max(np.abs(fused["logits"] - cut["logits"])) <= 1e-4
    for k in fused:
        if k.startswith("present."):
            np.testing.assert_allclose(fused[k], cut[k], atol=1e-5)


def test_tiny_bundle_partition_is_exact(tmp_path):
    from runtime import tiny

    bundle = tiny.make_tiny_bundle(tmp_path / "tiny")
    assert check_bundle(bundle) <= 1e-4


def test_default_model_partition_is_exact(smollm2_bundle):
    """The real default model (pulled by `make test` before pytest; the fixture pulls it otherwise)."""
    assert check_bundle(smollm2_bundle) <= 1e-4


@pytest.mark.parametrize("layer_weights", ["exact", "int8"])
def test_a_served_bundle_partitions_to_its_architectures_workload(tmp_path, layer_weights):
    """`waferline simulate --model` reads the graph the server runs. The int8 layout (the default model's) holds its
    projections as DynamicQuantizeMatMul with the QKV bias fused in, and gathers the embedding from two 4-bit halves:
    it must count the same weights, shapes and bias as the architecture (it counted no projections at all, and
    `make demo`'s simulate step failed on the default model)."""
    import onnx

    from runtime.bundle import load_bundle
    from runtime.convert import convert
    from runtime.tiny import write_tiny_gguf
    from runtime.wafer.hardware import load_hardware
    from runtime.wafer.sim import SimOptions, simulate

    gguf_path = write_tiny_gguf(tmp_path / "t.gguf", arch="qwen2", qtype="Q8_0", seed=3)
    bundle = load_bundle(convert(gguf_path, tmp_path / "b", progress=False, layer_weights=layer_weights))
    graph = onnx.load(str(bundle.model_path), load_external_data=False)
    served = workload_from_graph(graph)
    built = workload_from_graph(build_graph(bundle.meta))  # BundleMeta is an ArchSpec: the shape-only graph
    for a, b in zip(served.subgraphs, built.subgraphs):
        assert (a.name, a.weight_params, a.vector_params) == (b.name, b.weight_params, b.vector_params), a.name
        assert sum(m.params for m in a.matmuls) == sum(m.params for m in b.matmuls), a.name
        if a.kind == "attn":  # the QKV bias, costed as one vector add either way
            assert a.ops.get("Add") == b.ops.get("Add") == 1, a.name
    r = simulate(served, load_hardware("wse3"), SimOptions(context=64, prompt_len=16))
    assert r.decode_tokens_per_s > 0 and r.weight_bytes == built.weight_bytes("bf16")
