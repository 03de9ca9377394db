"""The pygls LanguageServer: lifecycle, settings, the inference worker, and feature registration.

Handlers stay thin (STYLE.md, jedi-language-server): fetch the document, build a CompletionRequest, hand it to
the single inference worker, map the CompletionResult to lsprotocol types. The model loads in the background after
`initialized` (work-done progress); until it is ready every request answers empty at once; a load failure is shown
with window/showMessage and the server stays up.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable
from urllib.parse import unquote

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidRequest
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol

from lsp_server.context import cursor_split, workspace_relative
from lsp_server.fit import PATH_CHARS, REPO_CHARS, fit_request, load_service, shorten
from lsp_server.scheduler import InferenceScheduler
from lsp_server.settings import SECTION, Settings, parse_settings, to_json
from runtime.complete import CompletionRequest, CompletionResult
from runtime.crossfile import ContextCollector

log = logging.getLogger("waferline.lsp")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("waferline")
    except Exception:  # noqa: BLE001 - running from a source tree
        return "0.0.0+source"

STATUS = "waferline/status"
SIMULATE = "waferline/simulate"
METRICS = "waferline/metrics"
CMD_COMPLETE_HERE = "waferline.completeHere"
CMD_COMPLETE_BODY = "waferline.completeFunctionBody"
MODEL_KEY = "\0model"  # scheduler key of model (re)loads: never superseded by completions
INDEX_DELAY_S = 1.0  # a document being typed in is re-indexed for context once typing pauses this long


class _Answered:
    """Marker for a message already answered with an error while it was being parsed."""


_ANSWERED = _Answered()
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def scrub(obj: Any) -> Any:
    """Lone surrogates (JSON "\\ud800") replaced by U+FFFD: such text cannot be encoded, tokenized or sent back.

    One code unit for one, so UTF-16 positions in the document stay valid."""
    if isinstance(obj, str):
        return _LONE_SURROGATE.sub("\ufffd", obj) if _LONE_SURROGATE.search(obj) else obj
    if isinstance(obj, list):
        return [scrub(v) for v in obj]
    if isinstance(obj, dict):
        return {scrub(k): scrub(v) for k, v in obj.items()}
    return obj


class _NoStructureTraceback(logging.Filter):
    """pygls logs a full traceback for every message whose params don't parse; WaferlineProtocol logs one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Unable to deserialize message")


logging.getLogger("pygls.protocol.json_rpc").addFilter(_NoStructureTraceback())


class WaferlineProtocol(LanguageServerProtocol):
    """Answers requests whose params don't parse with InvalidParams (pygls would drop them, leaving the client
    waiting forever), requests after `shutdown` with InvalidRequest (pygls drops them), treats a missing `params`
    as null (JSON-RPC allows omitting it), and ignores non-object JSON instead of treating it as a server error."""

    def structure_message(self, data: dict[str, Any]):
        if isinstance(data, dict) and "jsonrpc" in data:
            data = scrub(data)
            if "method" in data and "params" not in data:
                data["params"] = None  # fine for optional params (shutdown, status); InvalidParams otherwise
            method, msg_id = data.get("method"), data.get("id")
            if self._shutdown and method not in (None, types.EXIT) and isinstance(msg_id, (int, str)):
                err = JsonRpcInvalidRequest(f"the server is shut down: {str(method)[:100]} refused (only exit is accepted)")
                self._send_response(msg_id, error=err.to_response_error())
                return _ANSWERED
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if isinstance(data, dict) and "method" in data and isinstance(data.get("id"), (int, str)):
                log.warning("invalid params for %r (id %r)", data.get("method"), data.get("id"))
                self._send_response(data["id"], error=exc.to_response_error())
                return _ANSWERED
            raise

    def _send_handler_result(self, future, *, msg_id):
        """An expected error (InvalidParams...) is answered and logged in one line: pygls logs a traceback."""
        exc = None if future.cancelled() else future.exception()
        if isinstance(exc, JsonRpcException):
            self._request_futures.pop(msg_id, None)
            log.warning("request %r failed: %s", msg_id, exc.message)
            self._send_response(msg_id, error=exc.to_response_error())
            return
        super()._send_handler_result(future, msg_id=msg_id)

    def handle_message(self, message):
        if message is _ANSWERED:
            return
        if not hasattr(message, "jsonrpc"):
            log.warning("ignoring a message that is not a JSON-RPC object: %.200r", message)
            return
        return super().handle_message(message)


class WaferlineServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("waferline", _version(), protocol_cls=WaferlineProtocol, max_workers=4)
        self.settings = Settings()
        self.state = "loading"  # loading | ready | error | disabled
        self.message = "waiting for initialized"
        self.service = None  # runtime.completion.CompletionService once loaded
        self.loaded_key: tuple | None = None  # model_key() of self.service
        self.pending_key: tuple | None = None  # model_key() of the latest load requested, until it ends
        self.generation = 0  # bumped by every load request: a load that is no longer the latest is discarded
        self._load_lock = threading.Lock()  # loads commit on the worker thread, settings change on the event loop
        self.scheduler = InferenceScheduler()
        self.last_focus: str | None = None  # the document the user last opened or edited
        self.loop: asyncio.AbstractEventLoop | None = None
        self.initialized_with_options = False
        self.pending_messages: list[tuple[types.MessageType, str]] = []
        self.recent_tokens_per_s: float = 0.0
        self.recent_wafer_tokens_per_s: float | None = None
        self.completions = 0
        self.cancelled = 0
        self.collector = ContextCollector()  # open documents -> snippets of other files for the prompt
        self.last_context: list[dict[str, Any]] = []  # the snippets of the last completion, for waferline/status
        self.indexer = ThreadPoolExecutor(1, thread_name_prefix="waferline-context")  # off the loop and the worker
        self._index_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ messages (thread-safe)
    def report_server_error(self, error: Exception, source) -> None:
        """Log, don't pop up: protocol noise from a client is not the user's problem (ruff-lsp: graded loudness)."""
        log.error("server error (%s): %s", getattr(source, "__name__", source), error)

    def call_soon(self, fn, *args) -> None:
        """Run fn on the event loop (pygls writes to stdout from there; the worker thread must not)."""
        if self.loop is not None and self.loop.is_running():
            self.loop.call_soon_threadsafe(fn, *args)
        else:
            fn(*args)

    def show(self, kind: types.MessageType, text: str) -> None:
        log.log(logging.ERROR if kind == types.MessageType.Error else logging.WARNING, "%s", text)
        self.call_soon(self.window_show_message, types.ShowMessageParams(type=kind, message=f"waferline: {text}"))

    def notify_threadsafe(self, method: str, params: Any) -> None:
        self.call_soon(self.protocol.notify, method, params)

    # ------------------------------------------------------------------ settings
    def apply_settings(self, raw: Any, *, show: bool = True) -> None:
        new, errors = parse_settings(raw, self.settings)
        for e in errors:
            if show:
                self.show(types.MessageType.Warning, e)
            else:
                self.pending_messages.append((types.MessageType.Warning, e))
        old = self.settings
        self.settings = new
        configure_log_level(new.log_level)
        if show and self.loop is not None:
            self.reconcile_model(old)

    def model_key(self) -> tuple:
        s = self.settings
        return (s.model, s.threads, s.max_context, s.kv_slots)

    def reconcile_model(self, old: Settings | None = None) -> None:
        """Load, reload or drop the model so it matches the settings: the model served is the one configured last."""
        key = self.model_key()
        with self._load_lock:
            if not self.settings.enabled:
                self.generation += 1  # a load still queued would flip the state back
                self.pending_key = None
                self.state, self.message = "disabled", "disabled by the waferline.enabled setting"
                return
            if self.pending_key == key:
                return  # the latest load requested is this one
            if self.service is not None and self.loaded_key == key:
                self.generation += 1  # e.g. A -> B -> A while B loads: B is dropped, A keeps serving
                self.pending_key = None
                self.state, self.message = "ready", f"{self.settings.model} ready"
                return
        self.start_load()

    def start_load(self) -> None:
        key = self.model_key()
        with self._load_lock:
            self.generation += 1
            gen = self.generation
            self.pending_key = key
            self.state, self.message = "loading", f"loading {self.settings.model}"
        token = None
        caps = self.client_capabilities
        if caps is not None and caps.window is not None and caps.window.work_done_progress:
            token = f"waferline-load-{uuid.uuid4().hex[:8]}"
            try:
                self.work_done_progress.create(token)
            except Exception as exc:  # noqa: BLE001
                log.debug("progress create failed: %s", exc)
                token = None
        model = self.settings.model
        threads, max_context, kv_slots = self.settings.threads, self.settings.max_context, self.settings.kv_slots

        def progress(fn_name: str, value) -> None:
            if token is not None:
                self.call_soon(getattr(self.work_done_progress, fn_name), token, value)

        def load(cancel: threading.Event):
            if gen != self.generation:
                log.info("skipping the load of %s: the settings changed since", model)
                return None
            t0 = time.perf_counter()
            progress("begin", types.WorkDoneProgressBegin(title="waferline", message=f"loading {model}", cancellable=False))
            try:
                svc = load_service(model, threads=threads, max_context=max_context, kv_slots=kv_slots)
            except Exception as exc:  # noqa: BLE001 - any failure leaves the server up, in "error"
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if not getattr(exc, "__module__", "").startswith("runtime"):
                    log.exception("model load failed")
                message = f"cannot load model {model!r}: {msg}"
                progress("end", types.WorkDoneProgressEnd(message="failed"))
                with self._load_lock:
                    if gen != self.generation:
                        log.info("ignoring the failed load of %s: the settings changed since (%s)", model, msg)
                        return None
                    self.show(types.MessageType.Error, message)  # queued before the state flips
                    self.service, self.loaded_key, self.pending_key = None, None, None
                    self.state, self.message = "error", message
                return None
            with self._load_lock:
                if gen != self.generation:
                    log.info("discarding the load of %s: the settings changed since", model)
                    progress("end", types.WorkDoneProgressEnd(message="superseded"))
                    return None
                self.service, self.loaded_key, self.pending_key = svc, key, None
                self.state = "ready"
                self.message = f"{model} ready ({time.perf_counter() - t0:.1f} s to load)"
            log.info("%s", self.message)
            from lsp_server import wafer_bridge

            wafer_bridge.warm(svc.bundle.path, self.settings.hardware)  # off the worker: completions never wait for it
            progress("end", types.WorkDoneProgressEnd(message="ready"))
            return None

        self.scheduler.submit(MODEL_KEY, load, supersede=False)

    # ------------------------------------------------------------------ completion
    def document_text(self, uri: str) -> str | None:
        """Text of an open document (None for unknown URIs: never read arbitrary files from disk)."""
        doc = self.workspace.text_documents.get(unquote(uri)) if self.protocol._workspace else None
        return None if doc is None else doc.source

    def position_encoding(self) -> str:
        """The negotiated encoding as a plain string (lsprotocol's enum str() is its *name*, not 'utf-16')."""
        enc = self.workspace.position_encoding if self.protocol._workspace else None
        return str(getattr(enc, "value", enc) or "utf-16")

    def workspace_roots(self) -> list[str]:
        """The client's workspace folders, else its root URI; empty when it names none."""
        if not self.protocol._workspace:
            return []
        roots = [f.uri for f in self.workspace.folders.values()] if self.workspace.folders else []
        return roots or ([self.workspace.root_uri] if self.workspace.root_uri else [])

    def build_request(self, uri: str, text: str, position: types.Position, **overrides) -> tuple[CompletionRequest, int]:
        enc = self.position_encoding()
        prefix, suffix, index = cursor_split(text, position.line, position.character, enc)
        repo, full_rel = workspace_relative(uri, self.workspace_roots())
        repo, rel = shorten(repo, REPO_CHARS), shorten(full_rel, PATH_CHARS)  # fit_request budgets it in tokens
        s = self.settings
        fields = dict(
            prefix=prefix, suffix=suffix, doc_key=uri, path=rel, repo_name=repo, mode=s.mode,
            max_new_tokens=s.max_new_tokens, max_prompt_tokens=s.max_prompt_tokens, temperature=s.temperature,
            cold_prompt_tokens=s.cold_prompt_tokens,
        )
        if s.context and s.context_tokens > 0:  # never waits for indexing: the last finished index is used
            svc = self.service
            fields["context"] = self.collector.snippets(
                uri, prefix, min(s.context_tokens, s.max_prompt_tokens // 2),
                svc.count_tokens if svc is not None else None, path=full_rel)
            if self.collector.pending(skip=uri):
                self.schedule_indexing(0.0, skip=uri)
        fields.update(overrides)
        return CompletionRequest(**fields), index

    async def complete(self, uri: str, req: CompletionRequest) -> CompletionResult | None:
        """Run one completion on the worker; None when not ready, superseded or cancelled."""
        if self.state != "ready" or self.service is None:
            return None
        hardware = self.settings.hardware
        self.last_context = [{"path": c.path, "lines": [c.start_line, c.end_line], "kind": c.kind} for c in req.context]

        def job(cancel: threading.Event):
            svc = self.service
            if svc is None:
                return None
            res = svc.complete(fit_request(svc, req), cancel)
            wafer = None
            if not res.cached and res.skipped is None and res.new_tokens:
                from lsp_server import wafer_bridge

                wafer = wafer_bridge.estimate(svc.bundle.path, hardware, res.prompt_tokens - res.reused_tokens, res.new_tokens)
                if wafer is None:
                    wafer_bridge.warm(svc.bundle.path, hardware)  # e.g. the hardware setting changed
            return res, wafer

        sched_job = self.scheduler.submit(uri, job)
        try:
            out = await asyncio.wrap_future(sched_job.future)
        except asyncio.CancelledError:
            sched_job.cancel.set()  # $/cancelRequest: stop decoding at the next token
            self.cancelled += 1
            raise
        if out is None:
            self.cancelled += 1
            return None
        res, wafer = out
        if res.stop_reason == "cancelled":
            self.cancelled += 1
        elif res.cold:
            self.prefill(uri, req, at_cursor=True)  # the short window answered; now the full one, while idle
        self.publish_metrics(uri, res, wafer)
        return res

    def prefill(self, uri: str, req: CompletionRequest, at_cursor: bool) -> None:
        """Background prefill of `req`'s prompt into `uri`'s KV slot: it runs only while no request waits, and
        the next request stops it within one 64-token chunk."""
        if self.state != "ready" or self.service is None:
            return

        def job(cancel: threading.Event):
            svc = self.service
            if svc is not None and not cancel.is_set():
                n = svc.warm(fit_request(svc, req), cancel, at_cursor=at_cursor)
                log.debug("prefilled %s: %d tokens cached", uri, n)

        self.scheduler.submit(uri, job, background=True)

    def prefill_document(self, uri: str) -> None:
        """A file just opened or focused: prefill the lines its first request will most likely share (the cursor is
        not known; its end is the guess, so any cursor in a file that fits the window reuses what lies above it)."""
        if not self.settings.prefill_on_open or self.state != "ready":
            return
        text = self.document_text(uri)
        if not text or not text.strip():
            return
        lines = text.count("\n")
        req, _ = self.build_request(uri, text, types.Position(line=lines, character=0))
        self.last_focus = uri
        self.prefill(uri, req, at_cursor=False)

    def track_document(self, uri: str, edits: Iterable[tuple[int, int, int]] = ()) -> None:
        """didOpen/didChange: the document's text (and the lines changed) to the context collector, when it lies in
        a workspace folder or the client names none. O(1) here; indexing runs later on its own thread."""
        text = self.document_text(uri)
        if text is None:
            return
        roots = self.workspace_roots()
        repo, rel = workspace_relative(uri, roots)
        if roots and repo is None:
            self.collector.close(uri)  # outside the workspace: never context for another file
            return
        self.collector.update(uri, rel or uri.rsplit("/", 1)[-1], text, edits)
        self.schedule_indexing(INDEX_DELAY_S if edits else 0.0)

    def schedule_indexing(self, delay_s: float, skip: str | None = None) -> None:
        """Index the changed documents on the context thread after `delay_s` (a newer call replaces one still
        waiting, so typing re-indexes once per pause). The GIL-bound ast parse of a file takes milliseconds."""
        if not self.settings.context:
            return
        if self.loop is None or not self.loop.is_running():
            self.collector.refresh(skip)
            return
        if self._index_timer is not None:
            self._index_timer.cancel()
        self._index_timer = self.loop.call_later(delay_s, self._index, skip)

    def _index(self, skip: str | None) -> None:
        try:
            self.indexer.submit(self.collector.refresh, skip)
        except RuntimeError:  # shut down
            pass

    def prefill_cursor(self, uri: str, text: str, position: types.Position) -> None:
        """The cursor is known (a code-action request, which editors send whenever it moves): prefill everything the
        next request there shares, through <|fim_middle|>, so typing there starts warm."""
        if not self.settings.prefill_on_open or self.state != "ready":
            return
        req, _ = self.build_request(uri, text, position)
        self.last_focus = uri
        self.prefill(uri, req, at_cursor=True)

    def forget_document(self, uri: str) -> None:
        """A closed file: its KV slot and window state go (on the worker, which owns the decoder), and its context."""
        self.collector.close(uri)
        svc = self.service
        if svc is not None:
            self.scheduler.submit(f"close:{uri}", lambda cancel: svc.forget(uri), background=True)

    def publish_metrics(self, uri: str, res: CompletionResult, wafer: tuple[float, float] | None) -> None:
        if res.skipped is not None:
            return
        self.completions += 1
        if res.cpu_tokens_per_s:
            self.recent_tokens_per_s = res.cpu_tokens_per_s
        if wafer is not None:
            self.recent_wafer_tokens_per_s = wafer[1]
        metrics = {
            "uri": uri,
            "cpu_ms": round(res.cpu_ms, 2),
            "new_tokens": res.new_tokens,
            "cpu_tokens_per_s": round(res.cpu_tokens_per_s, 2),
            "prompt_tokens": res.prompt_tokens,
            "reused_tokens": res.reused_tokens,
            "wafer_ms": None if wafer is None else round(wafer[0], 4),
            "wafer_tokens_per_s": None if wafer is None else round(wafer[1], 1),
            "cached": res.cached,
            "stop_reason": res.stop_reason,
        }
        log.info("completion %s", metrics)
        self.protocol.notify(METRICS, metrics)

    def status(self) -> dict[str, Any]:
        served = self.loaded_key if self.service is not None else None
        return {
            "model": self.settings.model,
            "served_model": None if served is None else served[0],  # "ready" only when it is the configured model
            "generation": self.generation,
            "background": self.scheduler.background_pending(),  # prefill jobs using idle time
            "state": self.state,
            "message": self.message,
            "cpu_tokens_per_s": round(self.recent_tokens_per_s, 2) if self.recent_tokens_per_s else None,
            "wafer_tokens_per_s": self.recent_wafer_tokens_per_s,
            "hardware": self.settings.hardware,
            "settings": to_json(self.settings),
            "completions": self.completions,
            "queued": self.scheduler.pending(),
            "cancelled": self.cancelled,
            "context": {"documents": self.collector.documents(), "pending": self.collector.pending(),
                        "snippets": self.last_context},
        }


def configure_log_level(level: str) -> None:
    logging.getLogger("waferline").setLevel(level.upper())
    # pygls logs every message body at INFO: keep it quiet unless debugging
    logging.getLogger("pygls").setLevel(logging.DEBUG if level == "debug" else logging.WARNING)


def create_server() -> WaferlineServer:
    """A fresh server with every feature registered."""
    from lsp_server import features

    server = WaferlineServer()
    features.register(server)
    return server


async def pull_configuration(ls: WaferlineServer) -> Any:
    """workspace/configuration for our section, when the client supports it (else None)."""
    caps = ls.client_capabilities
    if caps is None or caps.workspace is None or not caps.workspace.configuration:
        return None
    try:
        got = await asyncio.wait_for(
            ls.workspace_configuration_async(types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])),
            timeout=5.0,
        )
    except Exception as exc:  # noqa: BLE001 - a client that can't answer leaves the settings as they are
        log.warning("workspace/configuration failed: %s", exc)
        return None
    return got[0] if got else None
