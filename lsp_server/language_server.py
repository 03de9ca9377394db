"""WaferlineServer, the pygls LanguageServer with waferline's state: settings, the model and its loads, the inference
worker, open documents and their context.

Its methods are what the thin handlers of lsp_server.features call: fetch the document, build a CompletionRequest,
hand it to the single inference worker, map the CompletionResult to lsprotocol types. The model loads in the
background after `initialized` (work-done progress); until it is ready every request answers empty at once; a load
failure is shown with window/showMessage and the server stays up. lsp_server.server puts the two together.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable
from urllib.parse import unquote

import msgspec
from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.workspace import TextDocument

from lsp_server.context import cursor_split, workspace_relative
from lsp_server.fit import fit_request, load_remote_service, load_service
from lsp_server.protocol import METRICS, WaferlineProtocol
from lsp_server.remote_link import RemoteLink
from lsp_server.scheduler import InferenceScheduler
from lsp_server.settings import SECTION, Settings, parse_settings, to_json
from runtime.complete import (
    CompletionRequest,
    CompletionResult,
    RemoteCompletionService,
)
from runtime.crossfile import ContextCollector

log = logging.getLogger("waferline.lsp")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("waferline")
    except Exception:  # noqa: BLE001 - running from a source tree
        return "0.0.0+source"


MODEL_KEY = "\0model"  # scheduler key of model (re)loads: never superseded by completions
INDEX_DELAY_S = 1.0  # a document being typed in is re-indexed for context once typing pauses this long
# a changed context is prefilled aside once requests for its document pause this long (llama.vscode sends its extra
# context on a 1 s idle timer): while typing it flips with the word being typed and back at the next key (17 of 339
# keys of bench/lsp_typing.py on starlette.routing), and each change costs a prefill of the whole file after it
CONTEXT_SETTLE_S = 1.0
# the first context of a document waits for a shorter pause: started between keys (~60 ms apart) a prefill aside was
# stopped by the next one before its first 64-token chunk (~110 ms) was done, hundreds of times a minute, for nothing
FIRST_CONTEXT_SETTLE_S = 0.3


class WaferlineServer(RemoteLink, LanguageServer):
    def __init__(self) -> None:
        super().__init__("waferline", _version(), protocol_cls=WaferlineProtocol, max_workers=4)
        self.settings = Settings()
        self.state = "loading"  # loading | ready | error | disabled
        self.message = "waiting for initialized"
        self.service = None  # runtime.complete.CompletionService (or RemoteCompletionService) once loaded
        self.ready_message = ""  # what `message` says while the loaded service works
        self.remote_error: str | None = None  # the remote server's failure, shown once; the next answer clears it
        self.fallback_shown: str | None = None  # the remote dialect fallback already shown
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
        self.held_context: dict[str, list] = {}  # per document: the snippets its KV slot was filled with
        self.context_changes = 0  # requests whose snippets differed from the ones held
        self.context_asides = 0  # prefills aside started (a change that held through a pause)
        self.context_swaps = 0  # prompts prefilled aside that took their document's place
        self.middle_restarts = 0  # FIM middles restarted aside (nearly full after the lines typed)
        self._context_timers: dict[str, asyncio.TimerHandle] = {}  # per document: the prefill aside waiting for a pause
        self.wanted_context: dict[str, list] = {}  # per document: snippets that differ from the held ones, not yet in
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

    async def pull_configuration(self) -> Any:
        """workspace/configuration for our section, when the client supports it (else None)."""
        caps = self.client_capabilities
        if caps is None or caps.workspace is None or not caps.workspace.configuration:
            return None
        try:
            got = await asyncio.wait_for(
                self.workspace_configuration_async(types.ConfigurationParams(items=[types.ConfigurationItem(section=SECTION)])),
                timeout=5.0,
            )
        except Exception as exc:  # noqa: BLE001 - a client that can't answer leaves the settings as they are
            log.warning("workspace/configuration failed: %s", exc)
            return None
        return got[0] if got else None

    def model_key(self) -> tuple:
        """What a (re)load depends on: a change of any of it loads anew."""
        s = self.settings
        if s.backend != "local":
            return (s.backend, s.endpoint, s.remote_model, s.fim_template, s.api_key_env, s.remote_timeout_ms,
                    s.verify_tls, s.max_context)
        return ("local", s.model, s.threads, s.max_context, s.kv_slots)

    def source_label(self) -> str:
        """What suggestions come from, for messages: the model, or the remote backend and its endpoint."""
        s = self.settings
        return s.model if s.backend == "local" else f"the {s.backend} server at {s.endpoint or '(no endpoint)'}"

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
                if self.remote_error is None:  # a failing remote server stays "error" until it answers
                    self.state, self.message = "ready", self.ready_message
                return
        self.start_load()

    def start_load(self) -> None:
        key = self.model_key()
        with self._load_lock:
            self.generation += 1
            gen = self.generation
            self.pending_key = key
            self.state, self.message = "loading", f"loading {self.source_label()}"
        token = None
        caps = self.client_capabilities
        if caps is not None and caps.window is not None and caps.window.work_done_progress:
            token = f"waferline-load-{uuid.uuid4().hex[:8]}"
            try:
                self.work_done_progress.create(token)
            except Exception as exc:  # noqa: BLE001
                log.debug("progress create failed: %s", exc)
                token = None
        settings, model = self.settings, self.source_label()
        threads, max_context, kv_slots = settings.threads, settings.max_context, settings.kv_slots

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
                if settings.backend == "local":
                    svc = load_service(settings.model, threads=threads, max_context=max_context, kv_slots=kv_slots)
                else:
                    svc = load_remote_service(settings)
            except Exception as exc:  # noqa: BLE001 - any failure leaves the server up, in "error"
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if not getattr(exc, "__module__", "").startswith("runtime"):
                    log.exception("model load failed")
                message = (f"cannot load model {model!r}: {msg}" if settings.backend == "local"
                           else f"cannot use {model}: {msg}")
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
                self.remote_error = self.fallback_shown = None
                if isinstance(svc, RemoteCompletionService):
                    self.ready_message = svc.probe_result.message if svc.probe_result else model
                else:
                    self.ready_message = f"{model} ready ({time.perf_counter() - t0:.1f} s to load)"
                progress("end", types.WorkDoneProgressEnd(message="ready"))  # queued before anyone can see "ready"
                failing = isinstance(svc, RemoteCompletionService) and not svc.ready
                if not failing:  # a failing server goes from loading straight to error: never "ready" in between
                    self.state, self.message = "ready", self.ready_message
            log.info("%s", self.ready_message)
            if isinstance(svc, RemoteCompletionService):
                if failing:  # the server is down or cannot complete: say so once, requests keep trying
                    self.remote_failed(svc, svc.probe_result.message if svc.probe_result else "no answer")
                self.show_fallback(svc)
            else:
                from lsp_server import wafer_bridge
                from runtime.models import int8_codes_warning

                warning = int8_codes_warning(svc.meta, svc.bundle.path.name)
                if warning is not None:
                    self.show(types.MessageType.Warning, warning)
                wafer_bridge.warm(svc.bundle.path, self.settings.hardware)  # off the worker: never waited for
            return None

        self.scheduler.submit(MODEL_KEY, load, supersede=False)

    # ------------------------------------------------------------------ completion
    def document(self, uri: str) -> TextDocument | None:
        """An open document (None for unknown URIs: never read arbitrary files from disk)."""
        return self.workspace.text_documents.get(unquote(uri)) if self.protocol._workspace else None

    def document_text(self, uri: str) -> str | None:
        doc = self.document(uri)
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

    def build_request(self, uri: str, text: str, position: types.Position, *, aside: bool = True,
                      **overrides) -> tuple[CompletionRequest, int]:
        """The request for a cursor; with `aside` a changed context is prefilled aside for it (prefill_context):
        not for a file just opened or focused without a cursor, where no one types yet and its own window is what
        the first request needs."""
        enc = self.position_encoding()
        prefix, suffix, index = cursor_split(text, position.line, position.character, enc)
        repo, rel = workspace_relative(uri, self.workspace_roots())  # fit_request cuts them for the header
        s = self.settings
        fields = dict(
            prefix=prefix, suffix=suffix, doc_key=uri, path=rel, repo_name=repo, mode=s.mode,
            max_new_tokens=s.max_new_tokens, max_prompt_tokens=s.max_prompt_tokens, temperature=s.temperature,
            cold_prompt_tokens=s.cold_prompt_tokens,
        )
        fresh = None
        budget = s.snippet_budget()
        if s.context and budget > 0:  # never waits for indexing: the last finished index is used
            svc = self.service
            fresh = self.collector.snippets(  # on top of maxPromptTokens (runtime.complete.prompt)
                uri, prefix, budget, svc.count_tokens if svc is not None else None, path=rel)
            fields["context"] = self.context_for(uri, fresh)
            if self.collector.pending(skip=uri):
                self.schedule_indexing(0.0, skip=uri)
        fields.update(overrides)
        req = CompletionRequest(**fields)
        if fresh is not None and aside:
            self.prefill_context(uri, None if fresh == req.context else msgspec.structs.replace(req, context=fresh))
        return req, index

    def context_for(self, uri: str, fresh: list) -> list:
        """The snippets a request in `uri` gets: the ones its KV slot holds. Any change -- a definition the line now
        needs, chunks re-ranked as the cursor moves -- waits for prefill_context to swap it in, so no keystroke pays
        for evaluating the file again after a changed snippet (a completion never waits for context). A document just
        opened starts with the file alone when coldPromptTokens is on (its first suggestion is where latency is
        worst), else with the snippets of the moment."""
        held = self.held_context.get(uri)
        local = self.state == "ready" and self.service is not None and not isinstance(self.service, RemoteCompletionService)
        if not local:
            held = fresh
        elif held is None:
            held = [] if self.settings.cold_prompt_tokens > 0 else fresh
        self.held_context[uri] = held
        return held

    def prefill_context(self, uri: str, req: CompletionRequest | None) -> None:
        """The other files' snippets for `uri` changed (`req` has the new ones; None: they are the held ones again):
        its requests keep the context its KV slot holds, while the prompt with the new one is prefilled aside once
        the document's requests pause for CONTEXT_SETTLE_S (FIRST_CONTEXT_SETTLE_S while it holds none: the first
        context is worth more than a change of it); once it is all in, it takes the slot's place and becomes
        the document's context. A changed snippet would otherwise make the next request evaluate the whole file after
        it again."""
        timer = self._context_timers.pop(uri, None)
        if timer is not None:
            timer.cancel()
        if req is None:
            self.wanted_context.pop(uri, None)
            return
        self.context_changes += 1
        first = self.wanted_context.get(uri) if not self.held_context.get(uri) else None
        if first is not None:  # a first context on its way in keeps its snippets: a newer pick each key (the word
            req = msgspec.structs.replace(req, context=first)  # typed flips one) restarted it, and it never got in
        self.wanted_context[uri] = req.context

        def submit():
            self._context_timers.pop(uri, None)
            self.context_asides += 1
            self.prefill_aside(uri, req)

        if self.loop is None or not self.loop.is_running():
            submit()
        else:
            settle = CONTEXT_SETTLE_S if self.held_context.get(uri) else FIRST_CONTEXT_SETTLE_S
            self._context_timers[uri] = self.loop.call_later(settle, submit)

    def prefill_aside(self, uri: str, req: CompletionRequest) -> None:
        """Background: `req`'s prompt (new context, or the middle restarted: CompletionService.warm_aside) into a spare
        slot, swapped in when all of it is in. One such job per document: the newest request wins."""

        def job(cancel: threading.Event):
            svc = self.service
            if svc is not None and not cancel.is_set() and svc.warm_aside(fit_request(svc, req), cancel):
                self.held_context[uri] = req.context
                if self.wanted_context.get(uri) == req.context:
                    self.wanted_context.pop(uri, None)
                self.context_swaps += 1

        self.scheduler.submit(f"context:{uri}", job, background=True, doc=uri, last=True)

    async def complete(self, uri: str, req: CompletionRequest) -> CompletionResult | None:
        """Run one completion on the worker; None when not ready, superseded or cancelled."""
        failing_remote = self.state == "error" and self.remote_error is not None
        if self.service is None or not (self.state == "ready" or failing_remote):
            return None  # a remote server that failed is still asked: its next answer is the recovery
        hardware = self.settings.hardware

        def job(cancel: threading.Event):
            svc = self.service
            if svc is None:
                return None
            if isinstance(svc, RemoteCompletionService):
                return self.complete_remote(svc, req, cancel), None
            res = svc.complete(fit_request(svc, req), cancel)
            if res.stop_reason == "cancelled":
                log.debug("cancelled %s: %d of %d prompt tokens new, %.0f ms prompt, %.0f ms decode", uri,
                          res.prompt_tokens - res.reused_tokens, res.prompt_tokens, res.prompt_ms, res.decode_ms)
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
        if not res.cached and res.skipped is None:  # what the prompt held: a cold short window holds none
            self.last_context = [{"path": c.path, "lines": [c.start_line, c.end_line], "kind": c.kind}
                                 for c in res.context]
        if res.stop_reason == "cancelled":
            self.cancelled += 1
        elif res.cold:
            self.prefill(uri, req, at_cursor=True)  # the short window answered; now the full one, while idle
        elif self.middle_ripe(uri, req):  # the middle is nearly full: restart it while idle, not at a keystroke
            self.middle_restarts += 1
            # with the context still to come, if any (one aside job per document: two layouts taking turns in the
            # spare slot, neither ever finished), unless it is a change still waiting for its pause
            wanted = self.wanted_context.get(uri)
            if wanted is not None and uri in self._context_timers and self.held_context.get(uri):
                wanted = None
            self.prefill_aside(uri, req if wanted is None else msgspec.structs.replace(req, context=wanted))
        self.publish_metrics(uri, res, wafer)
        return res

    def middle_ripe(self, uri: str, req: CompletionRequest) -> bool:
        """A local model's FIM middle for `uri` is nearly full."""
        svc = self.service
        return self.state == "ready" and hasattr(svc, "middle_ripe") and svc.middle_ripe(req)

    def prefill(self, uri: str, req: CompletionRequest, at_cursor: bool) -> None:
        """Background prefill of `req`'s prompt into `uri`'s KV slot: it runs only while no request waits, and
        the next request stops it inside the chunk in flight. A remote server keeps its own prompt cache."""
        if self.state != "ready" or self.service is None or isinstance(self.service, RemoteCompletionService):
            return

        def job(cancel: threading.Event):
            svc = self.service
            if svc is not None and not cancel.is_set():
                n = svc.warm(fit_request(svc, req), cancel, at_cursor=at_cursor)
                log.debug("prefilled %s: %d tokens cached", uri, n)

        self.scheduler.submit(uri, job, background=True)

    def prefill_at(self, uri: str, position: types.Position | None = None) -> None:
        """Prefill `uri` for its next request, in the background. At a known cursor (a code-action request, which
        editors send whenever it moves) everything a request there shares, through <|fim_middle|>, so typing there
        starts warm. Without one (a file just opened or focused) the lines above the file's end: any cursor in a file
        that fits the window reuses them."""
        if not self.settings.prefill_on_open or self.state != "ready":
            return
        text = self.document_text(uri)
        if text is None or (position is None and not text.strip()):
            return
        at = position or types.Position(line=text.count("\n"), character=0)
        req, _ = self.build_request(uri, text, at, aside=position is not None)
        self.last_focus = uri
        self.prefill(uri, req, at_cursor=position is not None)

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

    def retrack_documents(self) -> None:
        """The workspace folders changed: every open document again, now inside (with its new relative path) or out."""
        for uri in list(self.workspace.text_documents) if self.protocol._workspace else []:
            self.track_document(uri)

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

    def forget_document(self, uri: str) -> None:
        """A closed file: its KV slot and window state go (on the worker, which owns the decoder), and its context."""
        self.collector.close(uri)
        self.held_context.pop(uri, None)
        self.prefill_context(uri, None)  # a prefill aside still waiting for a pause is dropped, and the wanted context
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
            "backend": res.backend,
        }
        log.info("completion %s", metrics)
        self.protocol.notify(METRICS, metrics)

    def status(self) -> dict[str, Any]:
        svc = self.service
        served = None
        if isinstance(svc, RemoteCompletionService):
            served = svc.remote.model
        elif svc is not None and self.loaded_key is not None:
            served = self.loaded_key[1]
        remote = self.settings.backend != "local"
        return {
            "model": (self.settings.remote_model or served or None) if remote else self.settings.model,
            "served_model": served,  # "ready" only when it is the configured model
            "generation": self.generation,
            "background": self.scheduler.pending(background=True),  # prefill jobs using idle time
            "state": self.state,
            "message": self.message,
            "cpu_tokens_per_s": round(self.recent_tokens_per_s, 2) if self.recent_tokens_per_s else None,
            "wafer_tokens_per_s": self.recent_wafer_tokens_per_s,
            "hardware": self.settings.hardware,
            "backend": self.remote_status(),
            "settings": to_json(self.settings),
            "completions": self.completions,
            "queued": self.scheduler.pending(),
            "cancelled": self.cancelled,
            "context": {"budget": self.settings.snippet_budget(), "documents": self.collector.documents(),
                        "pending": self.collector.pending(), "snippets": self.last_context, "changes": self.context_changes, "asides": self.context_asides,
                        "swaps": self.context_swaps, "middle_restarts": self.middle_restarts},
        }


def configure_log_level(level: str) -> None:
    logging.getLogger("waferline").setLevel(level.upper())
    # pygls logs every message body at INFO: keep it quiet unless debugging
    logging.getLogger("pygls").setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
