"""Workload: the decoder's ONNX graph cut into tile subgraphs, and what each one costs to hold and to run.

Subgraphs follow the builder's node names (runtime/builder.py):
    embed          /model/embed_tokens/...
    layers.{i}.attn  /model/layers.{i}/attn/...   input norm, qkv, GroupQueryAttention, o_proj
    layers.{i}.mlp   /model/layers.{i}/mlp/...    post-attention norm, gate_up, SiLU, down_proj
    head           /model/norm/... + /lm_head/... final norm, LM head

Two paths give the same numbers (tests/test_wafer_workload.py checks they agree):
    workload_from_graph(onnx.ModelProto)  the graph served (a bundle's model.onnx) or the builder's shape-only graph
    workload_from_arch(ArchSpec)          the same counts from the architecture alone (no ONNX needed)
Big public models go ArchSpec -> build_graph(spec) (shape-only) -> workload_from_graph, as the served model does.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import msgspec
import onnx
from onnx import numpy_helper

from runtime.arch import ArchSpec
from runtime.checks import ARCH_LIMITS, MAX_LAYERS, check_arch, float_problem, read_text_file

from .errors import WaferError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ARCH_PRESETS_FILE = Path(__file__).parent / "presets" / "archs.toml"
ARCH_FILE_LIMIT = 1 << 20  # bytes; an ArchSpec is a dozen numbers
ARCH_ALIASES = {"llama3.1-8b": "llama3-8b", "llama3-70b": "llama3.1-70b"}

# Bytes per weight on the wafer, packed. int8/int4 keep one bf16 scale per block of 32 weights (as MatMulNBits does);
# fp8 (e4m3) keeps one scale per output channel (a few bytes per row of thousands: not counted).
QUANT_BLOCK = 32
WEIGHT_BYTES = {"bf16": 2.0, "fp8": 1.0, "int8": 1.0 + 2.0 / QUANT_BLOCK, "int4": 0.5 + 2.0 / QUANT_BLOCK}
DTYPES = tuple(WEIGHT_BYTES)
ACT_BYTES = 2  # activations, norms, biases and the KV cache stay 16-bit whatever the weight dtype
TOKEN_ID_BYTES = 4  # int32 token ids on the wafer and the host link

CONTROL_INPUTS = ("seqlens_k", "total_sequence_length", "last_logits")


class MatMulShape(msgspec.Struct):
    name: str  # node scope, e.g. /model/layers.3/attn/qkv
    k: int
    n: int
    experts: int = 0  # > 0: one expert's [K, N], stacked over `experts` (a MoE layer's gate_up or down_proj)
    active: int = 0  # experts of the stack that run per token

    @property
    def params(self) -> int:
        return self.k * self.n * max(1, self.experts)

    @property
    def active_params(self) -> int:
        return self.k * self.n * (self.active if self.experts else 1)


class Tensor(msgspec.Struct):
    """A tensor crossing a subgraph boundary; bytes per token at 16-bit (ids: 4 bytes; control scalars: 0)."""

    name: str
    kind: str  # "activation" | "ids" | "kv" (cache state, per token of context) | "control"
    elems_per_token: int
    bytes_per_token: int


class MlpParts(msgspec.Struct):
    gate_up: list[MatMulShape]  # dense: the MLP's own, or a MoE layer's shared experts ([] when it has none)
    down: list[MatMulShape]
    router: MatMulShape | None = None
    experts_gate_up: MatMulShape | None = None  # one expert's shape; .experts stacked, .active run per token
    experts_down: MatMulShape | None = None


class Subgraph(msgspec.Struct):
    name: str  # embed | layers.{i}.attn | layers.{i}.mlp | head
    kind: str  # embed | attn | mlp | head
    layer: int  # -1 for embed / head
    ops: dict[str, int]  # op_type -> count
    nodes: list[str]  # node names (the executable partition cuts on these)
    matmuls: list[MatMulShape]
    weight_params: int  # matmul weights + embedding table: stored at the chosen dtype
    vector_params: int  # norm gammas, biases: stored at 16 bit
    weight_bytes: dict[str, int]  # dtype -> bytes (weights + vectors)
    macs_per_token: int  # projections only
    attn_macs_per_token_per_ctx: int  # QK^T and PV, per position of context
    kv_bytes_per_token: int  # K and V per token of context, 16-bit
    n_heads: int = 0
    n_kv_heads: int = 0
    head_dim: int = 0
    gather_rows: int = 0  # embedding table [rows, cols]
    gather_cols: int = 0
    inputs: list[Tensor] = []
    outputs: list[Tensor] = []
    kv_users: int = 1  # KV caches held resident: one per concurrent user (Workload.for_users)
    work_tokens: int = 1  # tokens whose working buffers the placement reserves (a speculative verify: k + 1)

    def mlp_parts(self) -> "MlpParts":
        """An mlp subgraph's projections by role (a mixture of experts has a router and expert stacks)."""
        router = next((m for m in self.matmuls if m.name.endswith("/router")), None)
        experts = [m for m in self.matmuls if m.experts]
        dense = [m for m in self.matmuls if not m.experts and m is not router]
        return MlpParts(
            gate_up=[m for m in dense if "down" not in m.name], down=[m for m in dense if "down" in m.name],
            router=router, experts_gate_up=next((m for m in experts if "down" not in m.name), None),
            experts_down=next((m for m in experts if "down" in m.name), None),
        )

    def kv_bytes(self, context: int) -> int:
        """K and V resident at `context` positions, for every user it serves."""
        return self.kv_bytes_per_token * context * self.kv_users

    @property
    def active_weight_params(self) -> int:
        """Weights a token reads: all of them, less the experts its router did not choose."""
        return self.weight_params - sum(m.params - m.active_params for m in self.matmuls)


class Workload(msgspec.Struct):
    name: str
    source: str  # "graph" | "arch"
    n_layers: int
    d_model: int
    vocab_size: int
    subgraphs: list[Subgraph]

    def by_kind(self, kind: str) -> list[Subgraph]:
        return [s for s in self.subgraphs if s.kind == kind]

    def weight_bytes(self, dtype: str) -> int:
        return sum(s.weight_bytes[dtype] for s in self.subgraphs)

    def params(self) -> tuple[int, int]:
        """(active, total) parameters: what one token multiplies by, and all the wafer holds (norms and biases in)."""
        vectors = sum(s.vector_params for s in self.subgraphs)
        return (sum(s.active_weight_params for s in self.subgraphs) + vectors,
                sum(s.weight_params for s in self.subgraphs) + vectors)

    def kv_bytes(self, context: int) -> int:
        return sum(s.kv_bytes(context) for s in self.subgraphs)

    def for_users(self, users: int) -> "Workload":
        """The same model serving `users` concurrent users: each has its own KV cache resident beside the weights."""
        subs = [msgspec.structs.replace(s, kv_users=users) if s.kind == "attn" else s for s in self.subgraphs]
        return msgspec.structs.replace(self, subgraphs=subs)

    def for_verify(self, tokens: int) -> "Workload":
        """The same model placed with room for a speculative verify of `tokens` positions in one pass: every
        subgraph reserves that many tokens' partial sums and inputs (a vendor's plan for speculation would)."""
        return msgspec.structs.replace(self, subgraphs=[msgspec.structs.replace(s, work_tokens=tokens)
                                                        for s in self.subgraphs])

    def active_weight_bytes(self, dtype: str) -> int:
        """Bytes of weights one token reads (a mixture of experts reads only its chosen experts)."""
        return sum(s.weight_bytes[dtype] - round((s.weight_params - s.active_weight_params) * WEIGHT_BYTES[dtype])
                   for s in self.subgraphs)


def waferllm_decode_subgraph(s: Subgraph) -> Subgraph:
    """A subgraph as WaferLLM's decode kernel runs it (MeshInfra/WaferLLM Decode/WSE-2: model_config/*.json set
    n_heads = n_kv_heads = 1 and head_dim = dim for every model; decode.csl holds Q, K and V weights of dim x dim each,
    a K and a V cache dim wide, no QKV bias, and runs separate vecmat loops for q, k, v and for up, gate, each set
    reduced by one fused allreduce). So there is no grouped-query attention: K/V are d_model wide whatever the model's
    KV heads, and the score q.K is one dot product of length d_model reduced across the whole x axis. A dense MLP's
    gate_up becomes its gate and up projections; a mixture of experts is left as it is."""
    if s.kind == "attn" and s.n_heads:
        d = s.matmuls[0].k
        scope = s.matmuls[0].name.rsplit("/", 1)[0]
        mm = [MatMulShape(f"{scope}/{p}", d, d) for p in ("q_proj", "k_proj", "v_proj", "o_proj")]
        wp, vec = sum(m.params for m in mm), d  # the norm's gamma; decode.csl adds no QKV bias
        ops = {k: v for k, v in s.ops.items() if k != "Add"}
        return msgspec.structs.replace(
            s, ops=ops, matmuls=mm, weight_params=wp, vector_params=vec, weight_bytes=_weight_bytes(wp, vec),
            macs_per_token=wp,
            attn_macs_per_token_per_ctx=2 * d, kv_bytes_per_token=2 * d * ACT_BYTES, n_heads=1, n_kv_heads=1, head_dim=d)
    if s.kind == "mlp" and s.mlp_parts().router is None:
        parts = s.mlp_parts()
        if len(parts.gate_up) == 1:
            gu = parts.gate_up[0]
            scope = gu.name.rsplit("/", 1)[0]
            mm = [MatMulShape(f"{scope}/gate_proj", gu.k, gu.n // 2), MatMulShape(f"{scope}/up_proj", gu.k, gu.n // 2)]
            return msgspec.structs.replace(s, matmuls=mm + parts.down)
    return s


# ------------------------------------------------------------------------------------------------ architectures
def _arch_table() -> dict:
    with open(ARCH_PRESETS_FILE, "rb") as f:
        return tomllib.load(f)


def arch_names() -> list[str]:
    return sorted(_arch_table()) + sorted(ARCH_ALIASES)


def _spec(fields: dict, origin: str) -> ArchSpec:
    """An ArchSpec from user fields, shapes range-checked (runtime/checks.py) before the graph is sized by them."""
    known = set(ArchSpec.__struct_fields__)
    unknown = sorted(set(fields) - known)
    if unknown:
        raise WaferError(f"architecture {origin}: unknown field '{unknown[0]}' (known: {', '.join(sorted(known))})")
    ints = {}
    for f in ARCH_LIMITS:  # lax like msgspec below ("4" is 4), but checked before ArchSpec divides by n_heads
        if f in fields:
            try:
                ints[f] = msgspec.convert(fields[f], int, strict=False)
            except msgspec.ValidationError:
                raise WaferError(f"architecture {origin}: {f} must be an integer (got {fields[f]!r:.40})") from None
    check_arch(ints, f"architecture {origin}", WaferError)
    try:
        spec = msgspec.convert(fields, ArchSpec, strict=False)
    except msgspec.ValidationError as e:
        raise WaferError(f"architecture {origin}: {e}") from None
    if spec.head_dim == 0:
        raise WaferError(f"architecture {origin}: d_model {spec.d_model} is smaller than n_heads {spec.n_heads}")
    for f, hi in (("rope_theta", 1e12), ("rms_eps", 1.0)):
        if problem := float_problem(getattr(spec, f), 0.0, hi, lo_open=True):
            raise WaferError(f"architecture {origin}: {f} {problem}")
    return spec


def load_arch(name: str) -> ArchSpec:
    """A preset by name (see presets/archs.toml)."""
    table = _arch_table()
    key = ARCH_ALIASES.get(name, name)
    if key not in table:
        raise WaferError(f"unknown architecture '{name}' (known: {', '.join(arch_names())}; or --arch-file)")
    return _spec({"name": name, **table[key]}, name)


def load_arch_file(path: str | Path) -> ArchSpec:
    """A JSON or TOML file with ArchSpec's fields (name defaults to the file's stem)."""
    p = Path(path)
    text = read_text_file(p, "architecture file", ARCH_FILE_LIMIT, WaferError)
    try:
        data = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (ValueError, RecursionError) as e:  # RecursionError: nesting deeper than the parser's stack
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise WaferError(f"architecture file {p.name} is not valid {'TOML' if p.suffix == '.toml' else 'JSON'}: {reason}") from None
    if not isinstance(data, dict):
        raise WaferError(f"architecture file {p.name}: expected a table of ArchSpec fields")
    data.setdefault("name", p.stem)
    return _spec(data, p.name)


# ------------------------------------------------------------------------------------------------ helpers
def _weight_bytes(weight_params: int, vector_params: int) -> dict[str, int]:
    return {dt: int(round(weight_params * b)) + vector_params * ACT_BYTES for dt, b in WEIGHT_BYTES.items()}


def _act(name: str, elems: int) -> Tensor:
    return Tensor(name, "activation", elems, elems * ACT_BYTES)


_LAYER_RE = re.compile(r"^/model/layers\.(\d+)/(attn|mlp)/")


def subgraph_of(node_name: str) -> str | None:
    """Which tile subgraph a node belongs to, by its name; None if the name follows no known prefix."""
    m = _LAYER_RE.match(node_name)
    if m:
        return f"layers.{m.group(1)}.{m.group(2)}"
    if node_name.startswith("/model/embed_tokens/"):
        return "embed"
    if node_name.startswith(("/model/norm/", "/lm_head/")):
        return "head"
    return None


def subgraph_order(n_layers: int) -> list[str]:
    names = ["embed"]
    for i in range(n_layers):
        names += [f"layers.{i}.attn", f"layers.{i}.mlp"]
    return names + ["head"]


# ------------------------------------------------------------------------------------------------ graph path
def partition_nodes(model) -> dict[str, list]:
    """node lists per subgraph, in graph order; a node outside the naming scheme is an error."""
    parts: dict[str, list] = {}
    for node in model.graph.node:
        sg = subgraph_of(node.name)
        if sg is None:
            raise WaferError(
                f"graph node '{node.name}' ({node.op_type}) is outside the /model/embed_tokens, /model/layers.N/attn|mlp, "
                "/model/norm, /lm_head naming the partitioner expects"
            )
        parts.setdefault(sg, []).append(node)
    return parts


def cut_tensors(parts: dict[str, list], initializers, graph_outputs) -> dict[str, tuple[list[str], list[str]]]:
    """Per subgraph, the tensors crossing its boundary, in node order: inputs it reads but no node of it produced
    (initializers excluded: they stay with their subgraph) and outputs read by another subgraph or by the caller.
    The one cut rule: the simulator counts these as fabric traffic, the partitioner makes them the pieces' I/O."""
    producer: dict[str, str] = {}
    consumers: dict[str, set] = {}
    for sg, nodes in parts.items():
        for node in nodes:
            for o in node.output:
                if o:
                    producer[o] = sg
            for i in node.input:
                if i:
                    consumers.setdefault(i, set()).add(sg)
    cuts = {}
    for sg, nodes in parts.items():
        ins: dict[str, None] = {}
        outs: dict[str, None] = {}
        for node in nodes:
            for i in node.input:
                if i and i not in initializers and producer.get(i) != sg:
                    ins[i] = None
            for o in node.output:
                if o and (o in graph_outputs or consumers.get(o, set()) - {sg}):
                    outs[o] = None
        cuts[sg] = (list(ins), list(outs))
    return cuts


def _split_name(nodes: list, producer_node) -> str:
    """Name of the node in `nodes` that splits `producer_node`'s output ('' if none): the block-sum split."""
    scope = producer_node.name.rsplit("/", 1)[0]
    for node in nodes:
        if node.op_type == "Split" and node.input and node.input[0] == producer_node.output[0] and node.name.startswith(scope + "/"):
            return node.name
    return ""


def workload_from_graph(model, name: str | None = None) -> Workload:
    """Partition an ONNX decoder (served or shape-only) into tile subgraphs and count what each holds and does."""
    g = model.graph
    inits = {t.name: list(t.dims) for t in g.initializer}
    init_protos = {t.name: t for t in g.initializer}
    # MatMulNBits may carry K/block extra "block-sum" columns split off right after it (builder.linear): N excludes them
    split_first: dict[str, int] = {}
    for node in g.node:
        if node.op_type == "Split" and len(node.input) > 1 and node.input[1] in init_protos:
            t = init_protos[node.input[1]]
            if t.data_location != onnx.TensorProto.EXTERNAL and t.dims == [2]:
                split_first[node.input[0]] = int(numpy_helper.to_array(t)[0])
    graph_inputs = {v.name: v for v in g.input}
    graph_outputs = {v.name for v in g.output}
    parts = partition_nodes(model)
    n_layers = 1 + max((int(k.split(".")[1]) for k in parts if k.startswith("layers.")), default=-1)
    if n_layers > MAX_LAYERS:  # before listing the subgraphs a damaged layer index would ask for
        raise WaferError(f"graph has a node of layer {n_layers - 1}; at most {MAX_LAYERS} layers are supported")
    missing = [k for k in subgraph_order(n_layers) if k not in parts]
    if missing:
        raise WaferError(f"graph has no nodes for subgraph '{missing[0]}' (expected embed, attn/mlp per layer, head)")

    cuts = cut_tensors(parts, inits, graph_outputs)

    # model dims: embedding table, GQA attributes, the KV cache inputs
    d_model = vocab = 0
    n_heads = n_kv = head_dim = 0
    for node in parts["embed"]:
        if "/correction/" in node.name:
            continue
        if node.op_type == "Gather" and node.input[0] in inits:
            vocab, d_model = inits[node.input[0]]
        elif node.op_type == "GatherBlockQuantized":
            attrs = {a.name: a for a in node.attribute}
            vocab = inits[node.input[2]][0]
            d_model = inits[node.input[2]][1] * attrs["block_size"].i
    for node in g.node:
        if node.op_type == "GroupQueryAttention":
            attrs = {a.name: a.i for a in node.attribute}
            n_heads, n_kv = attrs["num_heads"], attrs["kv_num_heads"]
            break
    kv_in = graph_inputs.get("past_key_values.0.key")
    if kv_in is not None:
        head_dim = kv_in.type.tensor_type.shape.dim[3].dim_value
    if not (d_model and vocab and n_heads and n_kv and head_dim):
        raise WaferError("graph lacks the embedding table, GroupQueryAttention or past_key_values inputs the partitioner reads")

    def elems(tensor: str) -> Tensor:
        if tensor == "input_ids":
            return Tensor(tensor, "ids", 1, TOKEN_ID_BYTES)
        if tensor in CONTROL_INPUTS:
            return Tensor(tensor, "control", 0, 0)
        if tensor.startswith(("past_key_values.", "present.")):
            return Tensor(tensor, "kv", n_kv * head_dim, n_kv * head_dim * ACT_BYTES)
        if tensor == "logits":
            return _act(tensor, vocab)
        return _act(tensor, d_model)  # every other tensor crossing a cut is a [1, S, d_model] hidden state

    subgraphs = []
    for sg in subgraph_order(n_layers):
        nodes = parts[sg]
        kind = sg.split(".")[-1] if sg.startswith("layers.") else sg
        layer = int(sg.split(".")[1]) if sg.startswith("layers.") else -1
        ops: dict[str, int] = {}
        matmuls, weight_params, vector_params = [], 0, 0
        gather_rows = gather_cols = 0
        seen_inits: set[str] = set()
        attn_ctx = kv_bytes = 0
        for node in nodes:
            ops[node.op_type] = ops.get(node.op_type, 0) + 1
            scope = node.name.rsplit("/", 1)[0]
            quant_aux = "/blocksum" in scope or "/correction" in scope
            if node.op_type == "MatMulNBits":
                attrs = {a.name: a.i for a in node.attribute}
                n_out = split_first.get(node.output[0], attrs["N"]) if "/Split" in _split_name(parts[sg], node) else attrs["N"]
                matmuls.append(MatMulShape(scope, attrs["K"], n_out))
                weight_params += attrs["K"] * n_out
            elif node.op_type == "MoE":  # experts stacked [E, D, F] (gate fc1, up fc3) and [E, F, D] (down fc2)
                e, dm, ff = inits[node.input[2]]
                top = {a.name: a.i for a in node.attribute}["k"]
                gu = 2 * ff if len(node.input) > 6 and node.input[6] else ff
                matmuls += [MatMulShape(f"{scope}/gate_up", dm, gu, e, top), MatMulShape(f"{scope}/down_proj", ff, dm, e, top)]
                weight_params += e * (dm * gu + ff * dm)
            elif (node.op_type in ("MatMul", "DynamicQuantizeMatMul")  # float weights, or the int8 layout's [K, N] codes
                  and not quant_aux and node.input[1] in inits and len(inits[node.input[1]]) == 2):
                k, n = inits[node.input[1]]
                matmuls.append(MatMulShape(scope, k, n))
                weight_params += k * n
                bias = node.input[4] if node.op_type == "DynamicQuantizeMatMul" and len(node.input) > 4 else ""
                if bias in inits:  # the int8 layout fuses the QKV bias: costed as the float graph's bias Add
                    vector_params += inits[bias][0]
                    ops["Add"] = ops.get("Add", 0) + 1
            elif node.op_type in ("Gather", "GatherBlockQuantized") and sg == "embed" and not quant_aux:
                # one table, however many gathers read it (the int8 layout gathers its high and low 4-bit halves)
                if not gather_rows:
                    weight_params += vocab * d_model
                gather_rows, gather_cols = vocab, d_model
            elif node.op_type in ("SimplifiedLayerNormalization", "SkipSimplifiedLayerNormalization"):
                gamma = node.input[1] if node.op_type == "SimplifiedLayerNormalization" else node.input[2]
                if gamma not in seen_inits:
                    vector_params += inits[gamma][0]
                    seen_inits.add(gamma)
            elif node.op_type == "Add" and "/bias/" in node.name and node.input[1] in inits:
                vector_params += inits[node.input[1]][0]
            elif node.op_type == "GroupQueryAttention":
                attn_ctx += 2 * n_heads * head_dim
                kv_bytes += 2 * n_kv * head_dim * ACT_BYTES
        ins, outs = cuts[sg]
        inputs, outputs = [elems(i) for i in ins], [elems(o) for o in outs]
        subgraphs.append(Subgraph(
            name=sg, kind=kind, layer=layer, ops=ops, nodes=[n.name for n in nodes], matmuls=matmuls,
            weight_params=weight_params, vector_params=vector_params,
            weight_bytes=_weight_bytes(weight_params, vector_params),
            macs_per_token=sum(m.active_params for m in matmuls), attn_macs_per_token_per_ctx=attn_ctx,
            kv_bytes_per_token=kv_bytes,
            n_heads=n_heads if kind == "attn" else 0, n_kv_heads=n_kv if kind == "attn" else 0,
            head_dim=head_dim if kind == "attn" else 0, gather_rows=gather_rows, gather_cols=gather_cols,
            inputs=inputs, outputs=outputs,
        ))
    model_name = name
    if model_name is None:
        meta = {p.key: p.value for p in model.metadata_props}
        model_name = json.loads(meta["arch_spec"]).get("name", g.name) if "arch_spec" in meta else g.name
    return Workload(model_name, "graph", n_layers, d_model, vocab, subgraphs)


# ------------------------------------------------------------------------------------------------ arch path
def workload_from_arch(spec: ArchSpec) -> Workload:
    """The same subgraphs counted from the architecture alone (mirrors runtime/builder.py's graph, float weights)."""
    d, hd, nh, nkv, ff, vocab = spec.d_model, spec.head_dim, spec.n_heads, spec.n_kv_heads, spec.d_ff, spec.vocab_size
    q_rows, kv_rows = nh * hd, nkv * hd
    subgraphs = [Subgraph(
        name="embed", kind="embed", layer=-1, ops={"Gather": 1}, nodes=["/model/embed_tokens/Gather"], matmuls=[],
        weight_params=vocab * d, vector_params=0, weight_bytes=_weight_bytes(vocab * d, 0), macs_per_token=0,
        attn_macs_per_token_per_ctx=0, kv_bytes_per_token=0, gather_rows=vocab, gather_cols=d,
        inputs=[Tensor("input_ids", "ids", 1, TOKEN_ID_BYTES)], outputs=[_act("/model/embed_tokens/Gather/output_0", d)],
    )]
    pending = "/model/embed_tokens/Gather/output_0"
    residual = None
    for i in range(spec.n_layers):
        a, m = f"/model/layers.{i}/attn", f"/model/layers.{i}/mlp"
        qkv, o = MatMulShape(f"{a}/qkv", d, q_rows + 2 * kv_rows), MatMulShape(f"{a}/o_proj", q_rows, d)
        norm_op = "SimplifiedLayerNormalization" if i == 0 else "SkipSimplifiedLayerNormalization"
        ops = {norm_op: 1, "MatMul": 2, "GroupQueryAttention": 1}
        vec = d + (q_rows + 2 * kv_rows if spec.qkv_bias else 0)
        if spec.qkv_bias:
            ops["Add"] = 1
        wp = qkv.k * qkv.n + o.k * o.n
        attn_in = [_act(pending, d)] + ([_act(residual, d)] if residual else [])
        attn_in += [Tensor(f"past_key_values.{i}.key", "kv", kv_rows, kv_rows * ACT_BYTES),
                    Tensor(f"past_key_values.{i}.value", "kv", kv_rows, kv_rows * ACT_BYTES),
                    Tensor("seqlens_k", "control", 0, 0), Tensor("total_sequence_length", "control", 0, 0)]
        new_res = pending if i == 0 else f"{a}/input_norm/residual"
        attn_out = [Tensor(f"present.{i}.key", "kv", kv_rows, kv_rows * ACT_BYTES),
                    Tensor(f"present.{i}.value", "kv", kv_rows, kv_rows * ACT_BYTES), _act(f"{a}/o_proj/MatMul/output_0", d)]
        if i > 0:
            attn_out.insert(0, _act(new_res, d))
        subgraphs.append(Subgraph(
            name=f"layers.{i}.attn", kind="attn", layer=i, ops=ops, nodes=[], matmuls=[qkv, o], weight_params=wp,
            vector_params=vec, weight_bytes=_weight_bytes(wp, vec), macs_per_token=wp,
            attn_macs_per_token_per_ctx=2 * nh * hd, kv_bytes_per_token=2 * kv_rows * ACT_BYTES,
            n_heads=nh, n_kv_heads=nkv, head_dim=hd, inputs=attn_in, outputs=attn_out,
        ))
        mlp_in = [_act(f"{a}/o_proj/MatMul/output_0", d), _act(new_res, d)]
        residual = f"{m}/post_attn_norm/residual"
        ops = {"SkipSimplifiedLayerNormalization": 1}
        if spec.is_moe_layer(i):
            e, fe, shared = spec.n_experts, spec.d_ff_expert, spec.n_shared_experts * spec.d_ff_expert
            matmuls = [MatMulShape(f"{m}/router", d, e), MatMulShape(f"{m}/experts/gate_up", d, 2 * fe, e, spec.experts_per_token),
                       MatMulShape(f"{m}/experts/down_proj", fe, d, e, spec.experts_per_token)]
            ops.update({"MatMul": 1, "MoE": 1})
            pending = f"{m}/experts/MoE/output_0"
            if shared:
                matmuls += [MatMulShape(f"{m}/shared/gate_up", d, 2 * shared), MatMulShape(f"{m}/shared/down_proj", shared, d)]
                ops.update({"MatMul": 3, "Split": 1, "Sigmoid": 1, "Mul": 2, "Add": 1})
                pending = f"{m}/experts/Add/output_0"
        else:
            matmuls = [MatMulShape(f"{m}/gate_up", d, 2 * ff), MatMulShape(f"{m}/down_proj", ff, d)]
            ops.update({"MatMul": 2, "Split": 1, "Sigmoid": 1, "Mul": 2})
            pending = f"{m}/down_proj/MatMul/output_0"
        wp = sum(x.params for x in matmuls)
        subgraphs.append(Subgraph(
            name=f"layers.{i}.mlp", kind="mlp", layer=i, ops=ops,
            nodes=[], matmuls=matmuls, weight_params=wp, vector_params=d, weight_bytes=_weight_bytes(wp, d),
            macs_per_token=sum(x.active_params for x in matmuls), attn_macs_per_token_per_ctx=0, kv_bytes_per_token=0,
            inputs=mlp_in, outputs=[_act(residual, d), _act(pending, d)],
        ))
    head = MatMulShape("/lm_head", d, vocab)
    subgraphs.append(Subgraph(
        name="head", kind="head", layer=-1,
        ops={"SkipSimplifiedLayerNormalization": 1, "Neg": 1, "Slice": 1, "MatMul": 1, "Identity": 1}, nodes=[],
        matmuls=[head], weight_params=d * vocab, vector_params=d, weight_bytes=_weight_bytes(d * vocab, d),
        macs_per_token=d * vocab, attn_macs_per_token_per_ctx=0, kv_bytes_per_token=0,
        inputs=[_act(pending, d), _act(residual, d), Tensor("last_logits", "control", 0, 0)], outputs=[_act("logits", vocab)],
    ))
    return Workload(spec.name, "arch", spec.n_layers, d, vocab, subgraphs)


def workload_for_arch(spec: ArchSpec) -> Workload:
    """The graph path for an architecture: the builder's shape-only graph, partitioned (what --arch uses)."""
    from runtime.builder import build_graph

    return workload_from_graph(build_graph(spec), name=spec.name)
