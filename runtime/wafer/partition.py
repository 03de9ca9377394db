"""The partition is executable: cut the fused decoder into the simulator's tile subgraphs (embed, per layer attn and
mlp, head) and run them one after another in ONNX Runtime; the logits equal the fused graph's, so what the simulator
places is exactly what is served.

Each piece is a standalone ModelProto: its nodes (by the same name prefixes workload.py uses), the initializers they
read, as inputs the tensors produced elsewhere (or graph inputs), as outputs the tensors used elsewhere (or graph
outputs). Running them in order passes tensors by name, as a wafer passes them between regions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from .workload import cut_tensors, partition_nodes, subgraph_order

_ORT_TYPES = {
    "tensor(float)": TensorProto.FLOAT, "tensor(int64)": TensorProto.INT64, "tensor(int32)": TensorProto.INT32,
    "tensor(float16)": TensorProto.FLOAT16, "tensor(bfloat16)": TensorProto.BFLOAT16,
}


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor that can cross a cut (graph I/O from the model, the rest from ORT's own view)."""
    types = {v.name: v.type.tensor_type.elem_type for v in list(model.graph.input) + list(model.graph.output)}
    for v in model.graph.value_info:
        types.setdefault(v.name, v.type.tensor_type.elem_type)
    return types


def split_model(model: onnx.ModelProto) -> list[tuple[str, onnx.ModelProto]]:
    """[(subgraph name, standalone model)] in execution order."""
    parts = partition_nodes(model)
    n_layers = 1 + max((int(k.split(".")[1]) for k in parts if k.startswith("layers.")), default=-1)
    inits = {t.name: t for t in model.graph.initializer}
    graph_inputs = {v.name: v for v in model.graph.input}
    graph_outputs = {v.name: v for v in model.graph.output}
    types = _elem_types(model)
    cuts = cut_tensors(parts, inits, graph_outputs)

    def vinfo(name: str) -> onnx.ValueInfoProto:
        if name in graph_inputs:
            return graph_inputs[name]
        if name in graph_outputs:
            return graph_outputs[name]
        return helper.make_tensor_value_info(name, types.get(name, TensorProto.FLOAT), None)

    pieces = []
    for sg in subgraph_order(n_layers):
        nodes = parts[sg]
        ins, outs = cuts[sg]
        used = list(dict.fromkeys(i for node in nodes for i in node.input if i in inits))
        graph = helper.make_graph(nodes, f"{model.graph.name}/{sg}", [vinfo(i) for i in ins], [vinfo(o) for o in outs],
                                  [inits[n] for n in used])
        piece = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="waferline-partition")
        piece.ir_version = model.ir_version
        pieces.append((sg, piece))
    return pieces


def _session(model: onnx.ModelProto, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run_fused(model: onnx.ModelProto, feeds: dict[str, np.ndarray], threads: int = 1) -> dict[str, np.ndarray]:
    sess = _session(model, threads)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def run_partitioned(model: onnx.ModelProto, feeds: dict[str, np.ndarray], threads: int = 1) -> dict[str, np.ndarray]:
    """Run the tile subgraphs one after another, passing tensors by name; returns every graph output."""
    env = dict(feeds)
    for _, piece in split_model(model):
        sess = _session(piece, threads)
        names = [o.name for o in sess.get_outputs()]
        args = {i.name: env[i.name] for i in sess.get_inputs()}
        env.update(zip(names, sess.run(names, args)))
    return {o.name: env[o.name] for o in model.graph.output}


def decoder_feeds(model: onnx.ModelProto, ids: list[int], max_ctx: int) -> dict[str, np.ndarray]:
    """Feeds for one prefill of `ids` from an empty KV cache (the builder's decoder I/O convention)."""
    feeds = {
        "input_ids": np.array([ids], np.int64),
        "seqlens_k": np.array([len(ids) - 1], np.int32),
        "total_sequence_length": np.array(len(ids), np.int32),
        "last_logits": np.array([len(ids)], np.int64),
    }
    for v in model.graph.input:
        if v.name.startswith("past_key_values."):
            dims = [d.dim_value for d in v.type.tensor_type.shape.dim]
            feeds[v.name] = np.zeros([dims[0], dims[1], max_ctx, dims[3]], np.float32)
    return {k: v for k, v in feeds.items() if k in {i.name for i in model.graph.input}}


def check_bundle(bundle_dir: str | Path, ids: list[int] | None = None, max_ctx: int = 64) -> float:
    """Max |logits difference| between the fused model.onnx of a bundle and its chained tile subgraphs."""
    model = onnx.load(str(Path(bundle_dir) / "model.onnx"))
    ids = ids or [1, 2, 3, 4, 5, 6, 7, 8]
    feeds = decoder_feeds(model, ids, max_ctx)
    fused = run_fused(model, feeds)["logits"]
    cut = run_partitioned(model, feeds)["logits"]
    return float(np.max(np.abs(fused - cut)))
