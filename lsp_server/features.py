"""LSP feature handlers: lifecycle, inline completion (+ completion fallback), code actions, commands, custom
requests. Each handler fetches the document, calls one server/service function and maps the result."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams

from lsp_server.context import find_empty_def
from lsp_server.positions import index_to_position
from lsp_server.server import (
    CMD_COMPLETE_BODY,
    CMD_COMPLETE_HERE,
    SIMULATE,
    STATUS,
    WaferlineServer,
    pull_configuration,
)
from runtime.complete.postprocess import detect_indent_unit
from runtime.wafer.hardware import HARDWARE_PRESETS

log = logging.getLogger("waferline.lsp")

REQUEST_FAILED = -32803  # LSP ErrorCodes.RequestFailed
BODY_MIN_NEW_TOKENS = 128  # a function body needs more room than a line


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


async def _body_edit(ls: WaferlineServer, uri: str, position: types.Position) -> types.WorkspaceEdit | None:
    """WorkspaceEdit that fills the empty function at `position` with a block completion."""
    text = ls.document_text(uri)
    if text is None:
        return None
    site = find_empty_def(text, position.line, detect_indent_unit(text))
    if site is None:
        return None
    nl = "\r\n" if "\r\n" in text else "\n"
    prefix = text[: site.header_end] + "\n" + site.body_indent
    suffix = text[site.replace_end :]
    req, _ = ls.build_request(uri, text, position)
    req = type(req)(**{**_struct_dict(req), "prefix": prefix, "suffix": suffix, "mode": "block",
                       "max_new_tokens": max(ls.settings.max_new_tokens, BODY_MIN_NEW_TOKENS)})
    res = await ls.complete(uri, req)
    if res is None or not res.text:
        return None
    body = nl + site.body_indent + res.text.replace("\n", nl)
    start, end = _position_of(text, site.replace_start, ls), _position_of(text, site.replace_end, ls)
    return types.WorkspaceEdit(changes={uri: [types.TextEdit(range=types.Range(start=start, end=end), new_text=body)]})


def plain(obj: Any) -> Any:
    """pygls turns the params of custom methods into namedtuples: back to JSON-like dicts/lists."""
    if hasattr(obj, "_asdict"):
        return {k: plain(v) for k, v in obj._asdict().items()}
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def _struct_dict(s) -> dict[str, Any]:
    return {f: getattr(s, f) for f in s.__struct_fields__}


async def _here_edit(ls: WaferlineServer, uri: str, position: types.Position) -> types.WorkspaceEdit | None:
    got = await _complete_at(ls, uri, position, mode="block")
    if got is None:
        return None
    res, text, index = got
    pos = _position_of(text, index, ls)
    nl = "\r\n" if "\r\n" in text else "\n"
    edit = types.TextEdit(range=types.Range(start=pos, end=pos), new_text=res.text.replace("\n", nl))
    return types.WorkspaceEdit(changes={uri: [edit]})


def _args(arguments: Any) -> tuple[str, types.Position]:
    """Command arguments: [uri, {line, character}] (as sent by our code actions)."""
    try:
        arguments = plain(arguments)
        uri, pos = arguments[0], arguments[1]
        if not isinstance(uri, str):
            raise TypeError("uri must be a string")
        return uri, types.Position(line=int(pos["line"]), character=int(pos["character"]))
    except Exception as exc:  # noqa: BLE001
        raise JsonRpcInvalidParams(f"expected [uri, {{line, character}}]: {exc}") from None


def register(server: WaferlineServer) -> None:
    @server.feature(types.INITIALIZE)
    def initialize(ls: WaferlineServer, params: types.InitializeParams) -> None:
        ls.initialized_with_options = params.initialization_options is not None
        ls.apply_settings(plain(params.initialization_options), show=False)

    @server.feature(types.INITIALIZED)
    async def initialized(ls: WaferlineServer, params: types.InitializedParams) -> None:
        ls.loop = asyncio.get_running_loop()
        for kind, msg in ls.pending_messages:
            ls.show(kind, msg)
        ls.pending_messages.clear()
        if not ls.initialized_with_options:
            pulled = await pull_configuration(ls)
            if pulled is not None:
                ls.apply_settings(pulled, show=True)
                return
        ls.reconcile_model()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(ls: WaferlineServer, params: types.DidChangeConfigurationParams) -> None:
        raw = plain(params.settings)
        if isinstance(raw, dict) and isinstance(raw.get("waferline"), dict):
            ls.apply_settings(raw)
            return
        pulled = await pull_configuration(ls)  # VS Code sends null: pull the section
        ls.apply_settings(pulled if pulled is not None else raw)

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: WaferlineServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.track_document(params.text_document.uri)  # pygls has stored the text already
        ls.prefill_document(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: WaferlineServer, params: types.DidChangeTextDocumentParams) -> None:
        edits = [(c.range.start.line, c.range.end.line, c.range.start.line + c.text.count("\n"))
                 for c in params.content_changes if getattr(c, "range", None) is not None]
        ls.track_document(params.text_document.uri, edits)
        if params.text_document.uri != ls.last_focus:  # the user moved to another file: warm it while they look
            ls.prefill_document(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: WaferlineServer, params: types.DidCloseTextDocumentParams) -> None:
        if ls.last_focus == params.text_document.uri:
            ls.last_focus = None
        ls.forget_document(params.text_document.uri)

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: WaferlineServer, *args) -> None:
        ls.scheduler.close()
        ls.indexer.shutdown(wait=False, cancel_futures=True)

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls: WaferlineServer, params: types.InlineCompletionParams) -> types.InlineCompletionList:
        got = await _complete_at(ls, params.text_document.uri, params.position)
        if got is None:
            return types.InlineCompletionList(items=[])
        res, text, index = got
        pos = _position_of(text, index, ls)
        item = types.InlineCompletionItem(insert_text=res.text, range=types.Range(start=pos, end=pos))
        return types.InlineCompletionList(items=[item])

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[".", "(", " "]))
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

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.RefactorRewrite], resolve_provider=True),
    )
    def code_action(ls: WaferlineServer, params: types.CodeActionParams) -> list[types.CodeAction | types.Command] | None:
        if ls.state != "ready" or not ls.settings.enabled:
            return None
        uri = params.text_document.uri
        text = ls.document_text(uri)
        if text is None:
            return None
        pos = params.range.start
        ls.prefill_cursor(uri, text, pos)  # editors ask for code actions wherever the cursor lands: warm it there
        wanted = [(CMD_COMPLETE_HERE, "Complete here (waferline)")]
        if find_empty_def(text, pos.line, detect_indent_unit(text)) is not None:
            wanted.append((CMD_COMPLETE_BODY, "Complete function body (waferline)"))
        resolve = _client_resolves_edit(ls)
        args = [uri, {"line": pos.line, "character": pos.character}]
        out = []
        for cmd, title in wanted:
            if resolve:  # the edit is computed in codeAction/resolve, only for the action the user picks
                out.append(types.CodeAction(title=title, kind=types.CodeActionKind.RefactorRewrite, data={"command": cmd, "arguments": args}))
            else:  # no resolve support: a bare Command computes the edit and applies it (workspace/applyEdit)
                out.append(types.Command(title=title, command=cmd, arguments=args))
        return out

    @server.feature(types.CODE_ACTION_RESOLVE)
    async def code_action_resolve(ls: WaferlineServer, action: types.CodeAction) -> types.CodeAction:
        data = plain(action.data)
        data = data if isinstance(data, dict) else {}
        if action.edit is None and data.get("command") in (CMD_COMPLETE_HERE, CMD_COMPLETE_BODY):
            uri, pos = _args(data.get("arguments"))
            fn = _here_edit if data["command"] == CMD_COMPLETE_HERE else _body_edit
            action.edit = await fn(ls, uri, pos)
        return action

    async def _run_command(ls: WaferlineServer, fn, args) -> Any:
        uri, pos = _args(args)
        edit = await fn(ls, uri, pos)
        if edit is None:
            return None
        try:
            await asyncio.wait_for(ls.workspace_apply_edit_async(types.ApplyWorkspaceEditParams(edit=edit, label="waferline")), 10.0)
        except Exception as exc:  # noqa: BLE001 - the edit is also returned to the caller
            log.warning("workspace/applyEdit failed: %s", exc)
        return edit

    @server.command(CMD_COMPLETE_HERE)
    async def complete_here(ls: WaferlineServer, *args):
        return await _run_command(ls, _here_edit, args)

    @server.command(CMD_COMPLETE_BODY)
    async def complete_body(ls: WaferlineServer, *args):
        return await _run_command(ls, _body_edit, args)

    @server.feature(STATUS)
    def status(ls: WaferlineServer, params: Any = None) -> dict[str, Any]:
        return ls.status()

    @server.feature(SIMULATE)
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
        if ls.service is None:
            raise JsonRpcException(message=f"no model loaded ({ls.state}: {ls.message})", code=REQUEST_FAILED)
        try:
            return await asyncio.to_thread(wafer_bridge.simulate, ls.service.bundle.path, hardware)
        except wafer_bridge.WaferUnavailable as exc:
            raise JsonRpcException(message=str(exc), code=REQUEST_FAILED) from None


def _client_resolves_edit(ls: WaferlineServer) -> bool:
    caps = ls.client_capabilities
    try:
        props = caps.text_document.code_action.resolve_support.properties  # type: ignore[union-attr]
    except AttributeError:
        return False
    return "edit" in (props or [])
