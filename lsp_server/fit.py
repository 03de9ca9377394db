"""The loaded model's limits, enforced on the LSP side.

Settings are validated against fixed ranges (maxContext up to 32k), but a model may hold far fewer tokens, and a
bundle.json may not describe its model.onnx at all. Both used to load fine and then fail every completion, so here a
bundle is checked against its graph before it loads, its context is clamped to what the decoder really holds, and
each request is cut to fit (token budgets, and the path shown in the `<file_sep>` header).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from runtime.errors import ModelError
from runtime.header import CUT_MARK, header_path, header_repo

if TYPE_CHECKING:
    from lsp_server.settings import Settings
    from runtime.complete import (
        CompletionRequest,
        CompletionService,
        RemoteCompletionService,
    )

HEADER_SHARE = 8  # the `<repo_name>NAME<file_sep>PATH` header gets at most 1/8 of the context
FIXED_INPUTS = ("input_ids", "seqlens_k", "total_sequence_length", "last_logits")


def _dims(value) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def check_graph(bundle: Path) -> None:
    """Raise ModelError when bundle.json disagrees with model.onnx (names, layer count, KV head dims, vocabulary).

    Reads the graph without its weights. An unreadable model.onnx passes: the decoder's own load error says why."""
    import onnx

    from runtime.bundle import read_meta

    meta = read_meta(bundle)
    try:
        graph = onnx.load(str(bundle / "model.onnx"), load_external_data=False).graph
    except Exception:  # noqa: BLE001 - onnx raises protobuf's DecodeError and friends
        return
    inputs = {v.name: _dims(v) for v in graph.input}
    outputs = {v.name: _dims(v) for v in graph.output}
    layers = sum(bool(re.fullmatch(r"past_key_values\.\d+\.key", n)) for n in inputs)
    problems: list[str] = []
    if layers != meta.n_layers:
        problems.append(f"the graph has {layers} layers, bundle.json says n_layers={meta.n_layers}")
    kv = [f"{i}.{k}" for i in range(meta.n_layers) for k in ("key", "value")]
    for what, got, want in (
        ("inputs", inputs, {*FIXED_INPUTS, *(f"past_key_values.{s}" for s in kv)}),
        ("outputs", outputs, {"logits", *(f"present.{s}" for s in kv)}),
    ):
        if not problems and set(got) != want:
            missing, extra = sorted(want - set(got)), sorted(set(got) - want)
            problems.append(f"graph {what} differ (missing {missing[:3]}, unexpected {extra[:3]})")
    for name, shape in {**inputs, **outputs}.items():
        if name.startswith(("past_key_values.", "present.")) and len(shape) == 4:
            if shape[1] not in (None, meta.n_kv_heads) or shape[3] not in (None, meta.head_dim):
                problems.append(f"{name} has {shape[1]} KV heads of {shape[3]}, bundle.json says "
                                f"n_kv_heads={meta.n_kv_heads}, head_dim={meta.head_dim}")
                break
    vocab = (outputs.get("logits") or [None])[-1]
    if vocab not in (None, meta.vocab_size):
        problems.append(f"logits have {vocab} entries, bundle.json says vocab_size={meta.vocab_size}")
    if problems:
        raise ModelError(f"{bundle / 'bundle.json'} does not match model.onnx: {'; '.join(problems)}")


def load_service(model: str, *, threads: int, max_context: int, kv_slots: int = 4) -> CompletionService:
    """Resolve, check and load a model, its context clamped to what the decoder holds (bundle context_length)."""
    from runtime.complete import CompletionService
    from runtime.models import resolve_model

    path = resolve_model(model)
    check_graph(path)
    svc = CompletionService.load(str(path), threads=threads, max_context=max_context, kv_slots=kv_slots)
    svc.max_context = max(1, min(int(svc.max_context), int(svc.decoder.max_context), int(svc.meta.context_length)))
    return svc


def load_remote_service(s: Settings) -> RemoteCompletionService:
    """The remote backend the settings describe, probed (bounded by its timeouts; a server that is down is not an
    error here: requests probe again until it answers). Raises RemoteError for settings that cannot work."""
    from runtime.complete import RemoteCompletionService
    from runtime.remote import RemoteBackend, RemoteConfig

    timeout_s = s.remote_timeout_ms / 1000
    config = RemoteConfig(dialect=s.backend, endpoint=s.endpoint, model=s.remote_model or None,  # type: ignore[arg-type]
                          fim_template=s.fim_template or None, api_key_env=s.api_key_env or None,
                          connect_timeout=min(3.0, timeout_s), read_timeout=timeout_s, verify_tls=s.verify_tls)
    svc = RemoteCompletionService(RemoteBackend(config), max_context=s.max_context)
    svc.probe()
    return svc


def fit_request(svc: CompletionService | RemoteCompletionService, req: CompletionRequest) -> CompletionRequest:
    """`req` cut to the loaded model: token budgets within its context, the header within 1/HEADER_SHARE of it."""
    ctx = int(svc.max_context)
    suffix = min(req.max_suffix_tokens, ctx // 8)
    new = max(1, min(req.max_new_tokens, ctx // 2))
    prompt = max(1, min(req.max_prompt_tokens, ctx - new - suffix - 16))
    repo = None if req.repo_name is None else header_repo(req.repo_name)
    path = None if req.path is None else header_path(req.path)
    budget = max(ctx // HEADER_SHARE, 4)
    while path and svc.count_tokens(f"{header_repo(repo)}{path}\n") + 2 > budget:
        # half the tail each time; a path this short no longer gets shorter by cutting: no header at all then
        path = header_path(path, len(path) // 2) if len(path) > 2 * len(CUT_MARK) else None
    return msgspec.structs.replace(req, max_suffix_tokens=suffix, max_new_tokens=new, max_prompt_tokens=prompt,
                                   repo_name=repo, path=path)
