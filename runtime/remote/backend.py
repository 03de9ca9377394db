"""Remote completion backends: an existing inference server writes the completion, streamed and cancellable.

Three request dialects:
- "llamacpp": llama.cpp server's `/infill` (server-side FIM with its repo-level layout, `cache_prompt`);
- "openai": OpenAI-compatible `/v1/completions` with `prompt` + `suffix` (the server applies the FIM template);
- "openai-raw": `/v1/completions` with a raw prompt written from the model's FIM template (`runtime.remote.fim`), for
  servers without server-side FIM. vLLM answers `suffix` with 400 "suffix is not currently supported": the backend
  then switches to openai-raw for good and says why in `fallback_reason`.

llama-cpp-python's server (0.3.36) accepts `suffix` but its Llama._create_completion uses token id 0 for the FIM
prefix/suffix/middle tokens (`prefix_token_id: int = 0  # self._model.token_prefix() # TODO: Fix`) and prepends "☺"
to the suffix then drops two tokens. Observed on the real server with a Qwen-vocabulary GGUF: the `suffix` request
evaluated 17 prompt tokens, and its greedy answer equals the one for the token list [0] + prefix + [0] + (3-byte ☺
minus 2 tokens, i.e. a stray byte) + suffix + [0], i.e. `<|endoftext|>` three times and no FIM token at all; the
raw `<|fim_prefix|>...<|fim_middle|>` prompt evaluates 16 tokens and answers differently. So against that server
the openai dialect is wrong and openai-raw right; `probe()` recognises it (its /v1/models says owned_by "me") and
switches.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

import msgspec

from .fim import (
    DISTINCTIVE_MARKERS,
    FIM_TEMPLATES,
    MarkerCutter,
    PromptParts,
    as_comments,
    render_fim,
    split_cursor_line,
    template_for_model,
)
from .sse import SSEEvent, SSEParser
from .transport import Endpoint, RemoteError, StreamAnswer, Transport, server_message

Dialect = Literal["llamacpp", "openai", "openai-raw"]
DIALECTS: tuple[str, ...] = ("llamacpp", "openai", "openai-raw")
LLAMA_CPP_PYTHON_SUFFIX = ("llama-cpp-python's server puts token id 0 where the FIM tokens belong when given `suffix` "
                           "(llama.py: 'TODO: Fix')")


class RemoteConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Settings of a remote backend. `endpoint` is the base URL as the server's docs give it: http://host:8000/v1
    for OpenAI-compatible servers, http://host:8080 for llama.cpp. The API key is never stored: `api_key_env` names
    the environment variable it is read from at request time."""

    dialect: Dialect
    endpoint: str
    model: str | None = None  # the model name the server expects, when it needs one
    fim_template: str | None = None  # openai-raw: None = chosen from the model name
    api_key_env: str | None = None
    connect_timeout: float = 3.0
    read_timeout: float = 10.0  # the longest silence accepted: before the answer starts, and between stream events
    verify_tls: bool = True
    max_tokens: int = 64
    temperature: float = 0.0
    stop: list[str] = []
    t_max_predict_ms: int = 1000  # llamacpp: stop generating this long after the first token once a newline came

    def __post_init__(self) -> None:
        if self.dialect not in DIALECTS:
            raise RemoteError(f"unknown remote dialect {self.dialect!r}: use one of {', '.join(DIALECTS)}", "config")
        if self.fim_template is not None and self.fim_template not in FIM_TEMPLATES:
            raise RemoteError(f"unknown fimTemplate {self.fim_template!r}: use one of {', '.join(FIM_TEMPLATES)}",
                              "config")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise RemoteError("remote timeouts must be positive", "config")
        if self.max_tokens <= 0:
            raise RemoteError("max_tokens must be positive", "config")
        Endpoint.parse(self.endpoint)


class RequestStats(msgspec.Struct, kw_only=True):
    """What one streamed request cost, for metrics and the prompt-cache measurement. Token counts are the server's
    own (llama.cpp's final event, or the OpenAI `usage` chunk), None when it does not report them."""

    dialect: str
    bytes_sent: int
    first_piece_s: float | None = None
    total_s: float = 0.0
    finish: str = ""  # stop | length | marker | cancelled | error | ... as the server or we ended it
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    prompt_ms: float | None = None


class ProbeResult(msgspec.Struct, frozen=True, kw_only=True):
    """The start-up capability check. `dialect` is what requests will use (None: nothing works yet); `message` is
    one line for the log or the status bar."""

    reachable: bool
    dialect: str | None
    message: str
    models: list[str] = []
    server: str | None = None  # "llama.cpp", "llama-cpp-python", "vLLM" when recognisable
    fim_template: str | None = None
    error_kind: str | None = None


class RemoteBackend:
    """Completions from a remote server. Thread-safe: one stream per document may run in parallel."""

    def __init__(self, config: RemoteConfig):
        self.config = config
        self.endpoint = Endpoint.parse(config.endpoint)
        hint = ("llama.cpp's endpoint is the server root, e.g. http://127.0.0.1:8080 (no /v1)"
                if config.dialect == "llamacpp" else
                "an OpenAI-compatible endpoint is the base URL ending in /v1, e.g. http://127.0.0.1:8000/v1")
        self.transport = Transport(self.endpoint, connect_timeout=config.connect_timeout,
                                   read_timeout=config.read_timeout, verify_tls=config.verify_tls,
                                   api_key_env=config.api_key_env, not_found_hint=hint)
        self._lock = threading.Lock()
        self._raw_reason: str | None = None
        self._served_model: str | None = None
        self.last_stats: RequestStats | None = None

    def __repr__(self) -> str:
        return f"RemoteBackend({self.dialect}, {self.endpoint.url()!r}, model={self.model!r})"

    @property
    def dialect(self) -> Dialect:
        return "openai-raw" if self._raw_reason else self.config.dialect

    @property
    def fallback_reason(self) -> str | None:
        """Why an "openai" backend now sends raw FIM prompts (None: it does not), for the caller to say once."""
        return self._raw_reason

    @property
    def model(self) -> str | None:
        return self.config.model or self._served_model

    @property
    def fim_template(self) -> str | None:
        return self.config.fim_template or template_for_model(self.model)

    # -- requests --------------------------------------------------------------------------------------------------

    def _template_name(self) -> str:
        name = self.fim_template
        if name is None:
            raise RemoteError(f"a raw FIM prompt needs fimTemplate: the model name {self.model!r} names no known "
                              f"family; set fimTemplate to one of {', '.join(FIM_TEMPLATES)}", "config")
        return name

    def _use_raw(self, why: str) -> None:
        name = self._template_name()
        with self._lock:
            if self._raw_reason is None:
                self._raw_reason = f"{why}: sending raw FIM prompts ({name}) instead"

    def request(self, parts: PromptParts, dialect: str | None = None, *, max_tokens: int | None = None,
                temperature: float | None = None) -> tuple[str, dict[str, Any]]:
        """(path, JSON body) of the request `parts` become in `dialect` (default: the active one); `max_tokens` and
        `temperature` override the config's for this request (a function body needs more room than a line)."""
        c, dialect = self.config, dialect or self.dialect
        max_tokens = c.max_tokens if max_tokens is None else max(1, max_tokens)
        temperature = c.temperature if temperature is None else temperature
        if dialect == "llamacpp":
            above, line = split_cursor_line(parts.prefix, parts.middle_from)
            return "/infill", {
                "input_prefix": above, "input_suffix": parts.suffix,
                "input_extra": [{"filename": name, "text": text} for name, text in parts.extra],
                "prompt": line,  # after llama.cpp's FIM_MID, as llama.vscode sends it: the moving part comes last
                "n_predict": max_tokens, "temperature": temperature, "stop": list(c.stop),
                "cache_prompt": True, "t_max_predict_ms": c.t_max_predict_ms, "stream": True}
        body: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature, "stream": True,
                                "stream_options": {"include_usage": True}}
        if self.model:
            body["model"] = self.model
        stop = list(c.stop)
        if dialect == "openai":
            body["prompt"] = as_comments(parts.extra, parts.path) + parts.prefix
            body["suffix"] = parts.suffix
        else:
            template = FIM_TEMPLATES[self._template_name()]
            body["prompt"] = render_fim(template, parts)
            if template.file_sep:
                stop.append(template.file_sep)  # the model would go on with another file
        if stop:
            body["stop"] = stop
        return "/completions", body

    def stream(self, parts: PromptParts, cancel: threading.Event, *, max_tokens: int | None = None,
               temperature: float | None = None) -> Iterator[str]:
        """Text pieces of the completion as the server streams them. Setting `cancel` (from any thread) or closing
        the generator closes the connection at once, which stops the generation on the server. Raises RemoteError.
        After the stream ends, `last_stats` describes it. `max_tokens`/`temperature` override the config's."""
        if cancel.is_set():
            return
        dialect, limits = self.dialect, {"max_tokens": max_tokens, "temperature": temperature}
        try:
            yield from self._stream(dialect, parts, cancel, limits)
        except RemoteError as err:
            if not (dialect == "openai" and err.status == 400 and "suffix" in err.server_message.lower()):
                raise
            self._use_raw(f"the server rejected `suffix` (400: {err.server_message})")
            yield from self._stream("openai-raw", parts, cancel, limits)

    def _stream(self, dialect: str, parts: PromptParts, cancel: threading.Event,
                limits: dict[str, Any]) -> Iterator[str]:
        path, body = self.request(parts, dialect, **limits)
        markers = DISTINCTIVE_MARKERS + tuple(self.config.stop)
        if dialect == "openai-raw":
            markers += FIM_TEMPLATES[self._template_name()].special
        cutter = MarkerCutter(markers)
        stats = RequestStats(dialect=dialect, bytes_sent=len(msgspec.json.encode(body)))
        t0 = time.perf_counter()
        try:
            with self.transport.open_stream(path, body, cancel) as answer:
                whole = answer.content_type.startswith("application/json")  # a server that ignored stream: true
                texts = (self._json_texts if whole else self._sse_texts)(answer, dialect, stats, path, cancel)
                for text in texts:
                    shown = cutter.push(text)
                    if shown:
                        if stats.first_piece_s is None:
                            stats.first_piece_s = time.perf_counter() - t0
                        yield shown
                    if cutter.stopped:
                        stats.finish = "marker"
                        return
                if not cancel.is_set() and (tail := cutter.flush()):
                    yield tail
        except RemoteError:
            stats.finish = "error"
            raise
        finally:
            stats.total_s = time.perf_counter() - t0
            if cancel.is_set() and stats.finish in ("", "error"):
                stats.finish = "cancelled"
            stats.finish = stats.finish or "closed"  # the caller stopped reading
            self.last_stats = stats

    def _sse_texts(self, answer: StreamAnswer, dialect: str, stats: RequestStats, path: str,
                   cancel: threading.Event) -> Iterator[str]:
        """Texts of the events until the server says the stream is over. Events already received when `cancel` is
        set are stale too. A stream that ends before the answer is whole raises a "truncated" RemoteError."""
        parser = SSEParser()
        for chunk in answer.pieces():
            for event in parser.feed(chunk):
                if cancel.is_set():
                    return
                text, done = self._event(dialect, event, stats, path)
                if text:
                    yield text
                if done:
                    return
            if parser.overlong:
                raise RemoteError(f"{self.endpoint.url(path)} sent no event stream (an endless line)", "bad_json")
        if cancel.is_set():
            return
        for event in parser.close():  # what the stream left unfinished: not JSON means it was cut mid-event
            try:
                text, done = self._event(dialect, event, stats, path)
            except RemoteError as err:
                if err.kind != "bad_json":
                    raise
                continue
            if text:
                yield text
            if done:
                return
        if not stats.finish:
            raise RemoteError(f"the stream from {self.endpoint.url(path)} ended before the completion did "
                              "(truncated answer)", "truncated")

    def _json_texts(self, answer: StreamAnswer, dialect: str, stats: RequestStats, path: str,
                    cancel: threading.Event) -> Iterator[str]:
        data = b"".join(answer.pieces())
        if not cancel.is_set():
            text, _ = self._event(dialect, SSEEvent("message", data.decode("utf-8", "replace")), stats, path)
            stats.finish = stats.finish or "stop"
            yield text

    def _event(self, dialect: str, event: SSEEvent, stats: RequestStats, path: str) -> tuple[str, bool]:
        """(text, done) of one SSE event: done = the server said the stream is over ([DONE], llama.cpp's stop). A
        finish reason goes into `stats.finish` (the answer is whole even if the stream then breaks), and so do the
        server's token counts."""
        url = self.endpoint.url(path)
        if dialect != "llamacpp" and event.data.strip() == "[DONE]":
            stats.finish = stats.finish or "stop"
            return "", True
        try:
            obj = msgspec.json.decode(event.data)
        except msgspec.DecodeError:
            raise RemoteError(f"{url} sent stream data that is not JSON: {event.data[:80]!r}", "bad_json") from None
        if not isinstance(obj, dict):
            raise RemoteError(f"{url} sent stream data that is not a JSON object: {event.data[:80]!r}", "bad_json")
        if event.event == "error" or "error" in obj or obj.get("object") == "error":
            said = server_message(event.data.encode())
            raise RemoteError(f"{url} reported an error mid-stream: {said}", "http", None, said)
        if dialect == "llamacpp":
            timings = obj.get("timings") if isinstance(obj.get("timings"), dict) else {}
            if obj.get("stop"):
                stats.finish = str(obj.get("stop_type") or "stop")
                stats.prompt_tokens = obj.get("tokens_evaluated", timings.get("prompt_n"))
                # timings.cache_n counts reused prompt tokens; older servers only report tokens_cached (n_past)
                stats.cached_tokens = timings.get("cache_n", obj.get("tokens_cached"))
                stats.prompt_ms = timings.get("prompt_ms")
            return str(obj.get("content") or ""), bool(obj.get("stop"))
        usage = obj.get("usage")
        if isinstance(usage, dict):
            stats.prompt_tokens = usage.get("prompt_tokens")
            details = usage.get("prompt_tokens_details")
            if isinstance(details, dict):
                stats.cached_tokens = details.get("cached_tokens")
        text = ""
        for choice in obj.get("choices") or []:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                text += str(choice.get("text") or "")
                if choice.get("finish_reason"):  # the answer is whole; a usage chunk and [DONE] may follow
                    stats.finish = str(choice["finish_reason"])
        return text, False

    # -- start-up probe --------------------------------------------------------------------------------------------

    def probe(self) -> ProbeResult:
        """Is the server there, which dialect works, which models does it serve? Each step is bounded by the
        timeouts; never raises. It may switch an "openai" backend to openai-raw (see `fallback_reason`): when the
        server rejects `suffix`, or is llama-cpp-python's (whose `suffix` path is broken, see the module doc)."""
        try:
            if self.config.dialect == "llamacpp":
                return self._probe_llamacpp()
            return self._probe_openai()
        except RemoteError as err:
            return ProbeResult(reachable=err.status is not None, dialect=None, message=str(err),
                               error_kind=err.kind, fim_template=self.fim_template)

    def _probe_openai(self) -> ProbeResult:
        listing = self.transport.request_json("GET", "/models")
        cards = listing.get("data") if isinstance(listing, dict) else None
        if not isinstance(cards, list):
            raise RemoteError(f"{self.endpoint.url('/models')} answered without a model list: not an "
                              "OpenAI-compatible server?", "bad_json", 200)
        cards = [c for c in cards if isinstance(c, dict) and isinstance(c.get("id"), str)]
        models = [c["id"] for c in cards]
        owners = {c.get("owned_by") for c in cards}
        server = ("llama-cpp-python" if "me" in owners else "vLLM" if "vllm" in owners
                  else "llama.cpp" if "llamacpp" in owners else None)
        if self.config.model is None and models:
            self._served_model = models[0]
        notes = []
        if self.config.model and models and self.config.model not in models:
            notes.append(f"remoteModel {self.config.model!r} is not among the served models ({', '.join(models[:5])})")
        if self.dialect == "openai":
            if server == "llama-cpp-python":
                self._use_raw(LLAMA_CPP_PYTHON_SUFFIX)
            else:
                self._probe_suffix()
        template = self.fim_template if self.dialect == "openai-raw" else None
        if self.dialect == "openai-raw" and template is None:
            self._template_name()  # raises the config error
        serving = ", ".join(models[:3]) or "no listed model"
        what = f"{server or 'OpenAI-compatible server'} at {self.endpoint.url()} serving {serving}"
        notes.insert(0, f"{what}; dialect {self.dialect}" + (f" ({template})" if template else ""))
        if self._raw_reason:
            notes.append(self._raw_reason)
        return ProbeResult(reachable=True, dialect=self.dialect, message="; ".join(notes), models=models,
                           server=server, fim_template=template)

    def _probe_suffix(self) -> None:
        """One token with a `suffix`: vLLM, SGLang and TGI reject it before generating anything."""
        body: dict[str, Any] = {"prompt": "#", "suffix": "\n", "max_tokens": 1, "temperature": 0}
        if self.model:
            body["model"] = self.model
        try:
            self.transport.request_json("POST", "/completions", body)
        except RemoteError as err:
            if err.status == 400 and "suffix" in err.server_message.lower():
                self._use_raw(f"the server rejected `suffix` (400: {err.server_message})")
            else:
                raise

    def _probe_llamacpp(self) -> ProbeResult:
        url = self.endpoint.url()
        try:
            self.transport.request_json("GET", "/health")
        except RemoteError as err:
            if err.status == 503:
                return ProbeResult(reachable=True, dialect="llamacpp", error_kind="http", message=f"{url} is still "
                                   "loading its model (503): completions start when it is ready")
            if err.status == 404:
                raise RemoteError(f"{url} has no /health: not a llama.cpp server? For an OpenAI-compatible server use "
                                  "dialect openai or openai-raw with its /v1 URL", "not_found", 404) from None
            raise
        props = self.transport.request_json("GET", "/props")
        props = props if isinstance(props, dict) else {}
        model = props.get("model_alias") or str(props.get("model_path") or "").replace("\\", "/").rsplit("/", 1)[-1]
        models = [model] if model else []
        try:  # n_predict 0 only evaluates the prompt: a FIM check that generates nothing
            self.transport.request_json("POST", "/infill", {"input_prefix": "", "input_suffix": "", "n_predict": 0})
        except RemoteError as err:
            if err.status is None or err.status in (401, 403):
                raise
            return ProbeResult(reachable=True, dialect=None, models=models, server="llama.cpp", error_kind=err.kind,
                               message=f"{url} cannot /infill ({err.server_message or err.status}): serve a FIM model "
                                       "(Qwen2.5-Coder, StarCoder2...), or use dialect openai-raw with a fimTemplate")
        return ProbeResult(reachable=True, dialect="llamacpp", models=models, server="llama.cpp",
                           message=f"llama.cpp at {url} serving {model or 'a model'}; dialect llamacpp (/infill)")
