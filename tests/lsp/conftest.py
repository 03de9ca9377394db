"""End-to-end fixtures: the real server as a subprocess over stdio (pytest-lsp), on a tiny generated model."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

SERVER = [sys.executable, "-m", "lsp_server", "--log-level", "info"]

SAMPLE = (
    "import os\n"
    "\n"
    "\n"
    "def fibonacci(n):\n"
    "    if n < 2:\n"
    "        return n\n"
    "    return \n"
)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    from runtime.tiny import make_tiny_bundle

    return Path(make_tiny_bundle(tmp_path_factory.mktemp("tiny") / "bundle"))


@pytest.fixture(scope="session")
def broken_bundle(tmp_path_factory, tiny_bundle) -> Path:
    """A bundle whose model file is garbage: loading must fail cleanly."""
    import shutil

    out = tmp_path_factory.mktemp("broken") / "bundle"
    shutil.copytree(tiny_bundle, out)
    (out / "model.onnx").write_bytes(b"this is not an onnx model")
    return out


def caps(inline: bool = True, resolve: bool = False, configuration: bool = True) -> types.ClientCapabilities:
    td = types.TextDocumentClientCapabilities(
        inline_completion=types.InlineCompletionClientCapabilities() if inline else None,
        code_action=types.CodeActionClientCapabilities(
            resolve_support=types.ClientCodeActionResolveOptions(properties=["edit"]) if resolve else None
        ),
    )
    return types.ClientCapabilities(
        text_document=td,
        window=types.WindowClientCapabilities(work_done_progress=True),
        workspace=types.WorkspaceClientCapabilities(configuration=configuration, apply_edit=True),
    )


async def start(client: LanguageClient, options: dict | None, capabilities=None, root: Path | None = None, wait: bool = True):
    await client.initialize_session(
        types.InitializeParams(
            capabilities=capabilities or caps(),
            initialization_options=options,
            root_uri=root.as_uri() if root else None,
        )
    )
    if wait:
        await wait_state(client, {"ready", "error", "disabled"})


def plain(obj):
    """pygls clients turn custom results into namedtuples: back to dicts."""
    from lsp_server.protocol import plain as _plain

    return _plain(obj)


async def status(client: LanguageClient) -> dict:
    return plain(await client.protocol.send_request_async("waferline/status", None))


async def wait_state(client: LanguageClient, states: set[str], timeout_s: float = 60.0) -> dict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        st = await status(client)
        if st["state"] in states or loop.time() > deadline:
            return st
        await asyncio.sleep(0.05)


def open_doc(client: LanguageClient, uri: str, text: str, version: int = 1) -> None:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=version, text=text)
        )
    )


async def inline(client: LanguageClient, uri: str, line: int, character: int):
    return await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic),
        )
    )


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER))
async def client(lsp_client: LanguageClient):
    """A started server, not yet initialized: each test initializes with its own options/capabilities."""
    @lsp_client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: types.ApplyWorkspaceEditParams):
        lsp_client.applied_edits.append(params)  # type: ignore[attr-defined]
        return types.ApplyWorkspaceEditResult(applied=True)

    lsp_client.applied_edits = []  # type: ignore[attr-defined]
    metrics: list = []
    lsp_client.metrics = metrics  # type: ignore[attr-defined]

    @lsp_client.feature("waferline/metrics")
    def on_metrics(params):
        metrics.append(params)

    yield
    await lsp_client.shutdown_session()


async def until(cond, timeout_s: float = 10.0) -> bool:
    """Poll a condition (notifications arrive asynchronously); no fixed sleeps."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not cond():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True
