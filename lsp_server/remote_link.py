"""The server's side of a remote backend: a failing server is shown once and answers empty meanwhile, its next
answer clears the failure, the dialect fallback is said once, and waferline/status tells what the probe found.

A mixin of WaferlineServer (lsp_server.language_server), which owns the state it reads and writes: `service`,
`settings`, `state`/`message`, `remote_error`, `fallback_shown`, `ready_message` and `_load_lock`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import msgspec
from lsprotocol import types

from lsp_server.fit import fit_request
from runtime.complete import (
    CompletionRequest,
    CompletionResult,
    RemoteCompletionService,
)
from runtime.remote import RemoteError

log = logging.getLogger("waferline.lsp")


class RemoteLink:
    """Remote-backend behaviour of the server (see the module doc); the attributes are WaferlineServer's."""

    service: Any
    settings: Any
    state: str
    message: str
    ready_message: str
    remote_error: str | None
    fallback_shown: str | None
    _load_lock: threading.Lock
    show: Any  # WaferlineServer.show(kind, text)
    source_label: Any  # WaferlineServer.source_label()

    def complete_remote(self, svc: RemoteCompletionService, req: CompletionRequest,
                        cancel: threading.Event) -> CompletionResult:
        """One remote completion on the worker: a failure answers empty and is shown once; an answer from the
        server clears the failure."""
        try:
            res = svc.complete(fit_request(svc, req), cancel)
        except RemoteError as err:
            self.remote_failed(svc, str(err))
            return CompletionResult(text="", stop_reason="error", skipped=f"remote {err.kind}", backend=svc.backend)
        if not res.cached and res.skipped is None and res.stop_reason != "cancelled":
            self.remote_answered(svc)
        return res

    def remote_failed(self, svc: RemoteCompletionService, why: str) -> None:
        """The remote server failed: state "error", and one window/showMessage until it answers again."""
        with self._load_lock:
            if svc is not self.service:
                return  # a load replaced it meanwhile
            first = self.remote_error is None
            self.remote_error = why
            self.state, self.message = "error", f"{self.source_label()} is failing: {why}"
            message = self.message
        if first:
            self.show(types.MessageType.Error, f"{message} (suggestions resume when it answers)")
        else:
            log.info("%s", message)

    def remote_answered(self, svc: RemoteCompletionService) -> None:
        """The remote server answered: a failure shown before is over."""
        with self._load_lock:
            if svc is not self.service or self.remote_error is None:
                recovered = False
            else:
                recovered = True
                self.remote_error = None
                self.ready_message = svc.probe_result.message if svc.probe_result else self.ready_message
                self.state, self.message = "ready", self.ready_message
        if recovered:
            log.info("the remote server answers again: %s", self.message)
        self.show_fallback(svc)

    def show_fallback(self, svc: RemoteCompletionService) -> None:
        """Say once why an "openai" backend sends raw FIM prompts (probe or a 400 for `suffix`)."""
        reason = svc.remote.fallback_reason
        if reason and reason != self.fallback_shown and svc is self.service:
            self.fallback_shown = reason
            self.show(types.MessageType.Warning, reason)

    def remote_status(self) -> dict[str, Any]:
        """waferline/status's `backend`: what is configured, and what the probe found."""
        s, svc = self.settings, self.service
        out: dict[str, Any] = {"kind": s.backend, "endpoint": s.endpoint or None}
        if isinstance(svc, RemoteCompletionService):
            probe = svc.probe_result
            out.update(dialect=svc.backend, model=svc.remote.model, error=self.remote_error,
                       fallback_reason=svc.remote.fallback_reason,
                       probe=None if probe is None else msgspec.to_builtins(probe))
        return out
