"""Settings changes (pushed and pulled), cancellation, didChange storms, malformed params."""

import asyncio

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient

from .conftest import SAMPLE, inline, open_doc, start, status, until, wait_state

URI = "file:///tmp/waferline-e2e/settings.py"


async def test_pushed_settings_change(client: LanguageClient, tiny_bundle):
    await start(client, {"model": str(tiny_bundle)})
    client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"waferline": {"model": str(tiny_bundle), "mode": "block", "maxNewTokens": 12}})
    )
    assert await until(lambda: True)
    for _ in range(100):
        st = await status(client)
        if st["settings"]["mode"] == "block":
            break
        await asyncio.sleep(0.02)
    assert st["settings"]["mode"] == "block" and st["settings"]["maxNewTokens"] == 12 and st["state"] == "ready"


async def test_invalid_setting_shown_and_default_kept(client: LanguageClient, tiny_bundle):
    await start(client, {"model": str(tiny_bundle), "maxNewTokens": "many"})
    assert await until(lambda: any("maxNewTokens" in m.message for m in client.messages))
    st = await status(client)
    assert st["state"] == "ready" and st["settings"]["maxNewTokens"] == 64


async def test_pulled_settings_on_null_change(client: LanguageClient, tiny_bundle):
    client.set_configuration({"model": str(tiny_bundle), "mode": "block"}, section="waferline")
    await start(client, None)  # no initializationOptions: pulled with workspace/configuration
    st = await status(client)
    assert st["state"] == "ready" and st["settings"]["mode"] == "block"
    client.set_configuration({"model": str(tiny_bundle), "mode": "line", "temperature": 0.5}, section="waferline")
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings=None))
    for _ in range(100):
        st = await status(client)
        if st["settings"]["mode"] == "line":
            break
        await asyncio.sleep(0.02)
    assert st["settings"]["mode"] == "line" and st["settings"]["temperature"] == 0.5


async def test_switch_to_broken_model_then_back(client: LanguageClient, tiny_bundle, broken_bundle):
    await start(client, {"model": str(tiny_bundle)})
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"waferline": {"model": str(broken_bundle)}}))
    st = await wait_state(client, {"error"}, timeout_s=30)
    assert st["state"] == "error"
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"waferline": {"model": str(tiny_bundle)}}))
    assert (await wait_state(client, {"ready"}, timeout_s=30))["state"] == "ready"
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"waferline": {"enabled": False}}))
    assert (await wait_state(client, {"disabled"}, timeout_s=30))["state"] == "disabled"


async def test_cancel_request_by_id(client: LanguageClient, tiny_bundle):
    """Send with explicit ids, then $/cancelRequest. B (another document) queues behind A on the single worker,
    so its cancel lands while it waits or runs; either way it must answer RequestCancelled, never hang."""
    await start(client, {"model": str(tiny_bundle), "maxNewTokens": 256})
    open_doc(client, URI, SAMPLE)
    open_doc(client, URI + "2", SAMPLE)
    outcomes = []
    for k in range(5):
        futs = []
        for uri, msg_id in ((URI, f"a-{k}"), (URI + "2", f"b-{k}")):
            params = types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=6, character=11),
                context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked),
            )
            futs.append(client.protocol.send_request(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id))
        client.cancel_request(types.CancelParams(id=f"b-{k}"))
        client.cancel_request(types.CancelParams(id=f"a-{k}"))
        for fut in futs:
            try:
                await asyncio.wait_for(asyncio.wrap_future(fut), 30)
                outcomes.append("answered")
            except JsonRpcException as exc:
                assert exc.code == -32800  # RequestCancelled
                outcomes.append("cancelled")
        # change the text so the next round is not served from the result cache
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=URI + "2", version=k + 2),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=SAMPLE.replace("import os", f"import os{k}"))],
            )
        )
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=k + 2),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=SAMPLE.replace("import os", f"import sys{k}"))],
            )
        )
    assert "cancelled" in outcomes, outcomes
    assert (await status(client))["state"] == "ready"
    res = await inline(client, URI, 6, 11)  # still answers afterwards
    assert res is not None


async def test_did_change_storm_leaves_no_backlog(client: LanguageClient, tiny_bundle):
    await start(client, {"model": str(tiny_bundle)})
    text = "import os\n\n\ndef main():\n    "
    open_doc(client, URI, text)
    typed = "value = os.path.join('a', 'b')"
    futures = []
    for i, ch in enumerate(typed, start=2):
        pos = types.Position(line=4, character=4 + i - 2)
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=i),
                content_changes=[types.TextDocumentContentChangePartial(range=types.Range(start=pos, end=pos), text=ch)],
            )
        )
        futures.append(asyncio.ensure_future(inline(client, URI, 4, 4 + i - 1)))
    results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 60)
    assert all(not isinstance(r, BaseException) for r in results)
    st = await status(client)
    assert st["state"] == "ready"
    assert st["queued"] == 0
    # superseded requests answer empty; the newest one was computed on the final text
    assert st["completions"] >= 1 and results[-1] is not None and results[-1].items


async def test_malformed_params_get_an_error_not_silence(client: LanguageClient, tiny_bundle):
    await start(client, {"model": str(tiny_bundle)})
    # the load's progress "end" must be in before messages go untyped (pytest-lsp's handler wants it typed)
    ended = lambda: any(type(v).__name__ == "WorkDoneProgressEnd" for r in client.progress_reports.values() for v in r)  # noqa: E731
    assert await until(ended)
    client.protocol.get_message_type = lambda method: None  # let the test client send untyped, invalid params
    with pytest.raises(JsonRpcException) as info:
        await client.protocol.send_request_async("textDocument/inlineCompletion", {"textDocument": 5, "position": "x"})
    assert info.value.code == -32602  # InvalidParams
    with pytest.raises(JsonRpcException):
        await client.protocol.send_request_async("waferline/noSuchMethod", {})
    assert (await status(client))["state"] == "ready"
