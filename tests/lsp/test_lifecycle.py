"""Capabilities, background model load with progress, requests before ready, load failure."""

from lsprotocol import types
from pytest_lsp import LanguageClient

from .conftest import SAMPLE, caps, inline, open_doc, start, status, until, wait_state

URI = "file:///tmp/waferline-e2e/sample.py"


async def test_capabilities_advertise_every_feature(client: LanguageClient, tiny_bundle):
    result = await client.initialize_session(
        types.InitializeParams(capabilities=caps(), initialization_options={"waferline": {"model": str(tiny_bundle)}})
    )
    c = result.capabilities
    assert c.inline_completion_provider is not None  # registered WITH options, or VS Code never asks
    assert c.completion_provider is not None
    assert isinstance(c.code_action_provider, types.CodeActionOptions) and c.code_action_provider.resolve_provider
    assert set(c.execute_command_provider.commands) >= {"waferline.completeHere", "waferline.completeFunctionBody"}
    st = await wait_state(client, {"ready", "error"})
    assert st["state"] == "ready", st


async def test_load_reports_progress(client: LanguageClient, tiny_bundle):
    await start(client, {"model": str(tiny_bundle)})
    kinds = lambda: [type(v).__name__ for reports in client.progress_reports.values() for v in reports]
    # "end" is sent from the loader thread just after the state turns ready: a status request can see ready first
    assert await until(lambda: "WorkDoneProgressEnd" in kinds()), kinds()
    assert kinds().index("WorkDoneProgressBegin") < kinds().index("WorkDoneProgressEnd")


async def test_requests_before_ready_answer_empty(client: LanguageClient, tiny_bundle):
    # initialize without `initialized`: the model never starts loading
    client.capabilities = caps()  # lets the fixture's shutdown_session run
    await client.initialize_async(types.InitializeParams(capabilities=caps(), initialization_options={"model": str(tiny_bundle)}))
    open_doc(client, URI, SAMPLE)
    res = await inline(client, URI, 6, 11)
    assert res is not None and not res.items
    assert (await status(client))["state"] == "loading"
    client.initialized(types.InitializedParams())
    assert (await wait_state(client, {"ready"}))["state"] == "ready"


async def test_load_failure_shown_and_server_stays_up(client: LanguageClient, broken_bundle):
    await start(client, {"model": str(broken_bundle)})
    st = await status(client)
    assert st["state"] == "error" and "cannot load model" in st["message"]
    assert await until(lambda: any(m.type == types.MessageType.Error and "cannot load model" in m.message for m in client.messages))
    open_doc(client, URI, SAMPLE)
    res = await inline(client, URI, 6, 11)
    assert not res.items


async def test_missing_model_name_is_a_clear_error(client: LanguageClient, tmp_path):
    await start(client, {"model": str(tmp_path / "nothing-here")})
    st = await status(client)
    assert st["state"] == "error"
    assert await until(lambda: any(m.type == types.MessageType.Error for m in client.messages))


async def test_disabled_never_loads(client: LanguageClient, tiny_bundle):
    await start(client, {"model": str(tiny_bundle), "enabled": False})
    assert (await status(client))["state"] == "disabled"
    open_doc(client, URI, SAMPLE)
    assert not (await inline(client, URI, 6, 11)).items
