"""The language server completing from a REAL remote server: llama-cpp-python's `python -m llama_cpp.server` on a
tiny Qwen GGUF (tests/llama_server.py), through the OpenAI-compatible dialect. Skipped with a one-line reason when
that server cannot start here. The server is stopped and started again on the same port: the editor gets empty
suggestions and one message meanwhile, and suggestions again once it is back. Stale streams are checked against the
in-process fake server of tests/remote_fake.py, which can hold a stream open until the client hangs up."""

from __future__ import annotations

import asyncio

import pytest
from llama_server import RealServer, running_server
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient
from remote_fake import FakeServer, json_answer, sse_answer
from remote_fixtures import documented as doc

from runtime.remote import FIM_TEMPLATES
from runtime.remote.fim import DISTINCTIVE_MARKERS

from .conftest import SAMPLE, inline, open_doc, start, status, until

URI = "file:///tmp/waferline-e2e/remote/sample.py"
MARKERS = DISTINCTIVE_MARKERS + FIM_TEMPLATES["qwen2.5-coder"].special


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("llama-server")) as server:
        yield server


def shown(client: LanguageClient, kind: types.MessageType) -> list[str]:
    return [m.message for m in client.messages if m.type == kind]


async def test_completes_from_the_remote_server_says_one_outage_and_recovers(client: LanguageClient, llama: RealServer):
    await start(client, {"backend": "openai", "endpoint": llama.url, "fimTemplate": "qwen2.5-coder"})
    st = await status(client)
    probe = st["backend"]["probe"]
    assert (st["state"], st["backend"]["kind"], st["backend"]["endpoint"]) == ("ready", "openai", llama.url)
    assert (probe["reachable"], probe["server"], probe["dialect"]) == (True, "llama-cpp-python", "openai-raw")
    assert probe["models"] == [str(llama.gguf)] and st["model"] == st["served_model"] == str(llama.gguf)
    assert "llama-cpp-python" in st["message"] and "openai-raw" in st["message"]
    # the probe switched `suffix` to raw FIM prompts for this server: said once, as a warning
    assert await until(lambda: len(shown(client, types.MessageType.Warning)) == 1)
    assert "token id 0" in shown(client, types.MessageType.Warning)[0]

    open_doc(client, URI, SAMPLE)
    res = await inline(client, URI, 6, 11)
    assert len(res.items) == 1 and res.items[0].insert_text.strip()
    assert not [m for m in MARKERS if m in res.items[0].insert_text]
    assert await until(lambda: len(client.metrics) >= 1)
    metrics = client.metrics[-1]
    metrics = metrics._asdict() if hasattr(metrics, "_asdict") else metrics
    assert metrics["backend"] == "openai-raw" and metrics["new_tokens"] > 0 and metrics["wafer_ms"] is None

    llama.stop()
    # (4, 9): after "if n ", not inside a word, whose answer would have to spell the word (token healing by string)
    assert not (await inline(client, URI, 4, 9)).items  # never asked before: no cached answer to show
    assert await until(lambda: len(shown(client, types.MessageType.Error)) == 1)
    assert not (await inline(client, URI, 0, 9)).items
    st = await status(client)
    assert st["state"] == "error" and "connection refused" in st["backend"]["error"]
    assert len(shown(client, types.MessageType.Error)) == 1  # one message for the outage, not one per keystroke
    assert "connection refused" in shown(client, types.MessageType.Error)[0]

    assert llama.start() is None
    res = await inline(client, URI, 4, 9)
    assert len(res.items) == 1 and res.items[0].insert_text.strip()
    st = await status(client)
    assert (st["state"], st["backend"]["error"]) == ("ready", None)
    assert len(shown(client, types.MessageType.Error)) == 1
    assert len(shown(client, types.MessageType.Warning)) == 1


async def test_a_server_down_at_start_is_said_once_and_needs_no_restart(client: LanguageClient, llama: RealServer):
    """Nothing listens at the endpoint when the server starts: one error, empty suggestions; then the remote server
    comes up on that port and the next request probes it again and completes."""
    down = RealServer(llama.gguf, llama.log_path.with_name("late.log"), llama.port)
    llama.stop()
    try:
        await start(client, {"backend": "openai-raw", "endpoint": llama.url, "fimTemplate": "qwen2.5-coder"})
        st = await status(client)
        assert st["state"] == "error" and st["backend"]["probe"]["reachable"] is False
        assert await until(lambda: len(shown(client, types.MessageType.Error)) == 1)
        open_doc(client, URI, SAMPLE)
        assert not (await inline(client, URI, 6, 11)).items
        assert down.start() is None
        res = await inline(client, URI, 6, 11)
        assert len(res.items) == 1 and res.items[0].insert_text.strip()
        assert (await status(client))["state"] == "ready"
        assert len(shown(client, types.MessageType.Error)) == 1
    finally:
        down.stop()
        assert llama.start() is None  # as the module found it


def edited(client: LanguageClient, version: int, line6: str) -> None:
    """The user typed: SAMPLE's last line becomes `line6` (a new prefix, so no cached answer)."""
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=version),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=SAMPLE.replace("    return \n", line6 + "\n"))]))


def send_inline(client: LanguageClient, line: int, character: int, msg_id: str):
    params = types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI), position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic))
    return asyncio.wrap_future(client.protocol.send_request(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id))


async def test_a_newer_keystroke_or_a_cancel_closes_the_stale_stream(client: LanguageClient):
    """A stream that sent one piece and then stalls is closed -- the server sees the disconnect -- when the user
    types again (the newer request then answers) and when the editor sends $/cancelRequest."""
    # " fib": the cursor at the end of "    return fib" holds back " fib", which the answer must spell (token healing)
    first_piece_then_stall = sse_answer(doc.vllm_stream([" fib"]).split(b"\n\n")[0] + b"\n\n", then_wait=True)
    with FakeServer() as srv:
        srv.routes[("GET", "/v1/models")] = json_answer(200, {"object": "list", "data": [
            {"id": doc.QWEN, "object": "model", "owned_by": "vllm"}]})
        srv.routes[("POST", "/v1/completions")] = first_piece_then_stall

        def posts() -> int:
            return sum(r.method == "POST" for r in srv.requests)

        await start(client, {"backend": "openai-raw", "endpoint": srv.url + "/v1"})
        st = await status(client)
        assert (st["state"], st["backend"]["dialect"], st["backend"]["probe"]["fim_template"]) == (
            "ready", "openai-raw", "qwen2.5-coder")  # the template follows the served model's name
        open_doc(client, URI, SAMPLE)

        stale = send_inline(client, 6, 11, "stale")
        assert await until(lambda: posts() == 1)
        # the cursor ends a word: the prompt stops before " fibonacci" and the answer must spell it (token healing)
        srv.routes[("POST", "/v1/completions")] = sse_answer(doc.vllm_stream([" fibonacci", "(n - 1)", "\n"]))
        edited(client, 2, "    return fibonacci")
        newer = await inline(client, URI, 6, 20)
        assert await until(srv.disconnected.is_set)
        assert [i.insert_text for i in newer.items] == ["(n - 1)"]
        assert not (await asyncio.wait_for(stale, 30)).items  # superseded: nothing to show

        srv.disconnected.clear()
        srv.routes[("POST", "/v1/completions")] = first_piece_then_stall
        edited(client, 3, "    return fib")
        cancelled = send_inline(client, 6, 14, "cancelled")
        assert await until(lambda: posts() == 3)
        client.cancel_request(types.CancelParams(id="cancelled"))
        assert await until(srv.disconnected.is_set)
        with pytest.raises(JsonRpcException) as info:
            await asyncio.wait_for(cancelled, 30)
        assert info.value.code == -32800  # RequestCancelled
        assert (await status(client))["state"] == "ready"


def models_answer(model: str):
    return json_answer(200, {"object": "list", "data": [{"id": model, "object": "model", "owned_by": "vllm"}]})


async def test_remote_settings_reload_like_a_model_change(client: LanguageClient, tiny_bundle):
    """A new endpoint probes the new server; backend local loads the local model again; and back to remote."""
    with FakeServer() as a, FakeServer() as b:
        a.routes[("GET", "/v1/models")] = models_answer("Qwen/Qwen2.5-Coder-1.5B")
        b.routes[("GET", "/v1/models")] = models_answer("bigcode/starcoder2-3b")
        await start(client, {"model": str(tiny_bundle), "backend": "openai-raw", "endpoint": a.url + "/v1"})
        st = await status(client)
        assert (st["state"], st["model"], st["backend"]["probe"]["fim_template"]) == (
            "ready", "Qwen/Qwen2.5-Coder-1.5B", "qwen2.5-coder")
        for settings, model, template in (({"endpoint": b.url + "/v1"}, "bigcode/starcoder2-3b", "starcoder"),
                                          ({"backend": "local"}, str(tiny_bundle), None),
                                          ({"backend": "openai-raw"}, "bigcode/starcoder2-3b", "starcoder")):
            before = st["generation"]
            client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
                settings={"waferline": {**st["settings"], **settings}}))
            for _ in range(500):
                st = await status(client)
                if st["generation"] > before and st["state"] != "loading":
                    break
                await asyncio.sleep(0.02)
            assert (st["state"], st["model"], st["served_model"]) == ("ready", model, model), settings
            probe = st["backend"].get("probe")
            assert (probe or {}).get("fim_template") == template
