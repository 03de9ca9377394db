"""The wire: names the server and its clients share, params back to plain JSON, and JSON-RPC hardening.

One module for the method and command names so that the server, its feature handlers and the tests agree on them
without importing each other (lsp_server.server assembles; lsp_server.features handles; both read these).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidRequest
from pygls.protocol import LanguageServerProtocol

log = logging.getLogger("waferline.lsp")

STATUS = "waferline/status"  # request: state, model, speeds, settings, queue
SIMULATE = "waferline/simulate"  # request: the wafer simulation report of the loaded model
METRICS = "waferline/metrics"  # notification: what one completion cost
CMD_COMPLETE_HERE = "waferline.completeHere"  # arguments: [uri, start, end?]; start..end, a selection, is replaced
CMD_COMPLETE_BODY = "waferline.completeFunctionBody"  # arguments: [uri, position, ...]
REQUEST_FAILED = -32803  # LSP ErrorCodes.RequestFailed


def plain(obj: Any) -> Any:
    """pygls turns the params of custom methods into namedtuples: back to JSON-like dicts/lists."""
    if hasattr(obj, "_asdict"):
        return {k: plain(v) for k, v in obj._asdict().items()}
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


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
