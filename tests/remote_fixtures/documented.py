"""Answers of servers we cannot run here, WRITTEN FROM THEIR DOCUMENTATION AND SOURCE, not recorded.

- llama.cpp server (ggml-org/llama.cpp tools/server/README.md): GET /health `{"status": "ok"}` (503 while loading);
  GET /props (`model_path`, `total_slots`...); POST /infill streams /completion events: `content` and `stop` per token,
  the last event `stop: true` with `stop_type`, `tokens_evaluated`, `tokens_cached` and `timings` (`prompt_n`,
  `prompt_ms`, `cache_n`...); no `[DONE]`; a model without FIM tokens gets 501 "Infill is not supported by this
  model: ..." (server-context.cpp); errors are `{"error": {"code", "message", "type"}}`.
- vLLM (vllm-project/vllm, entrypoints/openai): POST /v1/completions with `suffix` answers 400 "suffix is not
  currently supported" as `ErrorResponse {"error": {"message", "type": "BadRequestError", "param", "code": 400}}`;
  streams OpenAI `text_completion` chunks with `finish_reason`/`stop_reason`, a `usage` chunk with empty `choices`
  when `stream_options.include_usage` (`prompt_tokens_details.cached_tokens` with prefix caching), then
  `data: [DONE]`; GET /v1/models lists cards with `owned_by: "vllm"`.
Token texts and counts below are made up; the shapes are the documented ones.
"""

from __future__ import annotations

import json

QWEN = "Qwen/Qwen2.5-Coder-7B"


def sse(*events: dict | str) -> bytes:
    return b"".join(b"data: " + (e if isinstance(e, str) else json.dumps(e)).encode() + b"\n\n" for e in events)


LLAMACPP_HEALTH = {"status": "ok"}
LLAMACPP_LOADING = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
LLAMACPP_PROPS = {"default_generation_settings": {"n_ctx": 4096}, "total_slots": 1,
                  "model_path": "/models/qwen2.5-coder-1.5b-q8_0.gguf", "build_info": "b5000-0000000"}
LLAMACPP_INFILL_EVAL_ONLY = {"index": 0, "content": "", "tokens": [], "id_slot": 0, "stop": True,
                             "tokens_predicted": 0, "tokens_evaluated": 3, "stop_type": "limit"}
LLAMACPP_NO_FIM = {"error": {"code": 501, "type": "not_supported_error",
                             "message": "Infill is not supported by this model: prefix token is missing. "}}


def llamacpp_infill_stream(pieces: list[str], cache_n: int = 40, prompt_n: int = 2) -> bytes:
    events: list[dict | str] = [{"index": 0, "content": p, "tokens": [100 + i], "stop": False, "id_slot": -1,
                                 "tokens_predicted": i + 1, "tokens_evaluated": cache_n + prompt_n}
                                for i, p in enumerate(pieces)]
    events.append({"index": 0, "content": "", "tokens": [], "id_slot": 0, "stop": True,
                   "model": "qwen2.5-coder-1.5b", "tokens_predicted": len(pieces),
                   "tokens_evaluated": cache_n + prompt_n, "stop_type": "eos", "stopping_word": "",
                   "tokens_cached": cache_n + prompt_n + len(pieces), "truncated": False,
                   "timings": {"cache_n": cache_n, "prompt_n": prompt_n, "prompt_ms": 3.1, "predicted_n": len(pieces),
                               "predicted_ms": 20.5}})
    return sse(*events)


VLLM_MODELS = {"object": "list", "data": [{"id": QWEN, "object": "model", "created": 1733000000, "owned_by": "vllm",
                                           "root": QWEN, "parent": None, "max_model_len": 32768, "permission": []}]}
VLLM_SUFFIX_400 = {"error": {"message": "suffix is not currently supported", "type": "BadRequestError",
                             "param": None, "code": 400}}


def vllm_stream(pieces: list[str], cached: int = 32, prompt: int = 41) -> bytes:
    def chunk(text: str, finish: str | None) -> dict:
        return {"id": "cmpl-0123", "object": "text_completion", "created": 1733000000, "model": QWEN,
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish,
                             "stop_reason": None}]}

    usage = {"id": "cmpl-0123", "object": "text_completion", "created": 1733000000, "model": QWEN, "choices": [],
             "usage": {"prompt_tokens": prompt, "total_tokens": prompt + len(pieces),
                       "completion_tokens": len(pieces), "prompt_tokens_details": {"cached_tokens": cached}}}
    return sse(*[chunk(p, None) for p in pieces], chunk("", "stop"), usage, "[DONE]")
