"""HTTP for remote backends on the standard library: one connection per request, cancellable from any thread.

A completion is stale the moment the user types again, and servers stop generating only when the client disconnects
(llama.cpp, vLLM and llama-cpp-python all check for it between tokens). So cancelling shuts the socket down, which
also wakes a thread blocked in recv(). Every failure becomes one `RemoteError` with a one-line message that names
the fix; the API key is read from the environment per request and appears in no message, repr or log.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any, Literal, NamedTuple
from urllib.parse import urlsplit

import msgspec

from runtime.errors import WaferlineError

ErrorKind = Literal["config", "dns", "refused", "connection", "timeout", "tls", "auth", "not_found", "http",
                    "bad_json", "truncated"]
CANCEL_POLL_S = 0.01  # threading.Event has no callback: the watcher polls it this often while a request is open
MAX_ERROR_BODY = 64 * 1024


class RemoteError(WaferlineError):
    """A remote backend failure, as one line a user can act on. `kind` groups failure modes for the caller (show
    once, retry later); `status` and `server_message` are the HTTP status and the server's own words, if any."""

    def __init__(self, message: str, kind: ErrorKind, status: int | None = None, server_message: str = ""):
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.server_message = server_message


class Endpoint(msgspec.Struct, frozen=True):
    scheme: str
    host: str
    port: int
    base_path: str  # without a trailing slash

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RemoteError(f"endpoint {url!r} is not an http:// or https:// URL "
                              "(e.g. http://127.0.0.1:8000/v1 or http://127.0.0.1:8080)", "config")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise RemoteError(f"endpoint {url!r} has an invalid port", "config") from None
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def url(self, path: str = "") -> str:
        return f"{self.scheme}://{self.netloc}{self.base_path}{path}"


def _one_line(text: str, limit: int = 200) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def server_message(body: bytes) -> str:
    """The server's own error words from an error body: OpenAI/vLLM/llama.cpp `{"error": {"message"}}`, older vLLM
    `{"object": "error", "message"}`, FastAPI `{"detail"}` (string or validation list), else the text itself."""
    try:
        obj = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return _one_line(body.decode("utf-8", "replace"))
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        if isinstance(err, str):
            return _one_line(err)
        if isinstance(err, dict):
            for key in ("message", "detail", "msg"):
                value = err.get(key)
                if isinstance(value, str):
                    return _one_line(value)
                if isinstance(value, list):  # FastAPI/pydantic validation errors
                    return _one_line("; ".join(str(v.get("msg", v)) if isinstance(v, dict) else str(v) for v in value))
    return _one_line(body.decode("utf-8", "replace"))


class Transport:
    """Requests to one endpoint. `not_found_hint` completes the 404 message with the endpoint form the dialect
    expects; `api_key_env` names the environment variable holding the key (None: no key is sent)."""

    def __init__(self, endpoint: Endpoint, *, connect_timeout: float, read_timeout: float, verify_tls: bool,
                 api_key_env: str | None, not_found_hint: str):
        self.endpoint = endpoint
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.verify_tls = verify_tls
        self.api_key_env = api_key_env
        self.not_found_hint = not_found_hint
        self._tls: ssl.SSLContext | None = None

    def __repr__(self) -> str:
        return f"Transport({self.endpoint.url()!r}, api_key_env={self.api_key_env!r})"

    # -- connection ------------------------------------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            ctx = ssl.create_default_context()
            if not self.verify_tls:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._tls = ctx
        return self._tls

    def _connect(self, connect_timeout: float) -> http.client.HTTPConnection:
        ep = self.endpoint
        if ep.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                ep.host, ep.port, timeout=connect_timeout, context=self._tls_context())
        else:
            conn = http.client.HTTPConnection(ep.host, ep.port, timeout=connect_timeout)
        try:
            conn.connect()
        except Exception as exc:
            conn.close()
            raise self._transport_error(exc, "connect", connect_timeout) from exc
        return conn

    def _headers(self, streaming: bool) -> tuple[dict[str, str], str | None]:
        headers = {"Content-Type": "application/json", "User-Agent": "waferline",
                   "Accept": "text/event-stream" if streaming else "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers, key or None

    # -- errors ----------------------------------------------------------------------------------------------------

    def _transport_error(self, exc: BaseException, phase: Literal["connect", "answer", "stream"],
                         timeout: float) -> RemoteError:
        ep = self.endpoint
        if isinstance(exc, RemoteError):
            return exc
        if isinstance(exc, socket.gaierror):
            return RemoteError(f"cannot resolve host {ep.host!r} (DNS: {exc.strerror or exc}): check the endpoint "
                               "setting", "dns")
        if isinstance(exc, ConnectionRefusedError):
            return RemoteError(f"connection refused by {ep.netloc}: is the server running on that port?", "refused")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return RemoteError(f"TLS certificate of {ep.host} was not accepted ({exc.verify_message or exc.reason}): "
                               "install its CA, or set verifyTls to false for a server you trust", "tls")
        if isinstance(exc, ssl.SSLError):
            return RemoteError(f"TLS with {ep.netloc} failed ({exc.reason or exc}): is the endpoint really https?",
                               "tls")
        if isinstance(exc, TimeoutError):
            what = {"connect": f"no connection to {ep.netloc} within {timeout:g} s (connect timeout)",
                    "answer": f"{ep.url()} accepted the request but sent no answer within {timeout:g} s "
                              "(read timeout)",
                    "stream": f"the stream from {ep.url()} stalled for more than {timeout:g} s (read timeout)"}[phase]
            return RemoteError(what, "timeout")
        if isinstance(exc, http.client.RemoteDisconnected):
            return RemoteError(f"{ep.netloc} closed the connection without answering", "connection")
        if isinstance(exc, http.client.BadStatusLine):
            return RemoteError(f"{ep.netloc} did not answer in HTTP (an https server behind an http:// endpoint?)",
                               "connection")
        if isinstance(exc, (http.client.IncompleteRead, ValueError)) and phase == "stream":
            return RemoteError(f"the stream from {ep.url()} was cut off mid-answer", "truncated")
        if isinstance(exc, OSError):
            return RemoteError(f"network error with {ep.netloc}: {exc.strerror or exc}", "connection")
        return RemoteError(f"request to {ep.url()} failed: {_one_line(str(exc)) or type(exc).__name__}",
                           "connection")

    def status_error(self, status: int, body: bytes, path: str, key: str | None) -> RemoteError:
        said = server_message(body)
        if key:
            said = said.replace(key, "***")
        url = self.endpoint.url(path)
        env = self.api_key_env
        if status in (401, 403):
            if not env:
                fix = "put the key in an environment variable and set apiKeyEnv to its name"
            elif not key:
                fix = f"environment variable {env} is not set"
            else:
                fix = f"the key in environment variable {env} was refused"
            return RemoteError(f"{url} answered {status} ({said or 'unauthorized'}): {fix}", "auth", status, said)
        if status == 404:
            fix = "check remoteModel" if "model" in said.lower() else self.not_found_hint
            return RemoteError(f"{url} answered 404 ({said or 'not found'}): {fix}", "not_found", status, said)
        return RemoteError(f"{url} answered {status}: {said or http.client.responses.get(status, 'error')}", "http",
                           status, said)

    # -- requests --------------------------------------------------------------------------------------------------

    def request_json(self, method: str, path: str, body: Any = None, *, timeout: float | None = None) -> Any:
        """A small non-streamed request (start-up probes). Returns the decoded JSON of a 2xx answer."""
        read_timeout = timeout or self.read_timeout
        conn = self._connect(min(self.connect_timeout, read_timeout))
        headers, key = self._headers(streaming=False)
        try:
            conn.sock.settimeout(read_timeout)
            payload = None if body is None else msgspec.json.encode(body)
            try:
                conn.request(method, self.endpoint.base_path + path, body=payload, headers=headers)
                resp = conn.getresponse()
                data = resp.read(MAX_ERROR_BODY + 1 if resp.status >= 300 else None)
            except Exception as exc:
                raise self._transport_error(exc, "answer", read_timeout) from exc
            if not 200 <= resp.status < 300:
                raise self.status_error(resp.status, data[:MAX_ERROR_BODY], path, key)
            try:
                return msgspec.json.decode(data)
            except msgspec.DecodeError:
                raise RemoteError(f"{self.endpoint.url(path)} answered with something that is not JSON: "
                                  f"{_one_line(data.decode('utf-8', 'replace'), 80)!r}", "bad_json") from None
        finally:
            conn.close()

    @contextlib.contextmanager
    def open_stream(self, path: str, body: Any, cancel: threading.Event) -> Iterator[StreamAnswer]:
        """POST `body` and yield the answer, whose `pieces()` are the raw body as it arrives (an SSE stream, or one
        JSON document from a server that does not stream). A non-2xx answer raises its RemoteError before anything
        is yielded. When `cancel` is set -- from any thread, even while a read blocks -- the socket is shut down and
        the pieces end quietly; leaving the block closes the connection."""
        conn = self._connect(self.connect_timeout)
        watcher = _CancelWatcher(cancel, conn.sock)
        headers, key = self._headers(streaming=True)
        try:
            conn.sock.settimeout(self.read_timeout)
            payload = msgspec.json.encode(body)
            try:
                conn.request("POST", self.endpoint.base_path + path, body=payload, headers=headers)
                resp = conn.getresponse()
            except Exception as exc:
                if cancel.is_set():
                    yield StreamAnswer("", lambda: iter(()))
                    return
                raise self._transport_error(exc, "answer", self.read_timeout) from exc
            if not 200 <= resp.status < 300:
                try:
                    data = resp.read(MAX_ERROR_BODY)
                except Exception:  # noqa: BLE001 -- the status says enough
                    data = b""
                raise self.status_error(resp.status, data, path, key)

            def pieces() -> Iterator[bytes]:
                while True:
                    try:
                        data = resp.read1(65536)
                    except Exception as exc:
                        if cancel.is_set():
                            return
                        raise self._transport_error(exc, "stream", self.read_timeout) from exc
                    if not data:
                        return
                    yield data

            yield StreamAnswer(resp.getheader("Content-Type") or "", pieces)
        finally:
            watcher.stop()
            conn.close()


class StreamAnswer(NamedTuple):
    content_type: str
    pieces: Callable[[], Iterator[bytes]]


class _CancelWatcher:
    """Shuts `sock` down as soon as `cancel` is set, so a read blocked in another thread returns at once and the
    server sees the disconnect."""

    def __init__(self, cancel: threading.Event, sock: socket.socket):
        self._cancel, self._sock, self._open = cancel, sock, True
        if cancel.is_set():
            self._shutdown()
        else:
            threading.Thread(target=self._run, name="waferline-remote-cancel", daemon=True).start()

    def _run(self) -> None:
        while self._open:
            if self._cancel.wait(CANCEL_POLL_S):
                if self._open:
                    self._shutdown()
                return

    def _shutdown(self) -> None:
        with contextlib.suppress(OSError):
            # the plain socket's shutdown: SSLSocket.shutdown would also drop its SSL object under the reader
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)

    def stop(self) -> None:
        self._open = False
