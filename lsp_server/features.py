"""LSP feature handlers: lifecycle, inline completion (+ completion fallback), code actions, commands, custom
requests. Each handler fetches the document, calls one server/service function and maps the result.

Handlers are module-level functions, collected by the `feature`/`command` decorators below and put on a server by
`register`: one handler serves every server made (tests make many), and each can be read and called on its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec
from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams

from lsp_server.actions import offers
from lsp_server.context import find_empty_def
from lsp_server.language_server import WaferlineServer
from lsp_server.positions import index_to_position, position_to_index
from lsp_server.protocol import (
    CMD_COMPLETE_BODY,
    CMD_COMPLETE_HERE,
    REQUEST_FAILED,
    SIMULATE,
    STATUS,
    plain,
)
from runtime.complete.postprocess import detect_indent_unit
from runtime.wafer.hardware import HARDWARE_PRESETS

log = logging.getLogger("waferline.lsp")

BODY_MIN_NEW_TOKENS = 128  # a function body needs more room than a line
SIMULATE_LOAD_WAIT_S = 120.0  # waferline/simulate during a model load waits this long for it

_FEATURES: list[tuple[str, Any, Callable]] = []
_COMMANDS: list[tuple[str, Callable]] = []


def feature(method: str, options: Any = None) -> Callable[[Callable], Callable]:
    """Mark a module-level function as the handler of `method` (registered by `register`)."""
    def mark(fn: Callable) -> Callable:
        _FEATURES.append((method, options, fn))
        return fn
    return mark


def command(name: str) -> Callable[[Callable], Callable]:
    """Mark a module-level function as the handler of workspace/executeCommand `name`."""
    def mark(fn: Callable) -> Callable:
        _COMMANDS.append((name, fn))
        return fn
    return mark


def register(server: WaferlineServer) -> None:
    """Every handler of this module on `server`."""
    for method, options, fn in _FEATURES:
        server.feature(method, options)(fn)
    for name, fn in _COMMANDS:
        server.command(name)(fn)


# ---------------------------------------------------------------------------------------------------- lifecycle


@feature(types.INITIALIZE)
def initialize(ls: WaferlineServer, params: types.InitializeParams) -> None:
    ls.initialized_with_options = params.initialization_options is not None
    ls.apply_settings(plain(params.initialization_options), show=False)


@feature(types.INITIALIZED)
async def initialized(ls: WaferlineServer, params: types.InitializedParams) -> None:
    ls.loop = asyncio.get_running_loop()
    for kind, msg in ls.pending_messages:
        ls.show(kind, msg)
    ls.pending_messages.clear()
    if not ls.initialized_with_options:
        pulled = await ls.pull_configuration()
        if pulled is not None:
            ls.apply_settings(pulled, show=True)
            return
    ls.reconcile_model()


@feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
async def did_change_configuration(ls: WaferlineServer, params: types.DidChangeConfigurationParams) -> None:
    raw = plain(params.settings)
    if isinstance(raw, dict) and isinstance(raw.get("waferline"), dict):
        ls.apply_settings(raw)
        return
    pulled = await ls.pull_configuration()  # VS Code sends null: pull the section
    ls.apply_settings(pulled if pulled is not None else raw)


@feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: WaferlineServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.track_document(params.text_document.uri)  # pygls has stored the text already
    ls.prefill_at(params.text_document.uri)


@feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: WaferlineServer, params: types.DidChangeTextDocumentParams) -> None:
    edits = [(c.range.start.line, c.range.end.line, c.range.start.line + c.text.count("\n"))
             for c in params.content_changes if getattr(c, "range", None) is not None]
    ls.track_document(params.text_document.uri, edits)
    if params.text_document.uri != ls.last_focus:  # the user moved to another file: warm it while they look
        ls.prefill_at(params.text_document.uri)


@feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
def did_change_workspace_folders(ls: WaferlineServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
    ls.retrack_documents()  # pygls has changed its folders already: which open documents count changes with them


@feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: WaferlineServer, params: types.DidCloseTextDocumentParams) -> None:
    if ls.last_focus == params.text_document.uri:
        ls.last_focus = None
    ls.forget_document(params.text_document.uri)


@feature(types.SHUTDOWN)
def shutdown(ls: WaferlineServer, *args) -> None:
    ls.scheduler.close()
    ls.indexer.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------------------------------------------- completion


def _position_of(text: str, index: int, ls: WaferlineServer) -> types.Position:
    line, char = index_to_position(text, index, ls.position_encoding())
    return types.Position(line=line, character=char)


async def _complete_at(ls: WaferlineServer, uri: str, position: types.Position, **overrides):
    """(result, text, index) or None: the shared path of every completion-producing feature."""
    if not ls.settings.enabled:
        return None
    text = ls.document_text(uri)
    if text is None:
        return None
    req, index = ls.build_request(uri, text, position, **overrides)
    res = await ls.complete(uri, req)
    if res is None or not res.text:
        return None
    return res, text, index


@feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
async def inline_completion(ls: WaferlineServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    got = await _complete_at(ls, params.text_document.uri, params.position)
    if got is None:
        return types.InlineCompletionList(items=[])
    res, text, index = got
    pos = _position_of(text, index, ls)
    item = types.InlineCompletionItem(insert_text=res.text, range=types.Range(start=pos, end=pos))
    return types.InlineCompletionList(items=[item])


@feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[".", "(", " "]))
async def completion(ls: WaferlineServer, params: types.CompletionParams) -> types.CompletionList | None:
    caps = ls.client_capabilities
    if caps is not None and caps.text_document is not None and caps.text_document.inline_completion is not None:
        return None  # the client shows our inline items: don't compute the same suggestion twice
    got = await _complete_at(ls, params.text_document.uri, params.position)
    if got is None:
        return types.CompletionList(is_incomplete=True, items=[])
    res, text, index = got
    pos = _position_of(text, index, ls)
    first = res.text.split("\n", 1)[0].strip() or res.text.strip()
    item = types.CompletionItem(
        label=first[:60] + ("…" if len(first) > 60 else ""),
        kind=types.CompletionItemKind.Text,
        detail="waferline",
        documentation=res.text,
        text_edit=types.TextEdit(range=types.Range(start=pos, end=pos), new_text=res.text),
        filter_text=text[text.rfind("\n", 0, index) + 1 : index].split()[-1] if text[:index].strip() else "",
        sort_text="0",
        preselect=True,
    )
    return types.CompletionList(is_incomplete=True, items=[item])


# ---------------------------------------------------------------------------------------------------- code actions


async def _here_edit(ls: WaferlineServer, uri: str, start: types.Position, end: types.Position | None = None
                     ) -> types.WorkspaceEdit | None:
    """WorkspaceEdit putting a block completion at `start`, in place of start..end when that is a selection."""
    text = ls.document_text(uri)
    if text is None:
        return None
    enc = ls.position_encoding()
    index = position_to_index(text, start.line, start.character, enc)
    stop = index if end is None else max(index, position_to_index(text, end.line, end.character, enc))
    got = await _complete_at(ls, uri, start, mode="block", suffix=text[stop:])
    if got is None:
        return None
    res, text, index = got
    nl = "\r\n" if "\r\n" in text else "\n"
    edit = types.TextEdit(range=types.Range(start=_position_of(text, index, ls), end=_position_of(text, stop, ls)),
                          new_text=res.text.replace("\n", nl))
    return types.WorkspaceEdit(changes={uri: [edit]})


async def _body_edit(ls: WaferlineServer, uri: str, position: types.Position, end: types.Position | None = None
                     ) -> types.WorkspaceEdit | None:
    """WorkspaceEdit that fills the empty function at `position` with a block completion."""
    text = ls.document_text(uri)
    if text is None:
        return None
    site = find_empty_def(text, position.line, detect_indent_unit(text))
    if site is None:
        return None
    nl = "\r\n" if "\r\n" in text else "\n"
    req, _ = ls.build_request(uri, text, position)
    req = msgspec.structs.replace(
        req, prefix=text[: site.header_end] + "\n" + site.body_indent, suffix=text[site.replace_end :], mode="block",
        max_new_tokens=max(ls.settings.max_new_tokens, BODY_MIN_NEW_TOKENS))
    res = await ls.complete(uri, req)
    if res is None or not res.text:
        return None
    body = nl + site.body_indent + res.text.replace("\n", nl)
    start, end = _position_of(text, site.replace_start, ls), _position_of(text, site.replace_end, ls)
    return types.WorkspaceEdit(changes={uri: [types.TextEdit(range=types.Range(start=start, end=end), new_text=body)]})


EDITS = {CMD_COMPLETE_HERE: _here_edit, CMD_COMPLETE_BODY: _body_edit}


def _args(arguments: Any) -> tuple[str, types.Position, types.Position | None]:
    """Command arguments: [uri, {line, character}, {line, character}?] (as sent by our code actions)."""
    try:
        arguments = plain(arguments)
        uri, positions = arguments[0], [types.Position(line=int(p["line"]), character=int(p["character"]))
                                        for p in arguments[1:3]]
        if not isinstance(uri, str) or not positions:
            raise TypeError("uri must be a string, then one or two positions")
        return uri, positions[0], positions[1] if len(positions) > 1 else None
    except Exception as exc:  # noqa: BLE001
        raise JsonRpcInvalidParams(f"expected [uri, {{line, character}}, {{line, character}}?]: {exc}") from None


def _client_resolves_edit(ls: WaferlineServer) -> bool:
    caps = ls.client_capabilities
    try:
        props = caps.text_document.code_action.resolve_support.properties  # type: ignore[union-attr]
    except AttributeError:
        return False
    return "edit" in (props or [])


@feature(
    types.TEXT_DOCUMENT_CODE_ACTION,
    types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.RefactorRewrite], resolve_provider=True),
)
def code_action(ls: WaferlineServer, params: types.CodeActionParams) -> list[types.CodeAction | types.Command] | None:
    """Actions where they help (lsp_server.actions): every one when asked for, few when the editor asks by itself."""
    doc = ls.document(params.text_document.uri)
    if ls.state != "ready" or not ls.settings.enabled or doc is None:
        return None
    uri, text, start, end = params.text_document.uri, doc.source, params.range.start, params.range.end
    ls.prefill_at(uri, start)  # editors ask for code actions wherever the cursor lands: warm it there
    invoked = params.context.trigger_kind != types.CodeActionTriggerKind.Automatic  # a client that doesn't say: asked
    found = offers(text, (start.line, start.character), (end.line, end.character), invoked=invoked,
                   encoding=ls.position_encoding(), language_id=doc.language_id, indent_unit=detect_indent_unit(text),
                   only=params.context.only)
    if not found:
        return None
    args = [uri, {"line": start.line, "character": start.character}, {"line": end.line, "character": end.character}]
    if _client_resolves_edit(ls):  # the edit is computed in codeAction/resolve, only for the action the user picks
        return [types.CodeAction(title=o.title, kind=types.CodeActionKind.RefactorRewrite,
                                 data={"command": o.command, "arguments": args}) for o in found]
    # no resolve support: a bare Command computes the edit and applies it (workspace/applyEdit)
    return [types.Command(title=o.title, command=o.command, arguments=args) for o in found]


@feature(types.CODE_ACTION_RESOLVE)
async def code_action_resolve(ls: WaferlineServer, action: types.CodeAction) -> types.CodeAction:
    data = plain(action.data)
    data = data if isinstance(data, dict) else {}
    if action.edit is None and data.get("command") in EDITS:
        action.edit = await EDITS[data["command"]](ls, *_args(data.get("arguments")))
    return action


async def _run_command(ls: WaferlineServer, name: str, args: Any) -> Any:
    """Compute the edit of command `name` and apply it (workspace/applyEdit); the edit is also the result."""
    edit = await EDITS[name](ls, *_args(args))
    if edit is None:
        return None
    try:
        await asyncio.wait_for(ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(edit=edit, label="waferline")), 10.0)
    except Exception as exc:  # noqa: BLE001 - the edit is also returned to the caller
        log.warning("workspace/applyEdit failed: %s", exc)
    return edit


@command(CMD_COMPLETE_HERE)
async def complete_here(ls: WaferlineServer, *args):
    return await _run_command(ls, CMD_COMPLETE_HERE, args)


@command(CMD_COMPLETE_BODY)
async def complete_body(ls: WaferlineServer, *args):
    return await _run_command(ls, CMD_COMPLETE_BODY, args)


# ---------------------------------------------------------------------------------------------------- custom requests


@feature(STATUS)
def status(ls: WaferlineServer, params: Any = None) -> dict[str, Any]:
    return ls.status()


@feature(SIMULATE)
async def simulate(ls: WaferlineServer, params: Any = None) -> dict[str, Any]:
    from lsp_server import wafer_bridge

    params = plain(params)
    hardware = ls.settings.hardware
    if isinstance(params, dict) and params.get("hardware") is not None:
        hardware = params["hardware"]
        allowed = (*HARDWARE_PRESETS, ls.settings.hardware)
        if not isinstance(hardware, str) or hardware not in allowed:
            # a client-chosen path could be /dev/zero, a FIFO or any readable file: only the user's settings name files
            raise JsonRpcInvalidParams(
                f"hardware must be one of {', '.join(dict.fromkeys(allowed))} (a file must be set in the "
                f"waferline.hardware setting first); got {str(hardware)[:200]!r}"
            )
    # asked while the model loads (a restart, a settings change): answer once it is there, as the user expects
    deadline = time.monotonic() + SIMULATE_LOAD_WAIT_S
    while ls.service is None and ls.state == "loading" and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    if ls.service is None:
        raise JsonRpcException(message=f"no model loaded ({ls.state}: {ls.message})", code=REQUEST_FAILED)
    if not hasattr(ls.service, "bundle"):
        raise JsonRpcException(message=f"the wafer simulation needs a local model; backend is {ls.settings.backend}",
                               code=REQUEST_FAILED)
    try:
        return await asyncio.to_thread(wafer_bridge.simulate, ls.service.bundle.path, hardware)
    except wafer_bridge.WaferUnavailable as exc:
        raise JsonRpcException(message=str(exc), code=REQUEST_FAILED) from None
