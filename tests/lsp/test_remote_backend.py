"""The language server completing from a REAL remote server: llama-cpp-python's `python -m llama_cpp.server` on a
tiny Qwen GGUF (tests/llama_server.py), through the OpenAI-compatible dialect. Skipped with a one-line reason when
that server cannot start here. The server is stopped and started again on the same port: the editor gets empty
suggestions and one message meanwhile, and suggestions again once it is back."""

from __future__ import annotations

import pytest
from llama_server import RealServer, started_server
from lsprotocol import types
from pytest_lsp import LanguageClient

from runtime.remote import FIM_TEMPLATES
from runtime.remote.fim import DISTINCTIVE_MARKERS

from .conftest import SAMPLE, inline, open_doc, start, status, until

URI = "file:///tmp/waferline-e2e/remote/sample.py"
MARKERS = DISTINCTIVE_MARKERS + FIM_TEMPLATES["qwen2.5-coder"].special


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    server = started_server(tmp_path_factory.mktemp("llama-server"))
    try:
        yield server
    finally:
        server.stop()


def shown(client: LanguageClient, kind: types.MessageType) -> list[str]:
    return [m.message for m in client.messages if m.type == kind]


async def test_completes_from_the_remote_server_says_one_outage_and_recovers(client: LanguageClient, llama: RealServer):
    await start(client, {"backend": "openai", "endpoint": llama.url, "fimTemplate": "qwen2.5-coder"})
    st = await status(client)
    probe = st["backend"]["probe"]
    assert (st["state"], st["backend"]["kind"], st["backend"]["endpoint"]) == ("ready", "openai", llama.url)
    assert (probe["reachable"], probe["server"], probe["dialect"]) == (True, "llama-cpp-python", "openai-raw")
    assert probe["models"] == [str(llama.gguf)] and st["served_model"] == str(llama.gguf)
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
    assert not (await inline(client, URI, 4, 8)).items  # never asked before: no cached answer to show
    assert await until(lambda: len(shown(client, types.MessageType.Error)) == 1)
    assert not (await inline(client, URI, 0, 9)).items
    st = await status(client)
    assert st["state"] == "error" and "connection refused" in st["backend"]["error"]
    assert len(shown(client, types.MessageType.Error)) == 1  # one message for the outage, not one per keystroke
    assert "connection refused" in shown(client, types.MessageType.Error)[0]

    assert llama.start() is None
    res = await inline(client, URI, 4, 8)
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
