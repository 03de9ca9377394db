"""Code actions (resolve and command paths, where they are offered), executeCommand, waferline/status and
waferline/simulate."""

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from .conftest import caps, open_doc, plain, start, status

URI = "file:///tmp/waferline-e2e/actions.py"
DOC = "import os\n\n\ndef read(path):\n\n\nprint(read('x'))\n"


def action_params(line: int, character: int, trigger: types.CodeActionTriggerKind | None = None,
                  end: tuple[int, int] | None = None, only: list[str] | None = None) -> types.CodeActionParams:
    pos = types.Position(line=line, character=character)
    stop = pos if end is None else types.Position(line=end[0], character=end[1])
    return types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=URI), range=types.Range(start=pos, end=stop),
        context=types.CodeActionContext(diagnostics=[], trigger_kind=trigger, only=only),
    )


AUTOMATIC, INVOKED = types.CodeActionTriggerKind.Automatic, types.CodeActionTriggerKind.Invoked


async def test_actions_with_resolve(client: LanguageClient, tiny_bundle):
    await start(client, {"model": str(tiny_bundle)}, capabilities=caps(resolve=True))
    open_doc(client, URI, DOC)
    actions = await client.text_document_code_action_async(action_params(3, 15))
    titles = [a.title for a in actions]
    assert any("Complete here" in t for t in titles) and any("Complete function body" in t for t in titles)
    assert all(isinstance(a, types.CodeAction) and a.edit is None for a in actions)  # computed lazily in codeAction/resolve
    body = next(a for a in actions if "function body" in a.title)
    resolved = await client.code_action_resolve_async(body)
    if resolved.edit is not None:  # the random tiny model may produce nothing usable
        (edit,) = resolved.edit.changes[URI]
        assert edit.range.start == types.Position(line=3, character=15)
        assert edit.new_text.startswith("\n    ")


async def test_no_body_action_off_def(client: LanguageClient, tiny_bundle):
    await start(client, {"model": str(tiny_bundle)})
    open_doc(client, URI, DOC)
    actions = await client.text_document_code_action_async(action_params(0, 3))
    assert [a.title for a in actions] == ["Complete here (waferline)"]


async def test_command_path_applies_edit(client: LanguageClient, tiny_bundle):
    await start(client, {"model": str(tiny_bundle)})  # no resolve support: actions carry commands
    open_doc(client, URI, DOC)
    actions = await client.text_document_code_action_async(action_params(3, 15))
    here = next(a for a in actions if "Complete here" in a.title)
    assert isinstance(here, types.Command) and here.command == "waferline.completeHere"
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=here.command, arguments=here.arguments)
    )
    if result is not None:
        assert client.applied_edits, "the server should have sent workspace/applyEdit"
        changes = plain(result)["changes"][URI]
        assert changes[0]["range"]["start"] == {"line": 3, "character": 15}


async def test_automatic_requests_get_actions_only_where_they_help(client: LanguageClient, tiny_bundle):
    """VS Code asks on every cursor move and shows a lightbulb for any answer: none on a finished line."""
    await start(client, {"model": str(tiny_bundle)})
    doc = DOC + "total = \n"  # line 7: an unfinished statement
    open_doc(client, URI, doc)
    titles = lambda actions: [a.title for a in actions or []]
    assert await client.text_document_code_action_async(action_params(0, 9, AUTOMATIC)) is None  # `import os|`
    assert await client.text_document_code_action_async(action_params(6, 16, AUTOMATIC)) is None
    assert titles(await client.text_document_code_action_async(action_params(7, 8, AUTOMATIC))) == ["Complete here (waferline)"]
    assert titles(await client.text_document_code_action_async(action_params(4, 0, AUTOMATIC))) == [
        "Complete function body (waferline)"]  # in the empty body of read()
    selected = titles(await client.text_document_code_action_async(action_params(6, 0, AUTOMATIC, end=(6, 16))))
    assert selected == ["Replace selection with a completion (waferline)"]


async def test_invoked_requests_always_get_complete_here(client: LanguageClient, tiny_bundle):
    await start(client, {"model": str(tiny_bundle)})
    open_doc(client, URI, DOC)
    for line, character in ((0, 9), (6, 16), (1, 0)):
        actions = await client.text_document_code_action_async(action_params(line, character, INVOKED))
        assert [a.title for a in actions] == ["Complete here (waferline)"], (line, character)
    assert await client.text_document_code_action_async(action_params(0, 9, INVOKED, only=["quickfix"])) is None
    actions = await client.text_document_code_action_async(action_params(0, 9, INVOKED, only=["refactor"]))
    assert [a.title for a in actions] == ["Complete here (waferline)"]


async def test_complete_here_replaces_a_selection(client: LanguageClient, tiny_bundle):
    await start(client, {"model": str(tiny_bundle)})
    open_doc(client, URI, DOC)
    (action,) = await client.text_document_code_action_async(action_params(6, 6, INVOKED, end=(6, 15)))
    assert isinstance(action, types.Command) and list(action.arguments[1:]) == [
        {"line": 6, "character": 6}, {"line": 6, "character": 15}]
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=action.command, arguments=action.arguments))
    assert result is not None and client.applied_edits  # the tiny model (fixed weights, greedy) says something here
    (edit,) = plain(result)["changes"][URI]
    assert edit["range"] == {"start": {"line": 6, "character": 6}, "end": {"line": 6, "character": 15}}
    assert edit["newText"]


async def test_command_with_bad_arguments(client: LanguageClient, tiny_bundle):
    await start(client, {"model": str(tiny_bundle)})
    with pytest.raises(JsonRpcException):
        await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="waferline.completeHere", arguments=[42])
        )
    assert (await status(client))["state"] == "ready"


async def test_status_fields(client: LanguageClient, tiny_bundle):
    await start(client, {"model": str(tiny_bundle), "hardware": "wse2"})
    st = await status(client)
    for key in ("model", "state", "message", "cpu_tokens_per_s", "wafer_tokens_per_s", "hardware"):
        assert key in st
    assert st["hardware"] == "wse2" and st["model"] == str(tiny_bundle)


async def test_simulate_reports_or_fails_clearly(client: LanguageClient, tiny_bundle):
    await start(client, {"model": str(tiny_bundle)})
    try:
        got = plain(await client.protocol.send_request_async("waferline/simulate", {"hardware": "wse3"}))
    except JsonRpcException as exc:  # simulator not there yet: a clear one-line error, server stays up
        assert "wafer" in str(exc)
    else:
        assert "report" in got and "plot_path" in got
    assert (await status(client))["state"] == "ready"


async def test_simulate_asked_while_the_model_loads_answers_once_it_is_loaded(client: LanguageClient, tiny_bundle):
    """The wafer report asked right after start (or a restart) waits for the load instead of failing."""
    await start(client, {"model": str(tiny_bundle)}, wait=False)
    got = plain(await client.protocol.send_request_async("waferline/simulate", {"hardware": "wse3"}))
    assert "report" in got and "plot_path" in got
    assert (await status(client))["state"] == "ready"
